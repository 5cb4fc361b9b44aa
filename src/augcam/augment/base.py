"""The augmentation contract, its registry and the helpers the built-in augmentations share.

`augcam.augment`'s docstring states the conventions an augmentation follows; this module holds the
base class that encodes them, `AUGMENTATIONS` and `build_augmentation` (name and parameters from the
configuration → a validated instance, or one ConfigError).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, ClassVar

import pydantic
import torch
from pydantic import AfterValidator, ConfigDict, PositiveFloat

from augcam.errors import ConfigError
from augcam.registry import Registry

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "PositiveRange",
    "Params",
    "box_mask",
    "build_augmentation",
    "check_inputs",
    "fit_kernel",
    "params_to_device",
    "register_augmentation",
    "uniform",
]

Params = dict[str, torch.Tensor]


class Augmentation(pydantic.BaseModel):
    """Base class: a named, parametrised batch augmentation.

    Subclasses set `name` (the registry key) and declare their parameters as pydantic fields with
    defaults and validation. They implement either `sample_params` + `apply` or `__call__`.
    """

    # frozen: the same parameters are shared by every seed and every batch; allow_inf_nan=False:
    # a NaN range bound would otherwise slip through every `ge`/`le` check unnoticed.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: ClassVar[str]
    # Whether each image's result depends on that image alone (False for CutMix-like methods that
    # paste from a partner in the batch); only such augmentations can be base augmentations.
    per_image: ClassVar[bool] = True

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment every image of `images` (float (B, C, H, W) in [0, 1], any device) with randomness
        from `generator` (a CPU generator); returns the same shape, dtype and device, in [0, 1]."""
        check_inputs(images, generator)
        if images.shape[0] == 0:
            return images
        params = self.sample_params(tuple(images.shape), generator)
        return self.apply(images, params_to_device(params, images))

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        """The random parameters for a batch of `shape`, drawn on the CPU from `generator` alone."""
        return {}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        """The deterministic pixel work, given the parameters from `sample_params` on the batch's device."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply() or __call__()")


def check_inputs(images: torch.Tensor, generator: torch.Generator) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"augmentations take a float tensor (B, C, H, W), got "
            f"{getattr(images, 'dtype', type(images))} of shape {tuple(getattr(images, 'shape', ()))}"
        )
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        # A CUDA generator would make the random stream depend on the device, which is exactly
        # what the CPU-draw convention rules out.
        raise ValueError(f"augmentations take a CPU torch.Generator, got {generator!r}")


def params_to_device(params: Params, images: torch.Tensor) -> Params:
    # Floating parameters were drawn in float64 for accuracy; the pixel work runs in the batch's dtype.
    return {
        key: value.to(device=images.device, dtype=images.dtype if value.is_floating_point() else value.dtype)
        for key, value in params.items()
    }


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")


def register_augmentation(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: register an `Augmentation` subclass under its `name` (warns on a duplicate)."""
    if not (isinstance(cls, type) and issubclass(cls, Augmentation)):
        raise TypeError(f"register_augmentation takes an Augmentation subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name: ClassVar[str] = ...` to be registered")
    return AUGMENTATIONS.register(name)(cls)


def build_augmentation(name: str, params: dict[str, Any] | None = None, where: str = "augmentations") -> Augmentation:
    """The registered augmentation `name` with `params` (validated); any problem is one ConfigError
    whose message starts with `where`."""
    cls = AUGMENTATIONS.lookup(name, where=where)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: parameters must be a mapping of name to value, got {_short(params)}")
    try:
        return cls(**params)
    except pydantic.ValidationError as error:
        raise ConfigError(_describe(error, cls, where)) from None


def _describe(error: pydantic.ValidationError, cls: type[Augmentation], where: str) -> str:
    """One line per problem, e.g. `augmentations[gaussian_blur].sigma: Input should be a valid tuple (got 'abc')`."""
    fields = list(cls.model_fields)
    lines = []
    for item in error.errors():
        loc = item["loc"]
        if item["type"] == "extra_forbidden":
            key = str(loc[0]) if loc else "?"
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{where}: unknown parameter {key!r}{hint} (valid: {', '.join(fields) or 'none'})")
            continue
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        got = "" if item["type"] == "missing" else f" (got {_short(item.get('input'))})"
        lines.append(f"{where}{path}: {message}{got}")
    return "; ".join(lines)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Helpers shared by the built-in augmentations (geometric, photometric and mixing).


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"a range must be (low, high) with low <= high, got ({value[0]}, {value[1]})")
    return value


PositiveRange = Annotated[tuple[PositiveFloat, PositiveFloat], AfterValidator(_ordered)]


def uniform(low: float, high: float, row: torch.Tensor) -> torch.Tensor:
    """Map uniform [0, 1) draws onto [low, high)."""
    return low + (high - low) * row


def fit_kernel(kernel_size: int, height: int, width: int) -> int:
    """The largest odd kernel ≤ `kernel_size` that reflect padding allows (pad < image side).

    Only images smaller than the kernel are affected; torchvision raises for them instead."""
    return min(kernel_size, 2 * min(height, width) - 1)


def box_mask(box: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(B, 1, H, W) bool: inside each box (x1, y1, x2, y2), end exclusive."""
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    in_x = (cols >= box[:, 0:1]) & (cols < box[:, 2:3])
    in_y = (rows >= box[:, 1:2]) & (rows < box[:, 3:4])
    return (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)
