"""One model's chain: train it → its CAM sets → its metrics against the baseline's CAMs.

The chain is a pure function of the prepared study: it reads and writes no file. Both executors
(augcam.pipeline.executors) run `run_chain` for every model of the plan, the local one in this
process and the Ray one in a worker; they differ only in where the chain runs and where its
checkpoints go (the `ChainHooks` they pass). What a chain returns is stored in the run directory
by the process that owns it (augcam.pipeline.results.store_chain_result), so every executor gives the same
files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from augcam.cams import inference_copy, raw_cams
from augcam.config import RECIPE_FIELDS, StudyConfig, digest
from augcam.metrics.cam_sets import study_cam_metrics
from augcam.models import build_model
from augcam.pipeline.kill_points import kill_point
from augcam.pipeline.plan import TRAINING_CODE_VERSION, ModelRun, guided_feature_layer, model_key
from augcam.pipeline.prepare import PreparedStudy, epoch_predictions, new_model
from augcam.training import (
    GuidedTraining,
    TrainingData,
    TrainingDiverged,
    TrainSettings,
    TrainState,
    prepare_inputs,
    train_model,
    train_state_from_bytes,
    train_state_to_bytes,
)

# --- training ------------------------------------------------------------------------------------


def images_on(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images → float32 in [0, 1] on `device`."""
    return images.to(device).float().div_(255)


def training_data(prepared: PreparedStudy, device: torch.device, permuted_labels: bool = False) -> TrainingData:
    """The study's training and validation data on `device` (labels permuted for that control), and
    its test set too when the prepared study monitors it (`PreparedStudy.monitor_test`)."""
    p = prepared
    monitored = {}
    if p.monitor_test:
        monitored = {
            "test_images": images_on(p.test_set.images[p.split.test], device),
            "test_labels": p.test_set.labels[p.split.test].to(device),
        }
    data = TrainingData(
        images_on(p.train_set.images[p.split.train], device),
        p.train_set.labels[p.split.train].to(device),
        images_on(p.val_source.images[p.split.val], device),
        p.val_source.labels[p.split.val].to(device),
        p.mean,
        p.std,
        p.config.data.image_size,
        num_classes=p.num_classes,
        train_masks=(p.train_set.masks[p.split.train].to(device) if p.train_set.masks is not None else None),
        **monitored,
    )
    return permuted_label_data(p.config, data) if permuted_labels else data


def permuted_label_data(config: StudyConfig, data: TrainingData) -> TrainingData:
    """The training data with labels shuffled across images (training and validation alike, so
    best-epoch selection is not on true labels): Adebayo et al.'s data-randomisation test."""
    generator = torch.Generator().manual_seed(config.data.split_seed + 1)
    train = torch.randperm(len(data.train_labels), generator=generator)
    val = torch.randperm(len(data.val_labels), generator=generator)
    return replace(
        data,
        train_labels=data.train_labels[train.to(data.train_labels.device)],
        val_labels=data.val_labels[val.to(data.val_labels.device)],
    )


def train_settings(config: StudyConfig, ordering_seed: int | None = None) -> TrainSettings:
    """The training loop's settings from the study's `training` section; `ordering_seed`: a
    model's own (a baseline replica's differs), else the section's."""
    t = config.training
    ordering_seed = t.ordering_seed if ordering_seed is None else ordering_seed
    return TrainSettings(
        t.epochs,
        t.batch_size,
        t.lr,
        t.weight_decay,
        ordering_seed,
        t.copies,
        t.eval_batch_size,
        t.steps_per_epoch,
        **{name: getattr(t, name) for name in RECIPE_FIELDS},
        base_augmentations=tuple(entry.build() for entry in t.base_augmentations),
        order=t.order,
        copies_drawn=t.copies_drawn,
    )


@dataclass
class TrainOutcome:
    """What training one model gives: meta.json's content (status "complete" or "diverged"), and
    for a complete model its best-validation weights and per-epoch history; when the study
    monitors its test set, every epoch's validation and test predictions with their labels and
    image indices (`epoch_predictions`)."""

    meta: dict[str, Any]
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.meta["status"]


def train_one_model(
    prepared: PreparedStudy,
    run: ModelRun,
    device: torch.device,
    resume: TrainState | None = None,
    *,
    data: TrainingData | None = None,
    on_epoch=None,
    on_batch=None,
    on_checkpoint=None,
) -> TrainOutcome:
    """Train one model of the plan on `device`, from its first epoch or from `resume` (a state
    `on_checkpoint` received), and return its weights, history and meta. Touches no file; a model
    whose loss diverges gives an outcome with status "diverged" and the error."""
    p, c = prepared, prepared.config
    if data is None:
        data = training_data(p, device, run.permuted_labels)
    model = new_model(c, p.train_set.images.shape[1], p.num_classes, run.init_seed).to(device)
    augmentation = run.entry.build() if run.entry is not None else None
    guided = None
    if run.guided is not None:
        guided = GuidedTraining(
            run.guided.loss, run.guided.weight, run.guided.ce_weight, guided_feature_layer(c, run.guided)
        )
    meta = {
        "model_id": run.model_id,
        "augmentation": run.augmentation,
        "seed": run.seed,
        **({"replica": run.replica} if run.replica else {}),
        **({"permuted_labels": True} if run.permuted_labels else {}),
        "key": model_key(
            c,
            p.data_fingerprint,
            run.entry,
            run.seed,
            init_seed=run.init_seed,
            ordering_seed=run.ordering_seed,
            permuted_labels=run.permuted_labels,
            guided=run.guided,
        ),
        "device": str(device),
        "training_code_version": TRAINING_CODE_VERSION,
    }
    try:
        result = train_model(
            model,
            data,
            train_settings(c, run.ordering_seed),
            augmentation,
            run.seed if run.seed is not None else 0,
            on_epoch=on_epoch,
            on_batch=on_batch,
            on_checkpoint=on_checkpoint,
            resume=resume,
            guided=guided,
        )
    except TrainingDiverged as err:
        return TrainOutcome({**meta, "status": "diverged", "error": str(err)})
    return TrainOutcome(
        {
            **meta,
            "status": "complete",
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
            "train_seconds": round(result.seconds, 3),
            "initial_weights_sha256": result.initial_digest,
            "epochs": len(result.history),
            **({"resumed_after_epoch": resume.epochs_done} if resume is not None else {}),
        },
        result.best_state,
        result.history,
        result.seconds,
        epoch_predictions(p, result.predictions),
    )


# --- CAM sets ------------------------------------------------------------------------------------


def cam_key(prepared: PreparedStudy, run: ModelRun, method: str | None = None) -> str:
    """Everything a stored CAM set depends on: the model, the test images, and the CAM settings
    (the batch size too, since batched convolutions may round differently)."""
    p, c = prepared, prepared.config
    return digest(
        {
            "model_id": run.model_id,
            "test": p.split.test.tolist(),
            "test_fingerprint": p.test_fingerprint,
            "method": method or c.cam.method,
            "layer": p.target_layer,
            "target": c.cam.target,
            "image_size": c.data.image_size,
            "batch_size": c.cam.batch_size,
            "linear_head": p.head is not None,
            "optimize": c.cam.optimize,
        }
    )


def load_model(prepared: PreparedStudy, weights: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    c = prepared.config
    channels, m = prepared.train_set.images.shape[1], c.model
    model = build_model(m.name, channels, prepared.num_classes, c.training.init_seed, params=m.params)
    model.load_state_dict(weights)
    return model.to(device)


def compute_cam_set(
    prepared: PreparedStudy,
    run: ModelRun,
    model: torch.nn.Module,
    device: torch.device,
    method: str | None = None,
    after_batch=None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The CAM set of one model for every test image, by the study's CAM method or by `method` (one
    of cam.extra_methods): raw maps at the layer's resolution, logits, predictions, targets, with
    the metadata (CAM key) it is stored with. `after_batch(number, size)` follows each batch."""
    p, c = prepared, prepared.config
    mean = torch.tensor(p.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(p.std, device=device).view(1, -1, 1, 1)
    test_images = p.test_set.images[p.split.test]
    labels = p.test_set.labels[p.split.test]
    maps, logits, targets = [], [], []
    batch = c.cam.batch_size
    layer: torch.nn.Module | str = p.target_layer
    if c.cam.optimize:  # one copy for all batches (raw_cams would make one per call)
        model, layer = inference_copy(model, layer)
    for number, start in enumerate(range(0, len(test_images), batch), start=1):
        inputs = prepare_inputs(images_on(test_images[start : start + batch], device), mean, std, c.data.image_size)
        wanted = labels[start : start + batch].to(device) if c.cam.target == "label" else None
        batch_maps, batch_logits = raw_cams(
            method or c.cam.method, model, layer, inputs, wanted, batch, head=p.head, optimize=False
        )
        maps.append(batch_maps.cpu())
        logits.append(batch_logits.cpu())
        targets.append((wanted if wanted is not None else batch_logits.argmax(1)).cpu())
        if after_batch is not None:
            after_batch(number, len(inputs))
    logits_all = torch.cat(logits)
    tensors = {
        "raw": torch.cat(maps).float(),
        "logits": logits_all.float(),
        "predictions": logits_all.argmax(1),
        "targets": torch.cat(targets),
        "image_index": p.split.test.clone(),
    }
    metadata = {
        "cam_key": cam_key(p, run, method),
        "method": method or c.cam.method,
        "target_layer": p.target_layer,
        "target": c.cam.target,
        "model_id": run.model_id,
    }
    return tensors, metadata


# --- the chain -----------------------------------------------------------------------------------


@dataclass
class ChainJob:
    """What one model's chain does: train it (unless its finished weights are handed over),
    compute the CAM sets of `cam_methods` (None: the study's method, else one of
    cam.extra_methods), and, if `compare`, its metrics against the baseline's CAM set."""

    run_index: int  # the model's position in PreparedStudy.all_runs
    train: bool
    cam_methods: list[str | None] = field(default_factory=list)
    compare: bool = False
    epochs_done: int = 0  # of a model resumed from its checkpoint (for progress displays)


@dataclass
class ChainResult:
    outcome: TrainOutcome | None = None  # when the chain trained the model
    cams: dict = field(default_factory=dict)  # method (None: the study's) → (tensors, metadata)
    metrics: dict[str, np.ndarray] | None = None  # metric → per-image values against the baseline
    cam_seconds: float = 0.0
    node: str = ""
    pid: int = 0


class ChainHooks(Protocol):
    """Where a chain's checkpoints go and whom it tells about its progress: the run directory and
    the console for the local executor, the driver's coordinator actor for the Ray executor."""

    def checkpoint(self, run: ModelRun) -> bytes | None:
        """The stored checkpoint of `run` (the state after its last finished epoch), if any."""

    def save_checkpoint(self, run: ModelRun, epochs_done: int, data: bytes) -> None: ...

    def epoch(self, run: ModelRun, row: dict) -> None: ...

    def batch(self, run: ModelRun, images: int) -> None: ...

    def stage(self, run: ModelRun, name: str) -> None: ...

    def cam_batch(self, run: ModelRun, images: int) -> None: ...


def run_chain(
    prepared: PreparedStudy,
    job: ChainJob,
    hooks: ChainHooks,
    device: torch.device,
    *,
    weights: dict[str, torch.Tensor] | None = None,
    base_cams: dict[str, torch.Tensor] | None = None,
    data: TrainingData | None = None,
) -> ChainResult:
    """Train one model (resuming from its checkpoint when `hooks` has one), compute its CAM sets
    and its metrics against `base_cams`; `weights`: the finished model's, when `job.train` is
    False; `data`: the study's training data on `device`, if the caller keeps it between models."""
    run = prepared.all_runs[job.run_index]
    identity = {"model_id": run.model_id}
    result = ChainResult()
    if job.train:
        resume = None
        stored = hooks.checkpoint(run)
        if stored is not None:
            try:
                resume = train_state_from_bytes(stored, identity)
            except ValueError:
                resume = None  # the train stage said so when it planned: trained from its first epoch

        def on_checkpoint(state: TrainState) -> None:
            hooks.save_checkpoint(run, state.epochs_done, train_state_to_bytes(state, identity))
            kill_point("train", job.run_index, state.epochs_done)

        if data is not None and run.permuted_labels:
            data = permuted_label_data(prepared.config, data)
        outcome = train_one_model(
            prepared,
            run,
            device,
            resume,
            data=data,
            on_epoch=lambda row: hooks.epoch(run, row),
            on_batch=lambda images: hooks.batch(run, images),
            on_checkpoint=on_checkpoint,
        )
        if outcome.best_state is not None:
            outcome.best_state = {name: value.cpu() for name, value in outcome.best_state.items()}
        result.outcome = outcome
        if outcome.status != "complete":
            return result
        weights = outcome.best_state
    if job.cam_methods:
        hooks.stage(run, "explain")
        started = time.perf_counter()
        model = load_model(prepared, weights, device)

        def after_batch(number: int, size: int) -> None:
            hooks.cam_batch(run, size)
            kill_point("explain", job.run_index, number)

        for method in job.cam_methods:
            result.cams[method] = compute_cam_set(prepared, run, model, device, method, after_batch)
        result.cam_seconds = time.perf_counter() - started
    if job.compare and base_cams is not None and None in result.cams:
        result.metrics = study_cam_metrics(
            prepared.config, base_cams, result.cams[None][0], prepared.input_size, device
        )
    return result
