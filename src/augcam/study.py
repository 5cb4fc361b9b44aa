"""A whole study: plan the models, then train → explain → compare → performance → aggregate.

Each stage reads only what the stage before it stored in the run directory, and every stored
artefact is keyed by content (`model_id` for weights, a CAM key for CAM sets), so a rerun reuses
whatever is already there and a study that gains an augmentation trains only the new models.
A model in training is checkpointed after every epoch (`models/<id>/checkpoint.safetensors`), so a
killed run resumes at the epoch where it stopped; docs/reliability.md lists the promises and tests.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from safetensors import SafetensorError
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from augcam import __version__
from augcam.cams import capture_output, inference_copy, raw_cams, upsample
from augcam.config import (RECIPE_FIELDS, AugmentationConfig, GuidedConfig, StudyConfig, digest, load_config,
                           with_device)
from augcam.data import ImageSet, load_dataset_parts
from augcam.data.splits import Split, channel_stats, make_split
from augcam.errors import AugcamError, ConfigError, DataError
from augcam.metrics import class_kld, compare_maps, performance
from augcam.metrics.performance import roc_auc
from augcam.metrics.saliency import DEFAULT_KL_EPS, compare_saliency
from augcam.models import MODELS, build_model, get_layer
from augcam.store import (RunDir, RunLock, describe_holder, read_tensor_metadata, read_tensors, write_json,
                          write_parquet, write_tensors, write_text)
from augcam.train import (GuidedTraining, TrainingData, TrainingDiverged, TrainSettings, TrainState,
                          load_train_state, prepare_inputs, save_train_state, train_model, uses_targets)

# The executors that run a study's models (`augcam run --executor`): "local" runs them one after
# the other in this process; "ray" runs each model's stage chain as a task on a Ray cluster
# (augcam/cluster.py). Both call the same per-model functions below (train_one_model,
# compute_cam_set), so they give the same numbers.
EXECUTORS = ("local", "ray")


def check_executor(executor: str, address: str | None) -> None:
    """`--executor` / `--address` as an AugcamError, before anything else is loaded."""
    if executor not in EXECUTORS:
        raise AugcamError(f"--executor: expected {' or '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise AugcamError("--address names a Ray cluster: use it with --executor ray")

# Bump when a change to training code (train.py, an augmentation, a model builder) changes the
# weights it produces: every model id changes, so cached models are retrained instead of reused.
TRAINING_CODE_VERSION = 1
BASELINE = "baseline"

# Test-only hook. When this environment variable names a point of the run, the process kills itself
# there with SIGKILL, so tests can interrupt a run at a precise and reproducible place (a loaded
# machine makes "kill after N seconds" land anywhere). Points, `i` being the model's position in
# the plan (0 = baseline):
#   train:<i>:<epoch>     after model i's checkpoint of that epoch (1-based) is written
#   explain:<i>:<batch>   after batch <batch> (1-based) of model i's CAMs, before its CAM set is written
#   compare:<i>           after model i's metrics are computed, before metrics.parquet is written
#   stage:<name>          after stage <name> (train, explain, compare, performance, aggregate) finished
# Never set it outside tests.
KILL_AT_ENV = "AUGCAM_TEST_KILL_AT"


def kill_point(*parts: object) -> None:
    """SIGKILL this process if AUGCAM_TEST_KILL_AT names this point (test-only, see above)."""
    wanted = os.environ.get(KILL_AT_ENV)
    if wanted and wanted == ":".join(str(part) for part in parts):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class ModelRun:
    """One model of the plan: the baseline (entry None), augmentation `entry` with `seed`, or a
    control without augmentation: a baseline `replica` trained with another init or ordering seed
    (the noise floor), or the baseline trained on permuted labels (the data-randomisation check)."""

    model_id: str
    augmentation: str
    seed: int | None
    entry: AugmentationConfig | None = None
    init_seed: int = 0
    ordering_seed: int = 0
    replica: str | None = None  # "ordering+1", "init+1", …
    permuted_labels: bool = False
    guided: GuidedConfig | None = None  # a mask-guided intervention (then entry is None)

    @property
    def is_baseline(self) -> bool:
        """The baseline itself (not a replica nor the permuted-labels control)."""
        return self.entry is None and self.guided is None and self.replica is None and not self.permuted_labels

    @property
    def is_intervention(self) -> bool:
        """An augmented or mask-guided model: one the compare stages compare with the baseline."""
        return self.entry is not None or self.guided is not None

    @property
    def label(self) -> str:
        """How messages name the model: `baseline`, `affine seed 1`, `baseline replica init+1`."""
        if self.replica is not None:
            return f"{BASELINE} replica {self.replica}"
        if self.permuted_labels:
            return f"{BASELINE} on permuted labels"
        return self.augmentation if self.is_baseline else f"{self.augmentation} seed {self.seed}"


@dataclass
class PreparedStudy:
    """Everything a study needs before it touches the run directory; building it raises every
    error a user can cause (config, data, layer) first."""

    config: StudyConfig
    train_set: ImageSet
    test_set: ImageSet
    split: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_layer: str
    input_size: tuple[int, int]
    layer_size: tuple[int, int]
    data_fingerprint: str
    test_fingerprint: str = ""
    runs: list[ModelRun] = field(default_factory=list)  # the baseline, then every augmentation × seed
    controls: list[ModelRun] = field(default_factory=list)  # baseline replicas, permuted labels
    # The dataset's own validation set (split.val indexes it), e.g. the crosses' flipped one;
    # None: split.val indexes the training set.
    val_set: ImageSet | None = None

    @property
    def test_masks(self) -> torch.Tensor | None:
        """ROI masks of the study's test images (bool (N, H, W)), when the dataset has masks."""
        return self.test_set.masks[self.split.test] if self.test_set.masks is not None else None

    @property
    def val_source(self) -> ImageSet:
        """The set split.val indexes."""
        return self.val_set if self.val_set is not None else self.train_set

    @property
    def baseline(self) -> ModelRun:
        return self.runs[0]

    @property
    def all_runs(self) -> list[ModelRun]:
        return self.runs + self.controls

    @property
    def replicas(self) -> list[ModelRun]:
        return [run for run in self.controls if run.replica is not None]

    @property
    def permuted(self) -> ModelRun | None:
        return next((run for run in self.controls if run.permuted_labels), None)

    @property
    def num_classes(self) -> int:
        return len(self.train_set.classes)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise AugcamError(f"device {requested!r} was requested but no CUDA GPU is available "
                          "(use --device cpu, or device: auto in the study file)")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise AugcamError("device 'mps' was requested but Apple's MPS backend is not available")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise AugcamError(f"device {requested!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def set_deterministic() -> None:
    """Same config + same machine ⇒ same numbers."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: a few CUDA backward kernels (adaptive average pooling) have no deterministic
    # version; on the CPU every op used here is deterministic.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _fingerprint(image_set: ImageSet, *index_lists: torch.Tensor) -> str:
    """Content hash of the selected images and labels, in order, with their shape and the class
    names (the number of classes sizes the model's output)."""
    import hashlib

    h = hashlib.sha256()
    h.update(json.dumps({"shape": list(image_set.images.shape[1:]), "classes": list(image_set.classes)}).encode())
    for indices in index_lists:
        h.update(f"{len(indices)}:".encode())
        h.update(image_set.images[indices].numpy().tobytes())
        h.update(image_set.labels[indices].numpy().tobytes())
    return h.hexdigest()


def _data_fingerprint(train_set: ImageSet, split: Split, val_set: ImageSet | None = None) -> str:
    """What the weights depend on: the training and validation images and labels, in split order
    (the normalisation statistics are computed from them); with a dataset's own validation set,
    its selected images are hashed after the training part's, and the training masks too, which
    mask-guided losses train on."""
    if val_set is None:
        return _fingerprint(train_set, split.train, split.val)
    import hashlib

    h = hashlib.sha256()
    h.update(_fingerprint(train_set, split.train).encode())
    h.update(_fingerprint(val_set, split.val).encode())
    if train_set.masks is not None:
        h.update(train_set.masks[split.train].numpy().tobytes())
    return h.hexdigest()


def model_key(config: StudyConfig, data_fingerprint: str, entry: AugmentationConfig | None,
              seed: int | None, *, init_seed: int | None = None, ordering_seed: int | None = None,
              permuted_labels: bool = False, guided: GuidedConfig | None = None) -> dict[str, Any]:
    """Everything that determines a model's trained weights, and nothing else.

    Not in the key, on purpose: analysis settings (model.target_layer, cam, metrics), the device
    and library versions (recorded in meta.json and the manifest; see docs/reliability.md).
    eval_batch_size is in: validation accuracy picks the best epoch, and batched evaluation can
    round differently.
    """
    t = config.training
    key: dict[str, Any] = {
        "training_code": TRAINING_CODE_VERSION,
        "data": {"fingerprint": data_fingerprint, "image_size": config.data.image_size},
        "model": config.model.name,
        "training": {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
                     "weight_decay": t.weight_decay,
                     "init_seed": t.init_seed if init_seed is None else init_seed,
                     "ordering_seed": t.ordering_seed if ordering_seed is None else ordering_seed,
                     "eval_batch_size": t.eval_batch_size},
        "augmentation": None,
    }
    if t.steps_per_epoch is not None:  # only when set, so that existing model ids do not change
        key["training"]["steps_per_epoch"] = t.steps_per_epoch
    if t.recipe():  # only when set: the reference loop's ids stay what they were
        key["training"]["recipe"] = t.recipe()
    if t.base_augmentations:  # likewise
        key["training"]["base_augmentations"] = [{"name": base.name, "params": base.resolved_params()}
                                                 for base in t.base_augmentations]
    if permuted_labels:
        key["permuted_labels"] = True
    if entry is not None:
        key["augmentation"] = {"name": entry.name, "params": entry.resolved_params(), "copies": t.copies,
                               "seed": seed}
        if uses_targets(entry.build()):
            # Trained on probability targets since mixed-sample training (issue 7): not the weights
            # an earlier augcam gave the same entry with the original labels.
            key["augmentation"]["targets"] = "mixed"
    if guided is not None:  # absent otherwise, so the ids of models without a guided loss stay as they were
        key["guided"] = {"loss": guided.loss, "weight": guided.weight, "ce_weight": guided.ce_weight,
                         "feature_layer": guided_feature_layer(config, guided), "seed": seed}
    return key


def guided_feature_layer(config: StudyConfig, guided: GuidedConfig) -> str | None:
    """actdiff's feature module: the configured one, else the model's declared classifier (None:
    augcam.guided's default, the last nn.Linear)."""
    if guided.feature_layer is not None:
        return guided.feature_layer
    head = MODELS[config.model.name].head
    return head.classifier if head is not None else None


def guided_runs(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """One model per (guided entry, seed). Seed s shifts the data order by s (seed 0 = exactly the
    baseline's init and order, so the loss is the only difference) and seeds the loss's own
    randomness; the deterministic losses would otherwise train the same model for every seed."""
    t = config.training
    runs = []
    for entry in config.guided:
        for seed in config.seeds:
            ordering_seed = t.ordering_seed + seed
            key = digest(model_key(config, data_fingerprint, None, seed, ordering_seed=ordering_seed, guided=entry))
            runs.append(ModelRun(f"{entry.loss}-s{seed}-{key[:12]}", entry.display, seed, None,
                                 init_seed=t.init_seed, ordering_seed=ordering_seed, guided=entry))
    return runs


def plan(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """The baseline first, then one model per (augmentation, seed), the identity control included."""
    t = config.training
    seeds = {"init_seed": t.init_seed, "ordering_seed": t.ordering_seed}
    base_key = digest(model_key(config, data_fingerprint, None, None))
    runs = [ModelRun(f"{BASELINE}-{base_key[:12]}", BASELINE, None, **seeds)]
    for entry in config.study_augmentations:
        for seed in config.seeds:
            key = digest(model_key(config, data_fingerprint, entry, seed))
            runs.append(ModelRun(f"{entry.name}-s{seed}-{key[:12]}", entry.display, seed, entry, **seeds))
    return runs + guided_runs(config, data_fingerprint)


def plan_controls(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """Baselines that differ from the baseline by randomness alone: replica i (1-based) changes the
    ordering seed when i is odd and the init seed when i is even, by ceil(i / 2), so the noise floor
    covers both sources the literature names; then, if asked, the baseline on permuted labels."""
    t = config.training
    runs = []
    for i in range(1, config.controls.baseline_replicas + 1):
        shift = (i + 1) // 2
        init_seed, ordering_seed = (t.init_seed, t.ordering_seed + shift) if i % 2 else \
            (t.init_seed + shift, t.ordering_seed)
        replica = f"ordering+{shift}" if i % 2 else f"init+{shift}"
        key = digest(model_key(config, data_fingerprint, None, None, init_seed=init_seed,
                               ordering_seed=ordering_seed))
        runs.append(ModelRun(f"{BASELINE}-{replica.replace('+', '')}-{key[:12]}", BASELINE, None,
                             init_seed=init_seed, ordering_seed=ordering_seed, replica=replica))
    if config.controls.data_randomization:
        key = digest(model_key(config, data_fingerprint, None, None, permuted_labels=True))
        runs.append(ModelRun(f"{BASELINE}-permuted-{key[:12]}", BASELINE, None, init_seed=t.init_seed,
                             ordering_seed=t.ordering_seed, permuted_labels=True))
    return runs


def prepare(config: StudyConfig | str | Path | dict) -> PreparedStudy:
    """Validate the config against the data and the model; load and split the data."""
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    d = config.data
    parts = load_dataset_parts(d.dataset, d.root, d.download)
    train_set, test_set, val_set = parts.train, parts.test, parts.val
    try:
        split = make_split(train_set.labels, test_set.labels, val_fraction=d.val_fraction, seed=d.split_seed,
                           train_size=d.train_size, val_size=d.val_size, test_size=d.test_size,
                           val_labels=val_set.labels if val_set is not None else None)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    mean, std = channel_stats(train_set.images[split.train])
    if min(std) == 0:
        raise DataError(f"data.dataset {d.dataset!r}: a channel of the training images is constant "
                        "(standard deviation 0), so they cannot be normalised")
    spec = MODELS.lookup(config.model.name, where="model.name")
    target_layer = config.model.target_layer or spec.target_layer
    height, width = test_set.images.shape[-2:]
    input_size = (d.image_size, d.image_size) if d.image_size else (int(height), int(width))
    layer_size = target_layer_size(config, train_set, target_layer, input_size)
    if config.guided:
        check_guided(config, train_set, input_size)
    fingerprint = _data_fingerprint(train_set, split, val_set)
    prepared = PreparedStudy(config, train_set, test_set, split, mean, std, target_layer, input_size,
                             layer_size, fingerprint, _fingerprint(test_set, split.test), val_set=val_set)
    prepared.runs = plan(config, fingerprint)
    prepared.controls = plan_controls(config, fingerprint)
    return prepared


def check_guided(config: StudyConfig, train_set: ImageSet, input_size: tuple[int, int]) -> None:
    """What the guided entries need from the data and the model, as ConfigErrors."""
    d = config.data
    if train_set.masks is None:
        raise ConfigError(f"guided: mask-guided losses need ROI masks, but data.dataset {d.dataset!r} has none "
                          "(a dataset with masks: crosses)")
    if tuple(input_size) != tuple(train_set.images.shape[-2:]):
        raise ConfigError(f"guided: data.image_size {d.image_size} resizes the inputs but not the masks; "
                          "leave data.image_size out for mask-guided training")
    model = build_model(config.model.name, train_set.images.shape[1], len(train_set.classes), config.training.init_seed)
    modules = dict(model.named_modules())
    for entry in config.guided:
        layer = entry.feature_layer
        if layer is not None and layer not in modules:
            raise ConfigError(f"guided[{entry.display}].feature_layer: {layer!r} is not a module of "
                              f"{config.model.name} (modules: {', '.join(name for name in modules if name)})")


def target_layer_size(config: StudyConfig, train_set: ImageSet, target_layer: str,
                      input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size of the target layer's output; refuses a layer where a CAM would be constant."""
    model = build_model(config.model.name, train_set.images.shape[1], len(train_set.classes),
                        config.training.init_seed)
    layer = get_layer(model, target_layer)
    model.eval()
    with capture_output(layer) as outputs, torch.no_grad():
        try:
            model(torch.zeros(2, train_set.images.shape[1], *input_size))
        except RuntimeError as err:
            raise ConfigError(f"model.name: {config.model.name} cannot take {input_size[0]}×{input_size[1]} "
                              f"inputs ({err}); set data.image_size") from None
    if not outputs or outputs[0].dim() != 4:
        shape = tuple(outputs[0].shape) if outputs else "nothing"
        raise ConfigError(f"model.target_layer: {target_layer!r} outputs {shape}; a CAM needs a "
                          "convolutional layer with (batch, channels, height, width) output")
    size = tuple(int(s) for s in outputs[0].shape[-2:])
    if size[0] * size[1] == 1:
        raise ConfigError(
            f"model.target_layer: {target_layer!r} of {config.model.name} is 1×1 at "
            f"{input_size[0]}×{input_size[1]} input, so every CAM would be constant (a CAM is a weighted "
            "sum of the layer's maps, and a 1×1 map has one pixel: upsampled, it is flat and normalises "
            "to zero); set data.image_size larger (e.g. 64) or choose an earlier layer")
    return size  # type: ignore[return-value]


# --- one model's work, shared by every executor -----------------------------------------------
# Pure functions of the prepared study: they read and write no file, so the local executor and a
# cluster worker (augcam/cluster.py) run exactly the same code; what they return is stored by
# `store_trained` and `write_tensors` in the process that owns the run directory.


def images_on(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images → float32 in [0, 1] on `device`."""
    return images.to(device).float().div_(255)


def training_data(prepared: PreparedStudy, device: torch.device, permuted_labels: bool = False) -> TrainingData:
    """The study's training and validation data on `device` (labels permuted for that control)."""
    p = prepared
    data = TrainingData(images_on(p.train_set.images[p.split.train], device),
                        p.train_set.labels[p.split.train].to(device),
                        images_on(p.val_source.images[p.split.val], device),
                        p.val_source.labels[p.split.val].to(device),
                        p.mean, p.std, p.config.data.image_size, num_classes=p.num_classes,
                        train_masks=(p.train_set.masks[p.split.train].to(device)
                                     if p.train_set.masks is not None else None))
    return permuted_label_data(p.config, data) if permuted_labels else data


def permuted_label_data(config: StudyConfig, data: TrainingData) -> TrainingData:
    """The training data with labels shuffled across images (training and validation alike, so
    best-epoch selection is not on true labels): Adebayo et al.'s data-randomisation test."""
    generator = torch.Generator().manual_seed(config.data.split_seed + 1)
    train = torch.randperm(len(data.train_labels), generator=generator)
    val = torch.randperm(len(data.val_labels), generator=generator)
    return replace(data, train_labels=data.train_labels[train.to(data.train_labels.device)],
                   val_labels=data.val_labels[val.to(data.val_labels.device)])


def train_settings(config: StudyConfig, ordering_seed: int | None = None) -> TrainSettings:
    """The training loop's settings from the study's `training` section; `ordering_seed`: a
    model's own (a baseline replica's differs), else the section's."""
    t = config.training
    ordering_seed = t.ordering_seed if ordering_seed is None else ordering_seed
    return TrainSettings(t.epochs, t.batch_size, t.lr, t.weight_decay, ordering_seed, t.copies,
                         t.eval_batch_size, t.steps_per_epoch, **{name: getattr(t, name) for name in RECIPE_FIELDS},
                         base_augmentations=tuple(entry.build() for entry in t.base_augmentations))


@dataclass
class TrainOutcome:
    """What training one model gives: meta.json's content (status "complete" or "diverged"), and
    for a complete model its best-validation weights and per-epoch history."""

    meta: dict[str, Any]
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return self.meta["status"]


def train_one_model(prepared: PreparedStudy, run: ModelRun, device: torch.device, resume: TrainState | None = None,
                    *, data: TrainingData | None = None, on_epoch=None, on_batch=None,
                    on_checkpoint=None) -> TrainOutcome:
    """Train one model of the plan on `device`, from its first epoch or from `resume` (a state
    `on_checkpoint` received), and return its weights, history and meta. Touches no file; a model
    whose loss diverges gives an outcome with status "diverged" and the error."""
    p, c = prepared, prepared.config
    if data is None:
        data = training_data(p, device, run.permuted_labels)
    model = build_model(c.model.name, p.train_set.images.shape[1], p.num_classes, run.init_seed).to(device)
    augmentation = run.entry.build() if run.entry is not None else None
    guided = None
    if run.guided is not None:
        guided = GuidedTraining(run.guided.loss, run.guided.weight, run.guided.ce_weight,
                                guided_feature_layer(c, run.guided))
    meta = {"model_id": run.model_id, "augmentation": run.augmentation, "seed": run.seed,
            **({"replica": run.replica} if run.replica else {}),
            **({"permuted_labels": True} if run.permuted_labels else {}),
            "key": model_key(c, p.data_fingerprint, run.entry, run.seed, init_seed=run.init_seed,
                             ordering_seed=run.ordering_seed, permuted_labels=run.permuted_labels,
                             guided=run.guided),
            "device": str(device), "training_code_version": TRAINING_CODE_VERSION}
    try:
        result = train_model(model, data, train_settings(c, run.ordering_seed), augmentation,
                             run.seed if run.seed is not None else 0, on_epoch=on_epoch, on_batch=on_batch,
                             on_checkpoint=on_checkpoint, resume=resume, guided=guided)
    except TrainingDiverged as err:
        return TrainOutcome({**meta, "status": "diverged", "error": str(err)})
    return TrainOutcome(
        {**meta, "status": "complete", "best_epoch": result.best_epoch,
         "best_val_accuracy": result.best_val_accuracy, "train_seconds": round(result.seconds, 3),
         "initial_weights_sha256": result.initial_digest, "epochs": len(result.history),
         **({"resumed_after_epoch": resume.epochs_done} if resume is not None else {})},
        result.best_state, result.history, result.seconds)


def store_trained(run_dir: RunDir, run: ModelRun, outcome: TrainOutcome) -> None:
    """Write a trained model into the run directory and drop its checkpoint."""
    if outcome.status == "complete":
        write_tensors(run_dir.weights_file(run.model_id), outcome.best_state)
        write_parquet(run_dir.history_file(run.model_id), pd.DataFrame(outcome.history))
    # meta.json is written last: its presence with the weights marks a finished model.
    write_json(run_dir.meta_file(run.model_id), outcome.meta)
    run_dir.checkpoint_file(run.model_id).unlink(missing_ok=True)


def linear_head(config: StudyConfig):
    """The model's declared LinearHead: gradient CAMs at the layer it follows need no backward
    pass (same maps within float rounding, tested in test_cams)."""
    return MODELS[config.model.name].head


def cam_key(prepared: PreparedStudy, run: ModelRun, method: str | None = None) -> str:
    """Everything a stored CAM set depends on: the model, the test images, and the CAM settings
    (the batch size too, since batched convolutions may round differently)."""
    p, c = prepared, prepared.config
    return digest({"model_id": run.model_id, "test": p.split.test.tolist(),
                   "test_fingerprint": p.test_fingerprint, "method": method or c.cam.method,
                   "layer": p.target_layer, "target": c.cam.target, "image_size": c.data.image_size,
                   "batch_size": c.cam.batch_size, "linear_head": linear_head(c) is not None,
                   "optimize": c.cam.optimize})


def load_model(prepared: PreparedStudy, weights: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    c = prepared.config
    model = build_model(c.model.name, prepared.train_set.images.shape[1], prepared.num_classes,
                        c.training.init_seed)
    model.load_state_dict(weights)
    return model.to(device)


def compute_cam_set(prepared: PreparedStudy, run: ModelRun, model: torch.nn.Module, device: torch.device,
                    method: str | None = None, after_batch=None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
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
        inputs = prepare_inputs(images_on(test_images[start:start + batch], device), mean, std, c.data.image_size)
        wanted = labels[start:start + batch].to(device) if c.cam.target == "label" else None
        batch_maps, batch_logits = raw_cams(method or c.cam.method, model, layer, inputs, wanted,
                                            batch, head=linear_head(c), optimize=False)
        maps.append(batch_maps.cpu())
        logits.append(batch_logits.cpu())
        targets.append((wanted if wanted is not None else batch_logits.argmax(1)).cpu())
        if after_batch is not None:
            after_batch(number, len(inputs))
    logits_all = torch.cat(logits)
    tensors = {"raw": torch.cat(maps).float(), "logits": logits_all.float(), "predictions": logits_all.argmax(1),
               "targets": torch.cat(targets), "image_index": p.split.test.clone()}
    metadata = {"cam_key": cam_key(p, run, method), "method": method or c.cam.method,
                "target_layer": p.target_layer, "target": c.cam.target, "model_id": run.model_id}
    return tensors, metadata


# --- running -------------------------------------------------------------------------------


@dataclass
class StudyResult:
    out: Path
    performance: pd.DataFrame
    metrics: pd.DataFrame
    aggregated: pd.DataFrame
    manifest: dict


def _versions() -> dict[str, str]:
    import kornia
    import pyarrow
    import pydantic
    import safetensors
    import torchvision

    return {"augcam": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "kornia": kornia.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pyarrow.__version__, "safetensors": safetensors.__version__,
            "pydantic": pydantic.__version__}


def _deterministic_flags() -> dict[str, Any]:
    return {"use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_threads": torch.get_num_threads()}


def _progress(console: Console, disable: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, transient=False, disable=disable)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _labels(runs: list["ModelRun"], limit: int = 8) -> str:
    names = [run.label for run in runs]
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


@dataclass
class TrainingPlan:
    """Stage 1's view of the run directory: finished models (complete, or failed for good), the
    checkpoints a killed run left, and the models still to train."""

    finished: dict[str, dict]
    resumable: dict[str, TrainState]
    todo: list[ModelRun]

    @property
    def resumed(self) -> list[ModelRun]:
        return [run for run in self.todo if run.model_id in self.resumable]

    @property
    def new(self) -> list[ModelRun]:
        return [run for run in self.todo if run.model_id not in self.resumable]


class Runner:
    """One study in one run directory: the stages in order. Stages 1–2 (train, explain) run here
    one model after the other, or on a cluster when an `executor` (augcam.cluster.RayExecutor) is
    given; every later stage runs here, from what the run directory holds."""

    def __init__(self, prepared: PreparedStudy, out: Path, device: torch.device, console: Console,
                 executor: Any = None):
        self.p = prepared
        self.config = prepared.config
        self.run_dir = RunDir(out)
        self.device = device
        self.console = console
        self.executor = executor
        # Per-image metrics against the baseline computed by a cluster worker right after the model's
        # CAMs (model id → metric → values); the compare stages compute the others from stored CAMs.
        self.vs_baseline: dict[str, dict[str, np.ndarray]] = {}
        self.manifest: dict[str, Any] = {
            "augcam_version": __version__, "study": self.config.name, "config_hash": self.config.config_hash(),
            "training_code_version": TRAINING_CODE_VERSION,
            "versions": _versions(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "host": platform.node(), "pid": os.getpid(),
            "torch_threads": torch.get_num_threads(),
            "deterministic": _deterministic_flags(),
            "seeds": {"split": self.config.data.split_seed, "init": self.config.training.init_seed,
                      "ordering": self.config.training.ordering_seed, "augmentation": self.config.seeds},
            "data": {"fingerprint": prepared.data_fingerprint, "test_fingerprint": prepared.test_fingerprint},
            "started": _now(), "status": "running", "stages": {}, "models": {},
            "executor": "local" if executor is None else executor.name,
        }
        if executor is not None:
            self.manifest[executor.name] = executor.manifest_info()
        previous = self._previous_manifest()
        if previous is not None:
            # What the last run of this directory left: "running" means it was killed.
            self.manifest["previous_run"] = {key: previous.get(key) for key in ("started", "finished", "status")}

    def _previous_manifest(self) -> dict | None:
        path = self.run_dir.manifest_file
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            self.console.print(f"[yellow]{path}: unreadable manifest of the previous run ({err}); replacing it[/]")
            return None

    # Data on the device, as float32 in [0, 1].
    def _images(self, images: torch.Tensor) -> torch.Tensor:
        return images_on(images, self.device)

    def _write_manifest(self) -> None:
        write_json(self.run_dir.manifest_file, self.manifest)

    def _stage_started(self, name: str) -> float:
        self.manifest["stages"][name] = {"status": "running", "started": _now()}
        self._write_manifest()
        return time.perf_counter()

    def _stage(self, name: str, status: str, seconds: float, **extra: Any) -> None:
        started = self.manifest["stages"].get(name, {}).get("started")
        self.manifest["stages"][name] = {"status": status, "started": started, "seconds": round(seconds, 3),
                                         **extra}
        self._write_manifest()
        kill_point("stage", name)

    def run(self) -> StudyResult:
        self.run_dir.manifest_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        try:
            if self.executor is None:
                trained = self.train_all()
                explained = self.explain_all(trained)
            else:
                explained = self.executor.train_and_explain(self)
            metrics = self.compare(explained)
            performance_table = self.performance_table(explained)
            self.localisation_table(explained)
            aggregated = self.aggregate(metrics)
            self.compare_controls(explained)
            self.sanity(explained)
            self.faithfulness(explained)
            self.report()
        except BaseException as err:
            # Recorded, then re-raised: the manifest says how the run ended.
            self.manifest["status"] = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            self.manifest["error"] = f"{type(err).__name__}: {err}"
            self.manifest["finished"] = _now()
            self._write_manifest()
            raise
        self.manifest["finished"] = _now()
        self.manifest["status"] = "complete"
        self._write_manifest()
        return StudyResult(self.run_dir.root, performance_table, metrics, aggregated, self.manifest)

    def report(self) -> None:
        """Stage 6: analyses, figures and report.html, from the tables alone (= `augcam report`)."""
        from augcam.analysis import write_report

        started = self._stage_started("report")
        # The manifest is complete but for this stage: the report's provenance footer reads it.
        path = write_report(self.run_dir.root, self.console)
        self._stage("report", "complete", time.perf_counter() - started, file=path.name)

    # --- stage 1: train --------------------------------------------------------------------

    def _meta(self, run: ModelRun) -> dict | None:
        """The stored meta.json of a finished model (complete, or failed for good), else None."""
        path = self.run_dir.meta_file(run.model_id)
        if not path.exists():
            return None
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            # augcam writes it atomically, so only a hand edit gets here: the model is trained again.
            self.console.print(f"[yellow]{path}: unreadable ({err}); training {run.label} again[/]")
            return None
        if meta.get("status") == "complete" and not self.run_dir.weights_file(run.model_id).exists():
            return None  # weights deleted by hand: train again
        return meta

    def _resumable(self, run: ModelRun) -> TrainState | None:
        """The checkpoint of a model a killed run was training, if there is a usable one."""
        path = self.run_dir.checkpoint_file(run.model_id)
        if not path.exists():
            return None
        try:
            return load_train_state(path, {"model_id": run.model_id})
        except ValueError as err:
            # Not an error of the study: the model is trained from its first epoch instead.
            self.console.print(f"[yellow]ignoring checkpoint[/] {err}; training {run.label} from the start")
            return None

    def training_plan(self, where: str) -> TrainingPlan:
        """What stage 1 reuses, resumes and trains (printed); `where` names the device or cluster."""
        p, t = self.p, self.config.training
        finished: dict[str, dict] = {}
        resumable: dict[str, TrainState] = {}
        for run in p.all_runs:
            meta = self._meta(run)
            if meta is not None:
                finished[run.model_id] = meta
                # A run killed after meta.json but before removing the checkpoint left it behind.
                self.run_dir.checkpoint_file(run.model_id).unlink(missing_ok=True)
                continue
            state = self._resumable(run)
            if state is not None:
                resumable[run.model_id] = state
        plan = TrainingPlan(finished, resumable, [run for run in p.all_runs if run.model_id not in finished])
        failed_before = [run for run in p.all_runs if finished.get(run.model_id, {}).get("status") not in
                         (None, "complete")]
        lines = [f"[bold]train[/]: {len(p.all_runs)} models — {len(finished)} reused from {self.run_dir.root}"
                 + (f" ({len(failed_before)} of them failed earlier: {_labels(failed_before)})" if failed_before else "")]
        if plan.resumed:
            lines.append("  resume: " + ", ".join(f"{run.label} after epoch {resumable[run.model_id].epochs_done}/"
                                                  f"{t.epochs}" for run in plan.resumed))
        if plan.new:
            lines.append(f"  train on {where}: {len(plan.new)} ({_labels(plan.new)})")
        self.console.print("\n".join(lines), highlight=False)
        return plan

    def train_all(self) -> list[ModelRun]:
        started = self._stage_started("train")
        p, t = self.p, self.config.training
        plan = self.training_plan(str(self.device))
        todo, resumable = plan.todo, plan.resumable
        data = training_data(p, self.device)
        permuted_data = permuted_label_data(self.config, data) if p.permuted is not None else None
        n_train = len(p.split.train)

        def images_left(run: ModelRun) -> int:
            done = resumable[run.model_id].epochs_done if run.model_id in resumable else 0
            per_epoch = n_train * (1 if run.entry is None else 1 + t.copies) if t.steps_per_epoch is None \
                else t.steps_per_epoch * t.batch_size
            return (t.epochs - done) * per_epoch

        total = sum(images_left(run) for run in todo)
        with _progress(self.console, disable=not todo) as progress:
            task = progress.add_task("train", total=max(total, 1), rate="")
            for run in todo:
                model_started = time.perf_counter()
                seen = [0]

                def on_batch(n: int) -> None:
                    seen[0] += n
                    rate = seen[0] / max(time.perf_counter() - model_started, 1e-9)
                    progress.update(task, advance=n, rate=f"{rate:,.0f} img/s")

                def on_epoch(row: dict, label: str = run.label) -> None:
                    progress.update(task, description=f"train {label} epoch {row['epoch']}/{t.epochs}")

                state = resumable.get(run.model_id)
                first = state.epochs_done + 1 if state is not None else 1
                progress.update(task, description=f"train {run.label} epoch {first}/{t.epochs}")
                self._train_one(run, permuted_data if run.permuted_labels else data, on_epoch, on_batch, state)
        return self.finish_training(started, plan)

    def finish_training(self, started: float, plan: TrainingPlan,
                        details: dict[str, dict] | None = None) -> list[ModelRun]:
        """Record stage 1 in the manifest (each model's status, plus `details` per model id, e.g. the
        cluster node) and return the complete models; stop the study if the baseline failed."""
        p = self.p
        metas = {run.model_id: self._meta(run) or {} for run in p.all_runs}
        details = details or {}
        self.manifest["models"] = {
            run.model_id: {"augmentation": run.augmentation, "seed": run.seed,
                           "status": metas[run.model_id].get("status"),
                           **({"error": metas[run.model_id]["error"]} if "error" in metas[run.model_id] else {}),
                           **({"resumed_after_epoch": plan.resumable[run.model_id].epochs_done}
                              if run.model_id in plan.resumable else {}),
                           **({"replica": run.replica} if run.replica else {}),
                           **({"permuted_labels": True} if run.permuted_labels else {}),
                           **details.get(run.model_id, {})}
            for run in p.all_runs}
        statuses = {mid: meta.get("status") for mid, meta in metas.items()}
        self._stage("train", "complete", time.perf_counter() - started, trained=len(plan.new),
                    reused=len(plan.finished), resumed=len(plan.resumed),
                    failed=sum(s != "complete" for s in statuses.values()))
        if statuses[p.baseline.model_id] != "complete":
            raise AugcamError(f"the baseline model failed ({statuses[p.baseline.model_id]}: "
                              f"{metas[p.baseline.model_id].get('error', '')}); nothing can be compared with it")
        return [run for run in p.all_runs if statuses[run.model_id] == "complete"]

    def _train_one(self, run: ModelRun, data: TrainingData, on_epoch, on_batch, resume: TrainState | None) -> None:
        index = self.p.all_runs.index(run)
        checkpoint = self.run_dir.checkpoint_file(run.model_id)

        def on_checkpoint(state: TrainState) -> None:
            save_train_state(checkpoint, state, {"model_id": run.model_id})
            kill_point("train", index, state.epochs_done)

        outcome = train_one_model(self.p, run, self.device, resume, data=data, on_epoch=on_epoch,
                                  on_batch=on_batch, on_checkpoint=on_checkpoint)
        self.report_trained(run, outcome)
        store_trained(self.run_dir, run, outcome)

    def report_trained(self, run: ModelRun, outcome: TrainOutcome, where: str = "") -> None:
        if outcome.status != "complete":
            self.console.print(f"[red]model {run.label} ({run.model_id}) diverged[/]: {outcome.meta.get('error')}; "
                               "the study goes on without it")
            return
        self.console.print(f"  trained {run.model_id}: best val accuracy {outcome.meta['best_val_accuracy']:.4f} "
                           f"at epoch {outcome.meta['best_epoch']} ({outcome.seconds:.1f} s{where})")

    # --- stage 2: explain ------------------------------------------------------------------

    def _cam_key(self, run: ModelRun, method: str | None = None) -> str:
        return cam_key(self.p, run, method)

    @property
    def _head(self):
        return linear_head(self.config)

    def cam_jobs(self, runs: list[ModelRun]) -> tuple[list[tuple[ModelRun, str | None]], int]:
        """The CAM sets stage 2 computes — (model, None) for the study's CAM method, (model, method)
        for one of cam.extra_methods — and how many it reuses (printed)."""
        p = self.p
        todo = [run for run in runs if self._stored_cam_key(run) != self._cam_key(run)]
        n_test = len(p.split.test)
        self.console.print(f"[bold]explain[/]: {self.config.cam.method} on {n_test} test images — "
                           f"{len(runs) - len(todo)} CAM sets reused, {len(todo)} to compute"
                           + (f" ({_labels(todo)})" if todo else ""), highlight=False)
        # cam.extra_methods: the baseline and the augmented models only (the controls need one method).
        extra = [(run, method) for method in self.config.cam.extra_methods for run in runs if run in p.runs]
        extra_todo = [(run, method) for run, method in extra
                      if self._stored_cam_key(run, method) != self._cam_key(run, method)]
        if extra:
            self.console.print(f"  extra methods {', '.join(self.config.cam.extra_methods)}: {len(extra) - len(extra_todo)}"
                               f" CAM sets reused, {len(extra_todo)} to compute", highlight=False)
        jobs = [(run, None) for run in todo] + extra_todo
        return jobs, len(runs) - len(todo) + len(extra) - len(extra_todo)

    def explain_all(self, runs: list[ModelRun]) -> list[ModelRun]:
        started = self._stage_started("explain")
        jobs, reused = self.cam_jobs(runs)
        n_test = len(self.p.split.test)
        with _progress(self.console, disable=not jobs) as progress:
            task = progress.add_task("explain", total=max(len(jobs) * n_test, 1), rate="")
            for run, method in jobs:
                progress.update(task, description=f"explain {run.label}" + (f" ({method})" if method else ""))
                self._explain_one(run, lambda n: progress.update(task, advance=n), method)
        self._stage("explain", "complete", time.perf_counter() - started, computed=len(jobs), reused=reused)
        return runs

    def _stored_cam_key(self, run: ModelRun, method: str | None = None) -> str | None:
        path = self.run_dir.cams_file(run.model_id, method)
        if not path.exists():
            return None
        try:
            return read_tensor_metadata(path).get("cam_key")
        except SafetensorError as err:
            # augcam writes it atomically, so only outside damage gets here: the set is recomputed.
            self.console.print(f"[yellow]{path}: unreadable ({err}); recomputing the CAMs of {run.label}[/]")
            return None

    def _load_model(self, run: ModelRun) -> torch.nn.Module:
        return load_model(self.p, read_tensors(self.run_dir.weights_file(run.model_id)), self.device)

    def _explain_one(self, run: ModelRun, advance, method: str | None = None) -> None:
        """Store the CAM set of `run` by the main CAM method, or by `method` (an extra one)."""
        index = self.p.all_runs.index(run)

        def after_batch(number: int, size: int) -> None:
            advance(size)
            kill_point("explain", index, number)

        tensors, metadata = compute_cam_set(self.p, run, self._load_model(run), self.device, method, after_batch)
        write_tensors(self.run_dir.cams_file(run.model_id, method), tensors, metadata=metadata)

    # --- stage 3: compare ------------------------------------------------------------------

    def compare(self, runs: list[ModelRun]) -> pd.DataFrame:
        started = self._stage_started("compare")
        p = self.p
        augmented = [run for run in runs if run.is_intervention]
        self.console.print(f"[bold]compare[/]: {len(augmented)} models vs the baseline on {len(p.split.test)} "
                           "test images, from the stored CAM sets (always recomputed: metrics settings may have "
                           "changed, and it takes seconds)", highlight=False)
        base = read_tensors(self.run_dir.cams_file(p.baseline.model_id))
        labels = p.test_set.labels[p.split.test]
        nonfinite_logits = {}
        base_bad = int((~torch.isfinite(base["logits"])).any(dim=1).sum())
        if base_bad:
            nonfinite_logits[p.baseline.model_id] = base_bad
        frames = []
        for run in augmented:
            other = read_tensors(self.run_dir.cams_file(run.model_id))
            bad = int((~torch.isfinite(other["logits"])).any(dim=1).sum())
            if bad:
                nonfinite_logits[run.model_id] = bad
            values = self.baseline_metrics(run, base, other)
            frames.append(pd.DataFrame({
                "model_id": run.model_id, "augmentation": run.augmentation,
                "seed": pd.array([run.seed] * len(labels), dtype="Int64"),
                "image_index": p.split.test.numpy(), "label": labels.numpy(),
                "baseline_pred": base["predictions"].numpy(), "model_pred": other["predictions"].numpy(),
                **values}))
            kill_point("compare", p.all_runs.index(run))
        metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_parquet(self.run_dir.table("metrics.parquet"), metrics)
        self._compare_extra_methods(augmented)
        columns = self.metric_columns(metrics)
        undefined = {col: int(metrics[col].isna().sum()) for col in columns}
        infinite = {col: int(np.isinf(metrics[col].to_numpy()).sum()) for col in columns}
        if nonfinite_logits:
            self.console.print(f"[yellow]warning[/]: non-finite logits (NaN or ±inf) for some test images: "
                               f"{nonfinite_logits}; their metrics are NaN (counted in manifest.json)")
        self._stage("compare", "complete", time.perf_counter() - started, rows=len(metrics),
                    undefined_values=undefined, infinite_values=infinite, nonfinite_logits=nonfinite_logits)
        return metrics

    def _compare_extra_methods(self, augmented: list[ModelRun]) -> None:
        """tables/method_metrics.parquet: the rows of metrics.parquet recomputed with each of
        cam.extra_methods (column `method`), so the report can check that the augmentations rank
        the same way whichever CAM method explains them."""
        p, c = self.p, self.config
        path = self.run_dir.table("method_metrics.parquet")
        if not c.cam.extra_methods:
            path.unlink(missing_ok=True)  # a table from an earlier config would be stale
            return
        frames = []
        for method in c.cam.extra_methods:
            base = read_tensors(self.run_dir.cams_file(p.baseline.model_id, method))
            for run in augmented:
                values = study_cam_metrics(c, base, read_tensors(self.run_dir.cams_file(run.model_id, method)),
                                           p.input_size, self.device)
                frames.append(pd.DataFrame({
                    "method": method, "model_id": run.model_id, "augmentation": run.augmentation,
                    "seed": pd.array([run.seed] * len(p.split.test), dtype="Int64"),
                    "image_index": p.split.test.numpy(), **values}))
        write_parquet(path, pd.concat(frames, ignore_index=True))

    # --- stage 3b: controls ---------------------------------------------------------------------

    def compare_controls(self, runs: list[ModelRun]) -> None:
        """The noise floor (each baseline replica's CAMs vs the baseline's, image by image) and the
        augmentation-vs-augmentation comparison (models of two augmentations with the same seed)."""
        started = self._stage_started("controls")
        p, c = self.p, self.config
        complete = {run.model_id for run in runs}
        replicas = [run for run in p.replicas if run.model_id in complete]
        by_aug: dict[str, dict[int, ModelRun]] = {}
        for run in p.runs:
            if run.is_intervention and run.model_id in complete:
                by_aug.setdefault(run.augmentation, {})[run.seed] = run
        names = list(by_aug)
        pairs = [(a, b, seed) for i, a in enumerate(names) for b in names[i + 1:]
                 for seed in c.seeds if seed in by_aug[a] and seed in by_aug[b]]
        self.console.print(f"[bold]controls[/]: noise floor from {len(replicas)} baseline replica(s); "
                           f"{len(pairs)} augmentation-vs-augmentation comparisons", highlight=False)
        test_index = p.split.test.numpy()
        labels = p.test_set.labels[p.split.test].numpy()
        cams: dict[str, dict[str, torch.Tensor]] = {}

        def cam_set(run: ModelRun) -> dict[str, torch.Tensor]:
            if run.model_id not in cams:
                cams[run.model_id] = read_tensors(self.run_dir.cams_file(run.model_id))
            return cams[run.model_id]

        def values(a: ModelRun, b: ModelRun) -> dict[str, np.ndarray]:
            if a == p.baseline and b.model_id in self.vs_baseline:
                return self.vs_baseline[b.model_id]
            return study_cam_metrics(c, cam_set(a), cam_set(b), p.input_size, self.device)

        noise_path = self.run_dir.table("noise_floor.parquet")
        if replicas:
            base = cam_set(p.baseline)
            noise = pd.concat([pd.DataFrame({
                "model_id": run.model_id, "replica": run.replica, "image_index": test_index, "label": labels,
                "baseline_pred": base["predictions"].numpy(), "model_pred": cam_set(run)["predictions"].numpy(),
                **values(p.baseline, run)}) for run in replicas], ignore_index=True)
            write_parquet(noise_path, noise)
        else:
            noise_path.unlink(missing_ok=True)  # a table from an earlier config would be stale
        between_path = self.run_dir.table("between_augmentations.parquet")
        if pairs:
            frames = []
            for a, b, seed in pairs:
                frames.append(pd.DataFrame({
                    "augmentation_a": a, "augmentation_b": b, "seed": pd.array([seed] * len(test_index), dtype="Int64"),
                    "image_index": test_index, **values(by_aug[a][seed], by_aug[b][seed])}))
                # Keep at most the CAM sets of one seed in memory.
                cams = {key: value for key, value in cams.items() if key == p.baseline.model_id}
            write_parquet(between_path, pd.concat(frames, ignore_index=True))
        else:
            between_path.unlink(missing_ok=True)
        self._stage("controls", "complete", time.perf_counter() - started, replicas=len(replicas),
                    between_pairs=len(pairs))

    # --- stage 5: sanity check -----------------------------------------------------------------

    def sanity(self, runs: list[ModelRun]) -> pd.DataFrame | None:
        """Adebayo et al.'s checks of the CAM method on this study's baseline: cascading randomisation
        of its layers (on the first `controls.sanity_images` test images) and, if the permuted-labels
        control was trained, its CAMs vs the baseline's. Written to tables/sanity.csv."""
        from augcam.sanity import cascading_randomization, sanity_verdict, spearman_summary

        p, c = self.p, self.config
        path = self.run_dir.table("sanity.csv")
        n_images = min(c.controls.sanity_images, len(p.split.test))
        if n_images == 0:
            path.unlink(missing_ok=True)
            return None
        started = self._stage_started("sanity")
        self.console.print(f"[bold]sanity[/]: cascading randomisation of the baseline's layers, {c.cam.method} "
                           f"on {n_images} test images", highlight=False)
        model = self._load_model(p.baseline)
        mean = torch.tensor(p.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(p.std, device=self.device).view(1, -1, 1, 1)
        images = prepare_inputs(self._images(p.test_set.images[p.split.test[:n_images]]), mean, std,
                                c.data.image_size)
        table = cascading_randomization(model, p.target_layer, images, method=c.cam.method,
                                        seed=c.training.init_seed)
        table.insert(0, "test", "cascading")
        permuted = p.permuted
        if permuted is not None and permuted.model_id in {run.model_id for run in runs}:
            base = read_tensors(self.run_dir.cams_file(p.baseline.model_id))
            other = read_tensors(self.run_dir.cams_file(permuted.model_id))
            spearman = torch.from_numpy(self.baseline_metrics(permuted, base, other)["spearman"])
            table = pd.concat([table, pd.DataFrame([{"test": "data", **spearman_summary(1, "(labels permuted)", spearman)}])],
                              ignore_index=True)
        table.insert(1, "method", c.cam.method)
        write_text(path, table.to_csv(index=False))
        verdict = sanity_verdict(table[table["test"] == "cascading"])
        self._stage("sanity", "complete", time.perf_counter() - started, images=n_images, **verdict)
        return table

    # --- stage 5b: faithfulness (config `faithfulness:`, off by default) ---------------------------

    def faithfulness(self, runs: list[ModelRun]) -> pd.DataFrame | None:
        """tables/faithfulness.parquet (one row per model, fill and test image) and
        tables/faithfulness_models.parquet (their means per model and fill): see
        augcam.faithfulness_stage. Removed when the stage is off, so no stale table is reported."""
        from augcam.faithfulness_stage import FAITHFULNESS_ID_COLUMNS, faithfulness_rows, model_means

        p, f = self.p, self.config.faithfulness
        paths = [self.run_dir.table("faithfulness.parquet"), self.run_dir.table("faithfulness_models.parquet")]
        if not f.enabled:
            for path in paths:
                path.unlink(missing_ok=True)
            return None
        started = self._stage_started("faithfulness")
        models = [run for run in p.runs if run in runs]
        n_images = len(p.split.test) if f.images is None else min(f.images, len(p.split.test))
        self.console.print(f"[bold]faithfulness[/]: {len(models)} models on {n_images} test images, "
                           f"fills {', '.join(f.fills)}", highlight=False)
        index = p.split.test[:n_images]
        images = self._images(p.test_set.images[index])
        labels = p.test_set.labels[index].to(self.device)
        frames = []
        reused = 0
        with _progress(self.console) as progress:
            task = progress.add_task("faithfulness", total=len(models), rate="")
            for run in models:
                progress.update(task, description=f"faithfulness {run.label}")
                # Cached per model, keyed by its CAM set and the stage's settings: a rerun, or a study
                # that gains an augmentation, computes only what changed.
                key = digest({"cam_key": self._cam_key(run), "settings": f.model_dump(mode="json"),
                              "images": n_images})
                path = self.run_dir.faithfulness_file(run.model_id)
                stored_meta = read_tensor_metadata(path) if path.exists() else {}
                if stored_meta.get("faithfulness_key") == key:
                    stored = read_tensors(path)
                    # The file's tensors come back sorted by name; the column order is in its metadata.
                    by_fill = {fill: {column: stored[f"{fill}/{column}"] for column in json.loads(stored_meta["columns"])}
                               for fill in f.fills}
                    reused += 1
                else:
                    raw = read_tensors(self.run_dir.cams_file(run.model_id))["raw"][:n_images]
                    with torch.no_grad():
                        by_fill = faithfulness_rows(self._load_model(run), images, labels, raw, f, p.mean, p.std,
                                                    self.config.data.image_size)
                    write_tensors(path, {f"{fill}/{name}": value for fill, columns in by_fill.items()
                                         for name, value in columns.items()},
                                  metadata={"faithfulness_key": key,
                                            "columns": json.dumps(list(next(iter(by_fill.values()))))})
                for fill, columns in by_fill.items():
                    frames.append(pd.DataFrame({
                        "model_id": run.model_id, "augmentation": run.augmentation,
                        "seed": pd.array([run.seed] * n_images, dtype="Int64"), "fill": fill,
                        "image_index": index.numpy(), "label": labels.cpu().numpy(),
                        **{name: value.cpu().numpy() for name, value in columns.items()}}))
                progress.update(task, advance=1)
        rows = pd.concat(frames, ignore_index=True)
        write_parquet(paths[0], rows)
        write_parquet(paths[1], model_means(rows))
        undefined = {col: int(rows[col].isna().sum()) for col in rows.columns if col not in FAITHFULNESS_ID_COLUMNS}
        self._stage("faithfulness", "complete", time.perf_counter() - started, rows=len(rows),
                    computed=len(models) - reused, reused=reused, undefined_values=undefined)
        return rows

    def baseline_metrics(self, run: ModelRun, base: dict[str, torch.Tensor],
                         other: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Per-image metrics of `run`'s CAM set (`other`) against the baseline's (`base`): those a
        cluster worker computed right after the model's CAMs (same function, same inputs), or
        computed here from the stored CAM sets."""
        if run.model_id in self.vs_baseline:
            return self.vs_baseline[run.model_id]
        c = self.config
        return study_cam_metrics(c, base, other, self.p.input_size, self.device)

    @staticmethod
    def metric_columns(metrics: pd.DataFrame) -> list[str]:
        fixed = {"model_id", "augmentation", "seed", "image_index", "label", "baseline_pred", "model_pred"}
        return [col for col in metrics.columns if col not in fixed]

    def performance_table(self, runs: list[ModelRun]) -> pd.DataFrame:
        started = self._stage_started("performance")
        p = self.p
        labels = p.test_set.labels[p.split.test]
        rows = []
        for run in p.runs:
            meta = json.loads(self.run_dir.meta_file(run.model_id).read_text())
            row = {"model_id": run.model_id, "augmentation": run.augmentation, "seed": run.seed,
                   "status": meta["status"], "test_accuracy": np.nan, "precision": np.nan, "recall": np.nan,
                   "f1": np.nan, "best_epoch": meta.get("best_epoch"),
                   "best_val_accuracy": meta.get("best_val_accuracy", np.nan),
                   "train_seconds": meta.get("train_seconds", np.nan), "roc_auc": np.nan}
            if run in runs:
                cam_set = read_tensors(self.run_dir.cams_file(run.model_id))
                scores = performance(labels, cam_set["predictions"], p.num_classes)
                row.update(test_accuracy=scores["accuracy"], precision=scores["precision"],
                           recall=scores["recall"], f1=scores["f1"],
                           # of the softmax probabilities, as scikit-learn's roc_auc_score takes them
                           roc_auc=roc_auc(labels, torch.softmax(cam_set["logits"].double(), dim=1)))
            rows.append(row)
        table = pd.DataFrame(rows).astype({"seed": "Int64", "best_epoch": "Int64"})
        write_parquet(self.run_dir.table("performance.parquet"), table)
        self._stage("performance", "complete", time.perf_counter() - started, rows=len(table))
        return table

    def localisation_table(self, runs: list[ModelRun]) -> pd.DataFrame | None:
        """tables/localisation.parquet, for a dataset with ROI masks: one row per (model, test image)
        of the baseline and every intervention, the localisation metrics (augcam.metrics.localisation)
        of its CAM at the images' resolution against the image's mask."""
        from augcam.metrics.localisation import localisation

        p = self.p
        path = self.run_dir.table("localisation.parquet")
        masks = p.test_masks
        if masks is None:
            path.unlink(missing_ok=True)  # a table from an earlier config would be stale
            return None
        started = self._stage_started("localisation")
        complete = {run.model_id for run in runs}
        labels = p.test_set.labels[p.split.test].numpy()
        frames = []
        for run in p.runs:
            if run.model_id not in complete:
                continue
            cam_set = read_tensors(self.run_dir.cams_file(run.model_id))
            maps = upsample(cam_set["raw"].to(self.device), tuple(masks.shape[-2:]))
            values = {name: value.cpu().numpy() for name, value in localisation(maps, masks.to(self.device)).items()}
            frames.append(pd.DataFrame({
                "model_id": run.model_id, "augmentation": run.augmentation,
                "seed": pd.array([run.seed] * len(labels), dtype="Int64"),
                "image_index": p.split.test.numpy(), "label": labels, "model_pred": cam_set["predictions"].numpy(),
                **values}))
        table = pd.concat(frames, ignore_index=True)
        write_parquet(path, table)
        self._stage("localisation", "complete", time.perf_counter() - started, rows=len(table))
        return table

    # --- stage 4: aggregate ----------------------------------------------------------------

    def aggregate(self, metrics: pd.DataFrame) -> pd.DataFrame:
        started = self._stage_started("aggregate")
        aggregated = aggregate_over_seeds(metrics)
        write_parquet(self.run_dir.table("aggregated.parquet"), aggregated)
        self._stage("aggregate", "complete", time.perf_counter() - started, rows=len(aggregated))
        return aggregated


def compare_cam_sets(base: dict[str, torch.Tensor], other: dict[str, torch.Tensor], input_size: tuple[int, int],
                     overlap_percentages: list[float], kld_eps: float, device: torch.device,
                     chunk: int = 1024, *, saliency: Sequence[str] = (),
                     kl_eps_saliency: float = DEFAULT_KL_EPS) -> dict[str, np.ndarray]:
    """Per-image metrics of one model's stored CAM set against the baseline's: the map metrics on
    input-sized maps, the `saliency` metrics (metrics.saliency: cc, kl, entropy + entropy_base) on
    the same maps, then Class-KLD of the class probabilities. Undefined values (a constant map,
    a NaN map, non-finite logits) are NaN; a class the baseline gives probability 0 and the model
    does not makes Class-KLD +inf."""
    values: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(base["raw"]), chunk):
        part = slice(start, start + chunk)
        base_maps = upsample(base["raw"][part].to(device), input_size)
        other_maps = upsample(other["raw"][part].to(device), input_size)
        result = compare_maps(base_maps, other_maps, overlap_percentages=overlap_percentages)
        if saliency:
            result.update(compare_saliency(base_maps, other_maps, metrics=saliency, kl_eps=kl_eps_saliency))
        for name, value in result.items():
            values.setdefault(name, []).append(value.cpu())
    p_base = torch.softmax(base["logits"].double(), dim=1)
    p_other = torch.softmax(other["logits"].double(), dim=1)
    kld = class_kld(p_base, p_other, eps=kld_eps)
    return {**{name: torch.cat(parts).numpy() for name, parts in values.items()}, "class_kld": kld.numpy()}


def study_cam_metrics(config: StudyConfig, base: dict[str, torch.Tensor], other: dict[str, torch.Tensor],
                      input_size: tuple[int, int], device: torch.device) -> dict[str, np.ndarray]:
    """`compare_cam_sets` with the study's metrics settings (every caller, cluster workers included)."""
    m = config.metrics
    return compare_cam_sets(base, other, input_size, m.overlap_percentages, m.kld_eps, device,
                            saliency=m.saliency, kl_eps_saliency=m.kl_eps_saliency)


def aggregate_over_seeds(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (augmentation, test image): each metric's mean over the seeds where it is
    defined (NaN only if it is undefined for every seed), and the number of models averaged."""
    if metrics.empty:
        return pd.DataFrame()
    columns = Runner.metric_columns(metrics)
    grouped = metrics.groupby(["augmentation", "image_index"], sort=False)
    aggregated = grouped[columns].mean()
    aggregated.insert(0, "n_models", grouped.size())
    aggregated.insert(0, "baseline_pred", grouped["baseline_pred"].first())
    aggregated.insert(0, "label", grouped["label"].first())
    return aggregated.reset_index()


def run_study(config: StudyConfig | str | Path | dict, out: str | Path, *, device: str | None = None,
              force: bool = False, console: Console | None = None, executor: str = "local",
              address: str | None = None) -> StudyResult:
    """Run a whole study into `out` and return its tables. Public entry point of the Python API.

    `executor="ray"` trains and explains the models as tasks on a Ray cluster (docs/cluster.md):
    the one at `address` ("auto": the cluster this machine belongs to; None: a local cluster
    started for the run, or the one this process is already connected to), with the same tables.

    Everything a user can get wrong (config, data, device, an output directory that holds another
    study, is unwritable or is in use by another run, an unreachable cluster) raises an AugcamError
    before anything is written. Rerunning on the same `out` reuses what is stored and resumes what
    a killed run left.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    check_executor(executor, address)
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    if device is not None:
        config = with_device(config, device)
    cluster = None
    if executor == "ray":
        from augcam.cluster import RayExecutor

        cluster = RayExecutor.check(config)  # config-level errors before any data is loaded
    else:
        torch_device = resolve_device(config.device)
    set_deterministic()
    prepared = prepare(config)
    if cluster is not None:
        cluster.connect(address, console)
        torch_device = cluster.driver_device
    try:
        return _run_in(prepared, out, torch_device, console, force, cluster, started)
    finally:
        if cluster is not None:
            cluster.close()


def _run_in(prepared: PreparedStudy, out: str | Path, torch_device: torch.device, console: Console, force: bool,
            cluster: Any, started: float) -> StudyResult:
    config = prepared.config
    run_dir = RunDir(out)
    run_dir.create()
    with RunLock(run_dir.lock_file) as lock:
        run_dir.check_study(config.name, force)
        if lock.previous_holder:
            console.print(f"taking over the lock of a run that ended without releasing it "
                          f"({describe_holder(lock.previous_holder)})", highlight=False)
        stale = run_dir.remove_stale_temp_files()
        if stale:
            console.print(f"removed {len(stale)} temporary file(s) left by an interrupted run", highlight=False)
        controls = (f" + {len(prepared.controls)} control baselines" if prepared.controls else "")
        console.print(f"[bold]study[/] {config.name}: {len(prepared.all_runs)} models "
                      f"(baseline + {len(config.study_augmentations)} augmentations"
                      + (f" + {len(config.guided)} guided losses" if config.guided else "")
                      + f" × {len(config.seeds)} seeds"
                      f"{controls}), "
                      f"{len(prepared.split.train)} train / {len(prepared.split.val)} val / "
                      f"{len(prepared.split.test)} test images, {config.model.name} → {prepared.target_layer} "
                      f"({prepared.layer_size[0]}×{prepared.layer_size[1]})")
        run_dir.write_study(config.resolved())
        result = Runner(prepared, run_dir.root, torch_device, console, cluster).run()
        result.manifest["seconds"] = round(time.perf_counter() - started, 3)
        write_json(run_dir.manifest_file, result.manifest)
    return result


def summary_tables(result: StudyResult) -> list[Table]:
    """Performance per augmentation (mean over seeds) and the median of each metric."""
    perf = result.performance[result.performance["status"] == "complete"]
    by_aug = perf.groupby("augmentation", sort=False)[["test_accuracy", "f1", "best_val_accuracy"]]
    perf_table = Table(title="Test performance (mean over seeds)")
    for col in ("augmentation", "models", "test accuracy", "macro F1", "best val acc"):
        perf_table.add_column(col, justify="left" if col == "augmentation" else "right")
    means, counts = by_aug.mean(), by_aug.size()
    for aug, row in means.iterrows():
        perf_table.add_row(str(aug), str(counts[aug]), f"{row.test_accuracy:.4f}", f"{row.f1:.4f}",
                           f"{row.best_val_accuracy:.4f}")
    tables = [perf_table]
    if not result.aggregated.empty:
        columns = Runner.metric_columns(result.metrics)
        medians = result.aggregated.groupby("augmentation", sort=False)[columns].median()
        metric_table = Table(title="Median over test images of the seed-averaged metric (vs baseline)")
        metric_table.add_column("augmentation")
        for col in columns:
            metric_table.add_column(col, justify="right")
        for aug, row in medians.iterrows():
            metric_table.add_row(str(aug), *(f"{row[col]:.4f}" for col in columns))
        noise_path = RunDir(result.out).table("noise_floor.parquet")
        if noise_path.exists():
            from augcam.statistics import noise_floor

            noise = noise_floor(pd.read_parquet(noise_path), columns).median()
            metric_table.add_row("[italic]noise floor (baseline replicas)[/]",
                                 *(f"{noise[col]:.4f}" for col in columns), end_section=False)
        tables.append(metric_table)
    return tables
