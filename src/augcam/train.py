"""Training one model of a study, with the methodology's controls built in.

- The training data lives on the device as one tensor; batches are index lookups, and the
  augmentation runs on whole batches there (per-sample random parameters).
- The augmented training set is the original set followed by `copies` augmented copies of each
  image. Each epoch visits the (1 + copies)·N positions in an order drawn from
  (ordering_seed, epoch) alone, so position p reads the same source image in every model of the
  study, whatever its augmentation.
- The augmentation's randomness for a batch comes from a generator seeded by (seed, epoch,
  batch): two augmentations trained with the same seed draw from the same random stream.
- Every model starts from the same initial weights (built from `init_seed`); the checkpoint with
  the best validation accuracy (the first, on ties) is what the study explains.
- A mixing augmentation (Mixup, CutMix with targets, SaliencyMix) trains on the probability
  targets it makes for the copies (`augment_batch`; the originals keep one-hot rows); every other
  augmentation trains on the integer labels exactly as before mixed-sample training existed.
- `steps_per_epoch` (optional) makes an epoch that many batches, read from successive passes over
  the positions, so models trained on sets of different sizes take the same number of steps.
- Training can stop after any epoch and resume bit-identically: `TrainState` holds everything the
  remaining epochs depend on (weights and buffers, optimizer state, best-so-far state, history,
  global RNG state), `on_checkpoint` receives it after every epoch, and `resume=` continues from it.
  The global RNG (used by no built-in model or augmentation, but by e.g. dropout in a user's model)
  is seeded from the augmentation seed, so a model's weights do not depend on what the process ran
  before it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from augcam.augment.mixing import MixingAugmentation, augment_batch

if TYPE_CHECKING:
    from augcam.augment import Augmentation


@dataclass(frozen=True)
class TrainingData:
    """Images as float32 in [0, 1], (N, C, H, W), already on the training device."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int | None = None  # resize to image_size × image_size before the model
    # Size of the targets a mixing augmentation makes (probability rows); None: 1 + the largest label.
    num_classes: int | None = None
    # Ground-truth ROI masks of the training images (bool (N, H, W), on the device) for mask-guided
    # losses; None for a dataset without masks.
    train_masks: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    ordering_seed: int
    copies: int
    eval_batch_size: int
    # None: an epoch is one pass over the (1 + copies)·N positions. A number: an epoch is that many
    # batches, drawn from as many passes (each in its own order) as it takes.
    steps_per_epoch: int | None = None
    # The GPU recipe (issue 6). The defaults are the reference study's loop, bit for bit: Adam at a
    # constant learning rate, plain cross-entropy, float32, contiguous tensors, eager mode.
    optimizer: str = "adam"  # adam | sgd_nesterov (momentum 0.9)
    schedule: str = "constant"  # constant | onecycle (linear warm-up then linear decay to 0)
    warmup_fraction: float = 0.2  # onecycle: share of the steps spent warming up
    label_smoothing: float = 0.0
    precision: str = "fp32"  # fp32 | bf16 (autocast of forward and loss; weights stay float32)
    channels_last: bool = False  # NHWC model and inputs (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the training forward pass (evaluation stays eager)
    # Applied to every training image of every model, before the model's own augmentation
    # (`base_augment`); empty: the loop as before base augmentations existed.
    base_augmentations: tuple["Augmentation", ...] = ()


@dataclass(frozen=True)
class GuidedTraining:
    """A mask-guided loss added to the cross-entropy (augcam.guided): the training loss is
    ce_weight · CE(model(x), y) + weight · GUIDED_LOSSES[loss](model, x, y, masks), x the normalised
    inputs; needs TrainingData.train_masks."""

    loss: str
    weight: float
    ce_weight: float = 1.0
    feature_layer: str | None = None


def guided_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The guided loss's randomness for a batch (actdiff's shuffles), from (seed, epoch, batch)."""
    return torch.Generator().manual_seed(derived_seed("guided", seed, epoch, batch))


@dataclass
class TrainState:
    """Training after `epochs_done` epochs: enough to run the remaining epochs exactly as an
    uninterrupted run would."""

    epochs_done: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # torch.optim state_dict
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict]
    rng: dict[str, torch.Tensor]  # global RNG states: "cpu", and "cuda" when training on a GPU
    initial_digest: str
    seconds: float  # training time spent so far, over every session


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    initial_digest: str = ""


def uses_targets(augmentation: "Augmentation | None") -> bool:
    """Whether training with `augmentation` uses probability targets (a mixing augmentation, see
    `augcam.augment.mixing`) instead of the integer labels."""
    return isinstance(augmentation, MixingAugmentation)


def derived_seed(*parts: int | str) -> int:
    """A 63-bit seed from several integers/strings; stable across runs, machines and Python versions."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


def epoch_order(num_sources: int, copies: int, ordering_seed: int, epoch: int) -> torch.Tensor:
    """Positions of the augmented training set in visiting order for `epoch`.

    Position j reads source image j % num_sources; j // num_sources is 0 for the original and
    1..copies for the augmented copies. The order depends on the ordering seed and the epoch only.
    """
    generator = torch.Generator().manual_seed(derived_seed("order", ordering_seed, epoch))
    return torch.randperm(num_sources * (1 + copies), generator=generator)


def epoch_positions(num_sources: int, copies: int, ordering_seed: int, epoch: int,
                    steps_per_epoch: int | None, batch_size: int) -> torch.Tensor:
    """The positions visited in `epoch`: `epoch_order` alone, or, with `steps_per_epoch`, the first
    steps·batch_size positions of successive passes (pass 0 is `epoch_order` itself, so an epoch of
    exactly one pass is the same with or without the setting)."""
    order = epoch_order(num_sources, copies, ordering_seed, epoch)
    if steps_per_epoch is None:
        return order
    wanted = steps_per_epoch * batch_size
    passes = [order]
    while sum(len(p) for p in passes) < wanted:
        generator = torch.Generator().manual_seed(derived_seed("order", ordering_seed, epoch, len(passes)))
        passes.append(torch.randperm(len(order), generator=generator))
    return torch.cat(passes)[:wanted]


def augmentation_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed("augment", seed, epoch, batch))


def base_augment(images: torch.Tensor, augmentations: tuple["Augmentation", ...], ordering_seed: int, epoch: int,
                 batch: int) -> torch.Tensor:
    """`images` (a training batch, originals and copies) through the base augmentations in turn.

    The randomness comes from (ordering seed, epoch, batch) and not from the model's seed: the
    models that visit the same batches (every model with the same `copies`, whatever its
    augmentation and seed) see the same base-augmented images, so the base augmentation is shared
    like the data order and only the model's own augmentation differs."""
    generator = torch.Generator().manual_seed(derived_seed("base-augment", ordering_seed, epoch, batch))
    for augmentation in augmentations:
        images = augmentation(images, generator)
    return images


def state_digest(model: nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def prepare_inputs(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                   image_size: int | None) -> torch.Tensor:
    """[0, 1] images → normalised model inputs, resized if the study asks for it."""
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False, antialias=True)
    return (images - mean) / std


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd_nesterov":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, nesterov=True,
                               weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}")


def scheduled_lr(settings: TrainSettings, step: int, total_steps: int) -> float:
    """The one-cycle learning rate at `step` (0-based) of `total_steps`: linear from lr/10 up to lr
    over the warm-up, then linear down to 0. A function of the step alone, so that resuming at an
    epoch needs no scheduler state."""
    warmup = max(1, round(settings.warmup_fraction * total_steps))
    if step < warmup:
        return settings.lr * (0.1 + 0.9 * step / warmup)
    return settings.lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def precision_context(device: torch.device, precision: str):
    """bf16 autocast for `precision: bf16`; nothing at all for fp32 (the default path is untouched)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"unknown precision {precision!r}")


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
             std: torch.Tensor, image_size: int | None, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(prepare_inputs(images[start:start + batch_size], mean, std, image_size))
            target = labels[start:start + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(1) == target).sum().item()
    model.train(was_training)
    return loss_sum / len(images), correct / len(images)


EpochCallback = Callable[[dict], None]
BatchCallback = Callable[[int], None]


CheckpointCallback = Callable[[TrainState], None]


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train_model(model: nn.Module, data: TrainingData, settings: TrainSettings,
                augmentation: "Augmentation | None", seed: int,
                on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
                on_checkpoint: CheckpointCallback | None = None, resume: TrainState | None = None,
                guided: GuidedTraining | None = None) -> TrainResult:
    """Train `model` (already on the data's device, with the study's initial weights).

    `on_checkpoint` receives the training state after every epoch; `resume` (a state it received)
    continues from there and gives the same result as the uninterrupted run. `guided` adds a
    mask-guided loss on `data.train_masks` (None: plain cross-entropy, the default path).
    """
    if guided is not None and data.train_masks is None:
        raise ValueError(f"guided loss {guided.loss!r} needs the training masks (TrainingData.train_masks)")
    device = data.train_images.device
    fork_devices = [device] if device.type == "cuda" else []
    # The global RNG is seeded here and restored on return, so that the caller's random stream is
    # untouched and a model's training does not depend on what ran before it.
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(derived_seed("global", seed))
        return _train(model, data, settings, augmentation, seed, on_epoch, on_batch, on_checkpoint, resume, guided)


def _train(model: nn.Module, data: TrainingData, settings: TrainSettings, augmentation: "Augmentation | None",
           seed: int, on_epoch: EpochCallback | None, on_batch: BatchCallback | None,
           on_checkpoint: CheckpointCallback | None, resume: TrainState | None,
           guided: GuidedTraining | None = None) -> TrainResult:
    device = data.train_images.device
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    copies = settings.copies if augmentation is not None else 0
    num_sources = len(data.train_images)
    mixes_labels = uses_targets(augmentation)
    num_classes = data.num_classes if data.num_classes is not None else int(data.train_labels.max()) + 1
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, settings)
    batches_per_epoch = settings.steps_per_epoch or math.ceil(num_sources * (1 + copies) / settings.batch_size)
    total_steps = settings.epochs * batches_per_epoch
    # The compiled module shares the model's parameters; evaluation and the saved state use `model`.
    forward = torch.compile(model) if settings.compile else model
    result = TrainResult(best_state={}, best_epoch=-1, best_val_accuracy=-math.inf,
                         initial_digest=state_digest(model))
    first_epoch, seconds_before = 0, 0.0
    if resume is not None:
        if resume.initial_digest != result.initial_digest:
            raise ValueError("the training state to resume from started from other initial weights")
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        _set_rng_state(resume.rng, device)
        result.best_state = {k: v.to(device) for k, v in resume.best_state.items()}
        result.best_epoch, result.best_val_accuracy = resume.best_epoch, resume.best_val_accuracy
        result.history = [dict(row) for row in resume.history]
        first_epoch, seconds_before = resume.epochs_done, resume.seconds
    started = time.perf_counter()
    for epoch in range(first_epoch, settings.epochs):
        epoch_started = time.perf_counter()
        model.train()
        order_cpu = epoch_positions(num_sources, copies, settings.ordering_seed, epoch, settings.steps_per_epoch,
                                    settings.batch_size)
        order = order_cpu.to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for batch, start in enumerate(range(0, len(order), settings.batch_size)):
            positions = order[start:start + settings.batch_size]
            sources = positions % num_sources
            images = data.train_images[sources]
            labels = data.train_labels[sources]
            if settings.base_augmentations:
                images = base_augment(images, settings.base_augmentations, settings.ordering_seed, epoch, batch)
            targets = None  # probability targets, only for a mixing augmentation
            if copies:
                # Which rows are copies is read from the CPU order: testing it on the device would
                # make every batch wait for the GPU (the rows are the same, so are the numbers).
                copy_rows = torch.nonzero(order_cpu[start:start + settings.batch_size] >= num_sources).squeeze(1)
                if len(copy_rows):
                    generator = augmentation_generator(seed, epoch, batch)
                    rows = copy_rows.to(device)
                    images = images.clone()
                    if mixes_labels:
                        # Partners are drawn among the batch's copies; originals keep one-hot targets.
                        targets = F.one_hot(labels, num_classes).to(images.dtype)
                        images[rows], targets[rows] = augment_batch(
                            augmentation, images[rows], labels[rows], num_classes, generator)
                    else:
                        images[rows] = augmentation(images[rows], generator)
            inputs = prepare_inputs(images, mean, std, data.image_size)
            if settings.channels_last:
                inputs = inputs.contiguous(memory_format=memory_format)
            with precision_context(device, settings.precision):
                if guided is None:
                    logits = forward(inputs)
                    # Integer labels unless a mixing augmentation made targets: the path of every other
                    # augmentation stays bit-identical.
                    loss = F.cross_entropy(logits, labels if targets is None else targets,
                                           label_smoothing=settings.label_smoothing)
                else:  # a guided model trains on the original images only (no augmentation, no mixing)
                    logits, loss = _guided_loss(guided, model, inputs, labels, data.train_masks[sources],
                                                guided_generator(seed, epoch, batch))
            if settings.schedule == "onecycle":
                for group in optimizer.param_groups:
                    group["lr"] = scheduled_lr(settings, epoch * batches_per_epoch + batch, total_steps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            if on_batch is not None:
                on_batch(len(labels))
        train_loss = loss_sum.item() / len(order)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch + 1}")
        with precision_context(device, settings.precision):
            val_loss, val_accuracy = evaluate(model, data.val_images, data.val_labels, mean, std,
                                              data.image_size, settings.eval_batch_size)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": correct.item() / len(order),
               "val_loss": val_loss, "val_accuracy": val_accuracy,
               "seconds": time.perf_counter() - epoch_started, "images": len(order)}
        result.history.append(row)
        if val_accuracy > result.best_val_accuracy:
            result.best_val_accuracy = val_accuracy
            result.best_epoch = epoch + 1
            result.best_state = {k: v.detach().clone(memory_format=torch.contiguous_format)
                                 for k, v in model.state_dict().items()}
        if on_checkpoint is not None:
            # A snapshot (copies, not the live tensors and list), so that a caller may keep it.
            on_checkpoint(TrainState(
                epochs_done=epoch + 1, model=copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()}),
                optimizer=copy.deepcopy(optimizer.state_dict()), best_state=result.best_state,
                best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
                history=[dict(row) for row in result.history], rng=_rng_state(device),
                initial_digest=result.initial_digest, seconds=seconds_before + time.perf_counter() - started))
        if on_epoch is not None:
            on_epoch(row)
    result.seconds = seconds_before + time.perf_counter() - started
    return result


def _guided_loss(guided: GuidedTraining, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                 masks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of the plain inputs, for the train accuracy; the batch's loss). The plain forward
    pass comes first, then the guided loss's own passes. With ce_weight 0 the model must not see the
    plain inputs in training (Viviano's "masked" model sees only x · mask, BatchNorm statistics
    included), so their logits are taken in eval mode without gradients."""
    from augcam.guided import guided_loss

    if guided.ce_weight == 0:
        model.eval()
        with torch.no_grad():
            logits = model(inputs)
        model.train()
    else:
        logits = model(inputs)
    extra = guided.weight * guided_loss(guided.loss, model, inputs, labels, masks, generator=generator,
                                        feature_layer=guided.feature_layer)
    if guided.ce_weight == 0:
        return logits, extra
    return logits, guided.ce_weight * F.cross_entropy(logits, labels) + extra


# --- training state on disk ------------------------------------------------------------------
# One safetensors file: the tensors (weights, optimizer moments, best-so-far weights, RNG states)
# under prefixed names, everything else as JSON in the file's metadata. One file keeps the
# checkpoint atomic (written temp-then-rename) without pickle.

_STATE_FORMAT = 1


def save_train_state(path: Path, state: TrainState, identity: dict[str, Any]) -> None:
    """Write `state` atomically; `identity` (e.g. the model id) is stored to be checked on load."""
    from augcam.store import write_tensors

    tensors, metadata = _state_tensors(state, identity)
    write_tensors(path, tensors, metadata=metadata)


def train_state_to_bytes(state: TrainState, identity: dict[str, Any]) -> bytes:
    """The bytes of the file `save_train_state` writes (sent from a cluster worker to the driver)."""
    from augcam.store import tensor_file_bytes

    return tensor_file_bytes(*_state_tensors(state, identity))


def _state_tensors(state: TrainState, identity: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model/{k}": v for k, v in state.model.items()})
    tensors.update({f"best/{k}": v for k, v in state.best_state.items()})
    tensors.update({f"rng/{k}": v for k, v in state.rng.items()})
    optimizer_values: dict[str, dict[str, Any]] = {}
    for index, values in state.optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value
            else:
                optimizer_values.setdefault(str(index), {})[key] = value
    info = {"format": _STATE_FORMAT, "identity": identity, "epochs_done": state.epochs_done,
            "best_epoch": state.best_epoch, "best_val_accuracy": state.best_val_accuracy,
            "history": state.history, "initial_digest": state.initial_digest, "seconds": state.seconds,
            "optimizer_param_groups": state.optimizer["param_groups"], "optimizer_values": optimizer_values}
    return tensors, {"train_state": json.dumps(info)}


def load_train_state(path: Path, identity: dict[str, Any]) -> TrainState:
    """The state saved by `save_train_state`; ValueError if it is not one, or is another model's."""
    from augcam.store import read_tensor_metadata, read_tensors

    return _state_from(str(path), read_tensor_metadata(path), lambda: read_tensors(path), identity)


def train_state_from_bytes(data: bytes, identity: dict[str, Any]) -> TrainState:
    """The state in bytes made by `train_state_to_bytes` (or read from a checkpoint file)."""
    from safetensors.torch import load

    try:
        size = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + size]).get("__metadata__") or {}
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not an augcam training checkpoint ({err})") from None
    return _state_from("checkpoint", metadata, lambda: load(data), identity)


def _state_from(where: str, metadata: dict[str, str], tensors: Callable[[], dict[str, torch.Tensor]],
                identity: dict[str, Any]) -> TrainState:
    try:
        info = json.loads(metadata["train_state"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not an augcam training checkpoint ({err})") from None
    if info.get("format") != _STATE_FORMAT:
        raise ValueError(f"{where}: checkpoint format {info.get('format')!r}, expected {_STATE_FORMAT}")
    if info.get("identity") != identity:
        raise ValueError(f"{where}: checkpoint of {info.get('identity')}, expected {identity}")
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "rng": {}, "optimizer": {}}
    for name, tensor in tensors().items():
        prefix, _, rest = name.partition("/")
        parts[prefix][rest] = tensor
    optimizer_state: dict[int, dict[str, Any]] = {}
    for name, tensor in parts["optimizer"].items():
        index, _, key = name.partition("/")
        optimizer_state.setdefault(int(index), {})[key] = tensor
    for index, values in info["optimizer_values"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    return TrainState(
        epochs_done=info["epochs_done"], model=parts["model"],
        optimizer={"state": optimizer_state, "param_groups": info["optimizer_param_groups"]},
        best_state=parts["best"], best_epoch=info["best_epoch"], best_val_accuracy=info["best_val_accuracy"],
        history=info["history"], rng=parts["rng"], initial_digest=info["initial_digest"],
        seconds=info["seconds"])


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the model is reported as failed, the study goes on."""
