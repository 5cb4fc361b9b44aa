"""What every stage of a run sees: the prepared study, the run directory, the device, the console,
the manifest, the executor, and what earlier stages handed on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from augcam.atomic import read_tensors
from augcam.config import StudyConfig
from augcam.pipeline.chain import images_on, load_model
from augcam.pipeline.manifest import Manifest
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.prepare import PreparedStudy
from augcam.pipeline.stored import StoredFiles, stored_cam_set, stored_model
from augcam.rundir import RunDir

if TYPE_CHECKING:
    from augcam.pipeline.executors import Executor


@dataclass
class StageContext:
    prepared: PreparedStudy
    run_dir: RunDir
    device: torch.device
    console: Console
    manifest: Manifest
    executor: Executor
    # Handed on by the stages: the models whose training is complete (train), the per-image metrics
    # against the baseline that the model chains computed (model id → metric → values; compare and
    # controls compute the others from the stored CAM sets), and the tables a StudyResult returns.
    complete: list[ModelRun] = field(default_factory=list)
    vs_baseline: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    cams_computed: int = 0
    # What the executor is doing in this process ("training affine seed 0"), for a Ctrl-C's message.
    activity: str | None = None
    cam_seconds: float = 0.0
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Stored files checked by this run (damaged, or unverified: from an older augcam), and the
    # finished models' checked meta.json by model id.
    stored: StoredFiles = field(default_factory=StoredFiles)
    stored_models: dict[str, dict | None] = field(default_factory=dict)

    @property
    def config(self) -> StudyConfig:
        return self.prepared.config

    def is_complete(self, run: ModelRun) -> bool:
        return run.model_id in {other.model_id for other in self.complete}

    def meta(self, run: ModelRun) -> dict | None:
        """The stored meta.json of a finished model (complete, or failed for good) whose files are
        intact, else None; a damaged meta.json or weights file is reported once (the model is then
        trained again)."""
        if run.model_id not in self.stored_models:
            before = set(self.stored.damaged)
            self.stored_models[run.model_id] = stored_model(self.run_dir, run, self.stored)
            self._report_damaged(before, f"training {run.label} again")
        return self.stored_models[run.model_id]

    def forget(self, run: ModelRun) -> None:
        """Drop what `meta` remembers of a model whose files were just written."""
        self.stored_models.pop(run.model_id, None)

    def stored_cam_set(
        self, run: ModelRun, method: str | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """A stored CAM set and its metadata, checked; a damaged one is reported once and gives None."""
        before = set(self.stored.damaged)
        found = stored_cam_set(self.run_dir.cams_file(run.model_id, method), self.stored)
        self._report_damaged(before, f"recomputing the CAMs of {run.label}")
        return found

    def _report_damaged(self, before: set, consequence: str) -> None:
        for path in self.stored.damaged.keys() - before:
            self.console.print(f"[yellow]{path}: damaged ({self.stored.damaged[path]}); {consequence}[/]")

    def weights(self, run: ModelRun) -> dict[str, torch.Tensor]:
        return read_tensors(self.run_dir.weights_file(run.model_id))

    def load_model(self, run: ModelRun) -> torch.nn.Module:
        return load_model(self.prepared, self.weights(run), self.device)

    def cam_set(self, run: ModelRun, method: str | None = None) -> dict[str, torch.Tensor]:
        return read_tensors(self.run_dir.cams_file(run.model_id, method))

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → float32 in [0, 1] on the run's device."""
        return images_on(images, self.device)

    def print(self, text: str) -> None:
        self.console.print(text, highlight=False)


def progress_bar(console: Console, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=disable,
    )


def labels(runs: list[ModelRun], limit: int = 8) -> str:
    """Models as messages list them: the first `limit`, then how many more."""
    names = [run.label for run in runs]
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def metric_summary(table: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """NaN and ±inf counts per metric column, for the manifest."""
    return {
        "undefined_values": {col: int(table[col].isna().sum()) for col in columns},
        "infinite_values": {col: int(np.isinf(table[col].to_numpy()).sum()) for col in columns},
    }
