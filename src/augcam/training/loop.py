"""Training one model of a study, with the methodology's controls built in.

- The training data lives on the device as one tensor; batches are index lookups, and the
  augmentation runs on whole batches there (per-sample random parameters).
- What each batch reads and which random stream its augmentation draws from follow the rules of
  `augcam.training.ordering`: the same positions in every model of the study, whatever its
  augmentation, and the same random stream for two augmentations trained with the same seed.
- Every model starts from the same initial weights (built from `init_seed`); the checkpoint with
  the best validation accuracy (the first, on ties) is what the study explains.
- A mixing augmentation (Mixup, CutMix with targets, SaliencyMix) trains on the probability
  targets it makes for the copies (`augment_batch`; the originals keep one-hot rows); every other
  augmentation trains on the integer labels exactly as before mixed-sample training existed.
- `steps_per_epoch` (optional) makes an epoch that many batches, read from successive passes over
  the positions, so models trained on sets of different sizes take the same number of steps.
- The optimizer, learning-rate schedule and precision are registry entries
  (`augcam.training.recipe`); a mask-guided model adds its loss (`augcam.training.guided`).
- Training can stop after any epoch and resume bit-identically: `TrainState`
  (`augcam.training.state`) holds everything the remaining epochs depend on, `on_checkpoint`
  receives it after every epoch, and `resume=` continues from it. The global RNG (used by no
  built-in model or augmentation, but by e.g. dropout in a user's model) is seeded from the
  augmentation seed, so a model's weights do not depend on what the process ran before it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from augcam.training.batches import batch_maker
from augcam.training.guided import GuidedTraining, guided_step
from augcam.training.ordering import derived_seed, epoch_positions, guided_generator
from augcam.training.recipe import SCHEDULES, make_optimizer, precision_context
from augcam.training.state import TrainState, capture_rng_state, restore_rng_state, state_digest

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
    # A test set evaluated after every epoch and never used to pick the best epoch (architecture
    # selection plots its curves); given, the loop also keeps every epoch's validation and test
    # predictions (TrainResult.predictions). None: the study's loop, which evaluates validation only.
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


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
    # The GPU recipe (augcam.training.recipe). The defaults are the reference study's loop, bit for
    # bit: Adam at a constant learning rate, plain cross-entropy, float32, contiguous tensors, eager mode.
    optimizer: str = "adam"  # an OPTIMIZERS name: adam | sgd_nesterov (momentum 0.9)
    schedule: str = "constant"  # a SCHEDULES name: constant | onecycle (linear warm-up, linear decay to 0)
    warmup_fraction: float = 0.2  # onecycle: share of the steps spent warming up
    label_smoothing: float = 0.0
    precision: str = "fp32"  # a PRECISIONS name: fp32 | bf16 (autocast of forward and loss)
    channels_last: bool = False  # NHWC model and inputs (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the training forward pass (evaluation stays eager)
    # Applied to every training image of every model, before the model's own augmentation
    # (`base_augment`); empty: the loop as before base augmentations existed.
    base_augmentations: tuple[Augmentation, ...] = ()
    # The published protocols (augcam.training.ordering, augcam.training.batches): "once" keeps
    # epoch 0's visiting order every epoch / generates the augmented copies once for all epochs.
    order: str = "per_epoch"
    copies_drawn: str = "per_epoch"


@dataclass
class TrainResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    initial_digest: str = ""
    # With TrainingData.test_images: "val" and "test" → (epochs, N) int64 predicted classes, row e
    # by the weights after epoch e + 1 (on the CPU).
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)


def prepare_inputs(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """[0, 1] images → normalised model inputs, resized if the study asks for it."""
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    return (images - mean) / std


def evaluate_predictions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    image_size: int | None,
    batch_size: int,
) -> tuple[float, torch.Tensor]:
    """(mean cross-entropy, predicted classes on the labels' device) in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    loss_sum, predictions = 0.0, []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(prepare_inputs(images[start : start + batch_size], mean, std, image_size))
            target = labels[start : start + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum").item()
            predictions.append(logits.argmax(1))
    model.train(was_training)
    return loss_sum / len(images), torch.cat(predictions)


EpochCallback = Callable[[dict], None]
BatchCallback = Callable[[int], None]
CheckpointCallback = Callable[[TrainState], None]


def train_model(
    model: nn.Module,
    data: TrainingData,
    settings: TrainSettings,
    augmentation: Augmentation | None,
    seed: int,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    resume: TrainState | None = None,
    guided: GuidedTraining | None = None,
) -> TrainResult:
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


def _train(
    model: nn.Module,
    data: TrainingData,
    settings: TrainSettings,
    augmentation: Augmentation | None,
    seed: int,
    on_epoch: EpochCallback | None,
    on_batch: BatchCallback | None,
    on_checkpoint: CheckpointCallback | None,
    resume: TrainState | None,
    guided: GuidedTraining | None = None,
) -> TrainResult:
    device = data.train_images.device
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    copies = settings.copies if augmentation is not None else 0
    num_sources = len(data.train_images)
    batches = batch_maker(
        data.train_images,
        data.train_labels,
        augmentation,
        seed,
        copies=copies,
        copies_drawn=settings.copies_drawn,
        batch_size=settings.batch_size,
        num_classes=data.num_classes if data.num_classes is not None else int(data.train_labels.max()) + 1,
        ordering_seed=settings.ordering_seed,
        base_augmentations=settings.base_augmentations,
    )
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, settings)
    schedule = SCHEDULES.lookup(settings.schedule, where="training.schedule")
    batches_per_epoch = settings.steps_per_epoch or math.ceil(num_sources * (1 + copies) / settings.batch_size)
    total_steps = settings.epochs * batches_per_epoch
    # The compiled module shares the model's parameters; evaluation and the saved state use `model`.
    forward = torch.compile(model) if settings.compile else model
    result = TrainResult(best_state={}, best_epoch=-1, best_val_accuracy=-math.inf, initial_digest=state_digest(model))
    first_epoch, seconds_before = 0, 0.0
    if resume is not None:
        if resume.initial_digest != result.initial_digest:
            raise ValueError("the training state to resume from started from other initial weights")
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        restore_rng_state(resume.rng, device)
        result.best_state = {k: v.to(device) for k, v in resume.best_state.items()}
        result.best_epoch, result.best_val_accuracy = resume.best_epoch, resume.best_val_accuracy
        result.history = [dict(row) for row in resume.history]
        first_epoch, seconds_before = resume.epochs_done, resume.seconds
    monitored = data.test_images is not None
    # Every epoch's predictions (CPU), for the monitored sets; a resumed run starts from the stored ones.
    kept: dict[str, list[torch.Tensor]] = {"val": [], "test": []} if monitored else {}
    if resume is not None and monitored:
        kept = {name: list(resume.predictions.get(name, torch.empty(0, 0, dtype=torch.long))) for name in kept}
    started = time.perf_counter()
    for epoch in range(first_epoch, settings.epochs):
        epoch_started = time.perf_counter()
        model.train()
        order_cpu = epoch_positions(
            num_sources,
            copies,
            settings.ordering_seed,
            epoch,
            settings.steps_per_epoch,
            settings.batch_size,
            settings.order,
        )
        order = order_cpu.to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for batch, start in enumerate(range(0, len(order), settings.batch_size)):
            sources, images, labels, targets = batches.batch(
                order_cpu, order, start, start + settings.batch_size, epoch, batch
            )
            inputs = prepare_inputs(images, mean, std, data.image_size)
            if settings.channels_last:
                inputs = inputs.contiguous(memory_format=memory_format)
            with precision_context(device, settings.precision):
                if guided is None:
                    logits = forward(inputs)
                    # Integer labels unless a mixing augmentation made targets: the path of every other
                    # augmentation stays bit-identical.
                    loss = F.cross_entropy(
                        logits, labels if targets is None else targets, label_smoothing=settings.label_smoothing
                    )
                else:  # a guided model trains on the original images only (no augmentation, no mixing)
                    logits, loss = guided_step(
                        guided, model, inputs, labels, data.train_masks[sources], guided_generator(seed, epoch, batch)
                    )
            lr = schedule(settings, epoch * batches_per_epoch + batch, total_steps)
            if lr is not None:  # None: the schedule leaves the learning rate as the optimizer was built
                for group in optimizer.param_groups:
                    group["lr"] = lr
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
            val_loss, val_predictions = evaluate_predictions(
                model, data.val_images, data.val_labels, mean, std, data.image_size, settings.eval_batch_size
            )
        val_accuracy = int((val_predictions == data.val_labels).sum().item()) / len(data.val_labels)
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": correct.item() / len(order),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            # Training and validation: what an epoch of the study costs (the test pass is timed apart).
            "seconds": time.perf_counter() - epoch_started,
            "images": len(order),
        }
        if monitored:
            test_started = time.perf_counter()
            with precision_context(device, settings.precision):
                test_loss, test_predictions = evaluate_predictions(
                    model, data.test_images, data.test_labels, mean, std, data.image_size, settings.eval_batch_size
                )
            row["test_loss"] = test_loss
            row["test_accuracy"] = int((test_predictions == data.test_labels).sum().item()) / len(data.test_labels)
            row["test_seconds"] = time.perf_counter() - test_started
            kept["val"].append(val_predictions.cpu())
            kept["test"].append(test_predictions.cpu())
            result.predictions = {name: torch.stack(rows) for name, rows in kept.items()}
        result.history.append(row)
        if val_accuracy > result.best_val_accuracy:
            result.best_val_accuracy = val_accuracy
            result.best_epoch = epoch + 1
            result.best_state = {
                k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()
            }
        if on_checkpoint is not None:
            # A snapshot (copies, not the live tensors and list), so that a caller may keep it.
            on_checkpoint(
                TrainState(
                    epochs_done=epoch + 1,
                    model=copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()}),
                    optimizer=copy.deepcopy(optimizer.state_dict()),
                    best_state=result.best_state,
                    best_epoch=result.best_epoch,
                    best_val_accuracy=result.best_val_accuracy,
                    history=[dict(row) for row in result.history],
                    rng=capture_rng_state(device),
                    initial_digest=result.initial_digest,
                    seconds=seconds_before + time.perf_counter() - started,
                    predictions=dict(result.predictions),
                )
            )
        if on_epoch is not None:
            on_epoch(row)
    result.seconds = seconds_before + time.perf_counter() - started
    return result


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the model is reported as failed, the study goes on."""
