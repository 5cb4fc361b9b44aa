"""The local executor: every model's chain in this process, one after the other, on the study's
device; checkpoints go straight into the run directory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from rich.progress import Progress

from augcam.atomic import atomic_path
from augcam.config import StudyConfig
from augcam.pipeline.chain import ChainJob, run_chain, training_data
from augcam.pipeline.context import progress_bar
from augcam.pipeline.executors.base import Chains, Executor, OnResult
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.prepare import resolve_device
from augcam.training import TrainingData

if TYPE_CHECKING:
    from augcam.pipeline.context import StageContext


class LocalHooks:
    """The chain's checkpoints in the run directory; its progress on the console's bars."""

    def __init__(self, ctx: StageContext, progress: Progress, train_task, cam_task):
        self.ctx = ctx
        self.progress = progress
        self.train_task = train_task
        self.cam_task = cam_task
        self.model_started = time.perf_counter()
        self.seen = 0

    def model(self, run: ModelRun, first_epoch: int) -> None:
        self.model_started = time.perf_counter()
        self.seen = 0
        epochs = self.ctx.config.training.epochs
        self.ctx.activity = f"training {run.label}"
        self.progress.update(self.train_task, description=f"train {run.label} epoch {first_epoch}/{epochs}")

    def checkpoint(self, run: ModelRun) -> bytes | None:
        path = self.ctx.run_dir.checkpoint_file(run.model_id)
        return path.read_bytes() if path.exists() else None

    def save_checkpoint(self, run: ModelRun, epochs_done: int, data: bytes) -> None:
        with atomic_path(self.ctx.run_dir.checkpoint_file(run.model_id)) as tmp:
            tmp.write_bytes(data)

    def epoch(self, run: ModelRun, row: dict) -> None:
        epochs = self.ctx.config.training.epochs
        self.progress.update(self.train_task, description=f"train {run.label} epoch {row['epoch']}/{epochs}")

    def batch(self, run: ModelRun, images: int) -> None:
        self.seen += images
        rate = self.seen / max(time.perf_counter() - self.model_started, 1e-9)
        self.progress.update(self.train_task, advance=images, rate=f"{rate:,.0f} img/s")

    def stage(self, run: ModelRun, name: str) -> None:
        self.ctx.activity = f"computing the CAMs of {run.label}"
        self.progress.update(self.cam_task, description=f"explain {run.label}")

    def cam_batch(self, run: ModelRun, images: int) -> None:
        self.progress.update(self.cam_task, advance=images)


class LocalChains(Chains):
    def __init__(self, ctx: StageContext, device: torch.device, hooks: LocalHooks):
        super().__init__()
        self.ctx = ctx
        self.device = device
        self.hooks = hooks
        self.data: TrainingData | None = None  # the study's training data on the device, kept between models

    def run(self, jobs: list[ChainJob], base_cams: dict[str, torch.Tensor] | None, on_result: OnResult) -> None:
        p = self.ctx.prepared
        for job in jobs:
            run = p.all_runs[job.run_index]
            weights = None
            if job.train:
                if self.data is None:
                    self.data = training_data(p, self.device)
                self.hooks.model(run, job.epochs_done + 1)
            else:
                weights = self.ctx.weights(run)
            on_result(
                run, run_chain(p, job, self.hooks, self.device, weights=weights, base_cams=base_cams, data=self.data)
            )
            self.ctx.activity = None


def images_to_train(ctx: StageContext, job: ChainJob) -> int:
    """How many training images the job's chain still has to see (for the progress bar)."""
    p, t = ctx.prepared, ctx.config.training
    run = p.all_runs[job.run_index]
    per_epoch = (
        len(p.split.train) * (1 if run.entry is None else 1 + t.copies)
        if t.steps_per_epoch is None
        else t.steps_per_epoch * t.batch_size
    )
    return (t.epochs - job.epochs_done) * per_epoch


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, device: torch.device):
        self.driver_device = device
        self.where = str(device)

    @classmethod
    def for_config(cls, config: StudyConfig) -> LocalExecutor:
        return cls(resolve_device(config.device))

    @contextmanager
    def chains(self, ctx: StageContext, jobs: list[ChainJob]) -> Iterator[LocalChains]:
        n_test = len(ctx.prepared.split.test)
        train_images = sum(images_to_train(ctx, job) for job in jobs if job.train)
        cam_images = sum(len(job.cam_methods) for job in jobs) * n_test
        with progress_bar(ctx.console, disable=not jobs) as progress:
            train_task = progress.add_task("train", total=max(train_images, 1), rate="", visible=train_images > 0)
            cam_task = progress.add_task("explain", total=max(cam_images, 1), rate="", visible=cam_images > 0)
            yield LocalChains(ctx, self.driver_device, LocalHooks(ctx, progress, train_task, cam_task))
