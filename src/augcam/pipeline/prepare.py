"""Everything a study needs before it touches the run directory: the config checked against the
data and the model, the data loaded and split, the plan of models. Building it raises every
error a user can cause (config, data, layer, device) before anything is written."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from augcam.cams import capture_output
from augcam.config import StudyConfig, load_config
from augcam.data import ImageSet, load_dataset_parts
from augcam.data.splits import Split, channel_stats, study_split
from augcam.errors import AugcamError, ConfigError, DataError
from augcam.models import (
    LinearHead,
    build_model,
    find_linear_head,
    find_target_layer,
    get_layer,
    layer_layout,
    load_weights,
    model_spec,
)
from augcam.pipeline.plan import ModelRun, plan, plan_controls
from augcam.rundir import IDENTITY


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
    # The fast CAM path's head for the target layer (declared, or proved by tracing); None: general path.
    head: LinearHead | None = None
    # Library, name, weights and CAM layer of the model, as the manifest and the report state them.
    model_info: dict = field(default_factory=dict)
    runs: list[ModelRun] = field(default_factory=list)  # the baseline, then every augmentation × seed
    controls: list[ModelRun] = field(default_factory=list)  # baseline replicas, permuted labels
    # The dataset's own validation set (split.val indexes it), e.g. the crosses' flipped one;
    # None: split.val indexes the training set.
    val_set: ImageSet | None = None
    # What the config makes of this data that works but is probably not meant (check_sizes).
    warnings: list[str] = field(default_factory=list)
    # Evaluate the test set after every epoch and keep every epoch's predictions (architecture
    # selection, augcam.selection); a study's models never see the test set while they train.
    monitor_test: bool = False

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

    @property
    def design_limits(self) -> dict | None:
        """What the model-level test can show with this plan (`design_limits_of`)."""
        return design_limits_of(self.runs)


def design_limits_of(runs: list[ModelRun]) -> dict | None:
    """`augcam.analysis.design.design_limits` of a plan: the fewest models of an augmentation
    (or mask-guided entry) against the null models (the identity control's models), with the
    smallest p-value it can reach, whether that is below 0.05, and how many seeds or null models
    would be. None when the plan has no augmentation besides the null models."""
    from augcam.analysis.design import design_limits

    counts = Counter(run.augmentation for run in runs if run.is_intervention)
    null = counts.pop(IDENTITY, 0)
    if not counts:
        return None
    return design_limits(min(counts.values()), null, augmentations=len(counts))


def study_design_limits(config: StudyConfig | str | Path | dict) -> dict | None:
    """`design_limits_of` the study's plan, from the config alone (no data loaded): how many models
    each augmentation gets does not depend on the data, only their ids do."""
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    return design_limits_of(plan(config, data_fingerprint=""))


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise AugcamError(
            f"device {requested!r} was requested but no CUDA GPU is available "
            "(use --device cpu, or device: auto in the study file)"
        )
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
    h = hashlib.sha256()
    h.update(_fingerprint(train_set, split.train).encode())
    h.update(_fingerprint(val_set, split.val).encode())
    if train_set.masks is not None:
        h.update(train_set.masks[split.train].numpy().tobytes())
    return h.hexdigest()


def prepare(config: StudyConfig | str | Path | dict) -> PreparedStudy:
    """Validate the config against the data and the model; load and split the data."""
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    d = config.data
    parts = load_dataset_parts(d.dataset, d.root, d.download)
    train_set, test_set, val_set = parts.train, parts.test, parts.val
    try:
        split = study_split(d, train_set.labels, test_set.labels, val_set.labels if val_set is not None else None)
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    warnings = check_sizes(config, train_set, split)
    mean, std = channel_stats(train_set.images[split.train])
    if min(std) == 0:
        raise DataError(
            f"data.dataset {d.dataset!r}: a channel of the training images is constant "
            "(standard deviation 0), so they cannot be normalised"
        )
    height, width = test_set.images.shape[-2:]
    input_size = (d.image_size, d.image_size) if d.image_size else (int(height), int(width))
    target_layer, layer_size, head, model_info = check_model(config, train_set, input_size)
    if config.guided:
        check_guided(config, train_set, input_size)
    fingerprint = _data_fingerprint(train_set, split, val_set)
    prepared = PreparedStudy(
        config,
        train_set,
        test_set,
        split,
        mean,
        std,
        target_layer,
        input_size,
        layer_size,
        fingerprint,
        _fingerprint(test_set, split.test),
        head=head,
        model_info=model_info,
        val_set=val_set,
        warnings=warnings,
    )
    prepared.runs = plan(config, fingerprint)
    prepared.controls = plan_controls(config, fingerprint)
    return prepared


def check_sizes(config: StudyConfig, train_set: ImageSet, split: Split) -> list[str]:
    """Errors (raised) for sizes a study cannot learn from: fewer than two classes, a class without
    a training image; warnings (returned) for sizes that work but are probably not meant: a batch
    larger than the training set."""
    d, t = config.data, config.training
    classes = train_set.classes
    if len(classes) < 2:
        raise DataError(
            f"data.dataset {d.dataset!r}" + (f" ({d.root})" if d.root else "") + f": {len(classes)} class "
            f"({', '.join(map(repr, classes))}); a classifier needs at least two"
        )
    n_train = len(split.train)
    seen = set(train_set.labels[split.train].tolist())
    missing = [name for label, name in enumerate(classes) if label not in seen]
    if missing:
        field_name, fix = (
            ("data.train_size", f"set data.train_size >= {len(classes)}, one image per class")
            if d.train_size is not None
            else ("data.val_fraction", "give every class more images, or set a smaller data.val_fraction")
        )
        raise ConfigError(
            f"{field_name}: the training split has {n_train} images for {len(classes)} classes, and "
            f"{len(missing)} class(es) have none ({', '.join(map(repr, missing[:5]))}"
            + (", ..." if len(missing) > 5 else "")
            + f"), so no model could learn them; {fix}"
        )
    if t.steps_per_epoch is None and t.batch_size > n_train:
        return [
            f"training.batch_size {t.batch_size} is larger than the {n_train} training images: every epoch of "
            "the baseline is a single step on all of them; set a smaller batch size, or "
            "training.steps_per_epoch for a fixed number of steps"
        ]
    return []


def check_guided(config: StudyConfig, train_set: ImageSet, input_size: tuple[int, int]) -> None:
    """What the guided entries need from the data and the model, as ConfigErrors."""
    d = config.data
    if train_set.masks is None:
        raise ConfigError(
            f"guided: mask-guided losses need ROI masks, but data.dataset {d.dataset!r} has none "
            "(a dataset with masks: crosses)"
        )
    if tuple(input_size) != tuple(train_set.images.shape[-2:]):
        raise ConfigError(
            f"guided: data.image_size {d.image_size} resizes the inputs but not the masks; "
            "leave data.image_size out for mask-guided training"
        )
    model = new_model(config, train_set.images.shape[1], len(train_set.classes), config.training.init_seed)
    modules = dict(model.named_modules())
    for entry in config.guided:
        layer = entry.feature_layer
        if layer is not None and layer not in modules:
            raise ConfigError(
                f"guided[{entry.display}].feature_layer: {layer!r} is not a module of "
                f"{config.model.name} (modules: {', '.join(name for name in modules if name)})"
            )


def new_model(config: StudyConfig, in_channels: int, num_classes: int, init_seed: int) -> torch.nn.Module:
    """The study's model before training: seeded, or the configured local weights."""
    m = config.model
    return build_model(m.name, in_channels, num_classes, init_seed, params=m.params, weights=m.weights)


def check_model(
    config: StudyConfig, train_set: ImageSet, input_size: tuple[int, int]
) -> tuple[str, tuple[int, int], LinearHead | None, dict]:
    """The model built as the study builds it, its target layer (configured, declared, or found
    automatically), the layer's spatial size, the fast path's head and the model's description.
    Refuses a layer whose output is no spatial map or is 1×1, where a CAM would be constant."""
    m, channels = config.model, train_set.images.shape[1]
    spec = model_spec(m.name)
    model = build_model(m.name, channels, len(train_set.classes), config.training.init_seed, params=m.params)
    adapted = load_weights(model, m.weights) if m.weights is not None else []
    model.eval()
    # Random, not zero: on a constant input ReLUs may all be off, and the automatic layer search
    # would see no gradient reach the classifier.
    probe = torch.randn(2, channels, *input_size, generator=torch.Generator().manual_seed(0))
    try:
        if m.target_layer is None and spec.target_layer is None:
            target_layer, _ = find_target_layer(model, probe)
        else:
            target_layer = m.target_layer or spec.target_layer
        with capture_output(get_layer(model, target_layer)) as outputs, torch.no_grad():
            model(probe)
    except RuntimeError as err:
        raise ConfigError(
            f"model.name: {m.name} cannot take {input_size[0]}×{input_size[1]} inputs ({err}); set data.image_size"
        ) from None
    layout = layer_layout(model, tuple(outputs[0].shape), input_size) if outputs else None
    if layout is None:
        shape = tuple(outputs[0].shape) if outputs else "nothing"
        raise ConfigError(
            f"model.target_layer: {target_layer!r} outputs {shape}, which is no spatial map; a CAM needs a layer "
            "with (batch, channels, height, width) or (batch, height, width, channels) output, or tokens on a grid"
        )
    size = layout.grid
    if size[0] * size[1] == 1:
        raise ConfigError(
            f"model.target_layer: {target_layer!r} of {m.name} is 1×1 at "
            f"{input_size[0]}×{input_size[1]} input, so every CAM would be constant (a CAM is a weighted "
            "sum of the layer's maps, and a 1×1 map has one pixel: upsampled, it is flat and normalises "
            "to zero); set data.image_size larger (e.g. 64) or choose an earlier layer"
        )
    head = spec.head if spec.head is not None and spec.head.layer == target_layer else None
    if head is None and spec.head is None:
        head = find_linear_head(model, target_layer)
    library, _, architecture = m.name.rpartition(":")
    info = {
        "library": library or spec.library,
        "name": architecture,
        "params": dict(m.params),
        "weights": m.weights or "none (initialised from training.init_seed)",
        "weights_adapted": adapted,
        "target_layer": target_layer,
        "layer_layout": layout.describe(),
        "layer_size": list(size),
        "cam_path": "fast (global average pooling → linear)" if head is not None else "general (backward pass)",
    }
    return target_layer, size, head, info


def epoch_predictions(prepared: PreparedStudy, predictions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a model's predictions file holds: per monitored set ("val", "test") the (epochs, N)
    predicted classes, the labels (`<set>_labels`) and the images' indices in their dataset
    (`<set>_index`), enough to recompute every per-epoch metric; empty without monitored sets."""
    if not predictions:
        return {}
    p = prepared
    sets = {"val": (p.val_source, p.split.val), "test": (p.test_set, p.split.test)}
    stored = {}
    for name, epochs in predictions.items():
        images, index = sets[name]
        stored[f"{name}_predictions"] = epochs.cpu()
        stored[f"{name}_labels"] = images.labels[index].clone()
        stored[f"{name}_index"] = index.clone()
    return stored
