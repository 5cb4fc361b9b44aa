"""The training recipe's named choices: optimizers, learning-rate schedules, numeric precisions.

Each is a registry, so the study file's `training.optimizer`, `training.schedule` and
`training.precision` accept exactly the registered names, and a user adds one from Python::

    @OPTIMIZERS.register("adamw")
    def adamw(model, settings):
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

The defaults ("adam", "constant", "fp32") are the reference study's loop, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import torch
from torch import nn

from augcam.registry import Registry

if TYPE_CHECKING:
    from augcam.training.loop import TrainSettings

__all__ = ["OPTIMIZERS", "SCHEDULES", "PRECISIONS", "make_optimizer", "scheduled_lr", "precision_context"]

# (model, settings) → the optimizer over the model's parameters.
OptimizerFactory = Callable[[nn.Module, "TrainSettings"], torch.optim.Optimizer]
# (settings, step, total_steps) → the learning rate at that step, or None to leave the optimizer's
# learning rate as it was built.
Schedule = Callable[["TrainSettings", int, int], "float | None"]
# device → the context the forward pass and the loss run in.
Precision = Callable[[torch.device], AbstractContextManager]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[Schedule] = Registry("schedule")
PRECISIONS: Registry[Precision] = Registry("precision")


@OPTIMIZERS.register("adam")
def adam(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


@OPTIMIZERS.register("sgd_nesterov")
def sgd_nesterov(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay
    )


@SCHEDULES.register("constant")
def constant(settings: TrainSettings, step: int, total_steps: int) -> None:
    # The learning rate is never touched, so the reference loop's optimizer state is exactly as built.
    return None


@SCHEDULES.register("onecycle")
def onecycle(settings: TrainSettings, step: int, total_steps: int) -> float:
    """Linear from lr/10 up to lr over the warm-up, then linear down to 0. A function of the step
    alone, so that resuming at an epoch needs no scheduler state."""
    warmup = max(1, round(settings.warmup_fraction * total_steps))
    if step < warmup:
        return settings.lr * (0.1 + 0.9 * step / warmup)
    return settings.lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


@PRECISIONS.register("fp32")
def fp32(device: torch.device) -> AbstractContextManager:
    # Nothing at all: the default path is untouched.
    return contextlib.nullcontext()


@PRECISIONS.register("bf16")
def bf16(device: torch.device) -> AbstractContextManager:
    """Autocast of the forward pass and the loss; the weights stay float32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    return OPTIMIZERS.lookup(settings.optimizer, where="training.optimizer")(model, settings)


def scheduled_lr(settings: TrainSettings, step: int, total_steps: int) -> float | None:
    """The learning rate of `settings.schedule` at `step` (0-based) of `total_steps`; None when the
    schedule leaves it as the optimizer was built."""
    return SCHEDULES.lookup(settings.schedule, where="training.schedule")(settings, step, total_steps)


def precision_context(device: torch.device, precision: str) -> AbstractContextManager:
    return PRECISIONS.lookup(precision, where="training.precision")(device)
