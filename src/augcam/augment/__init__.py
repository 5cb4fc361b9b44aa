"""Batched data augmentations with per-sample random parameters and explicit randomness.

An augmentation is a frozen pydantic model: its fields are the parameters of the study (the same
for every seed), and calling it on a batch applies it with randomness drawn from the generator it
is given::

    aug = build_augmentation("affine", {"degrees": 10})
    out = aug(images, torch.Generator().manual_seed(0))   # images: float (B, C, H, W) in [0, 1]

Conventions every augmentation here follows (and a user-defined one should):

- All randomness comes from the CPU `torch.Generator` passed in, never from the global RNG, so a
  study is reproducible whatever else the process does.
- Random parameters are drawn on the CPU from that generator and only then moved to the batch's
  device. The generator is thus consumed the same way on any device, and the drawn parameters (and
  so the outputs, up to floating point) do not depend on where the batch lives.
- Each image of the batch gets its own parameters, and every image is augmented (there is no
  "apply with probability p"); only a drawn parameter that happens to be neutral leaves an image
  unchanged.
- The pixel work is batched library code (kornia, torchvision, `grid_sample`); no Python loop over
  the images.

The built-in augmentations split `__call__` into `sample_params` (the random draws, on the CPU) and
`apply` (the deterministic pixel work, on the batch's device), so tests can check the pixel work
against torchvision with the very parameters that were drawn. A user-defined augmentation may do
the same or simply override `__call__`.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

import pydantic
import torch
from pydantic import ConfigDict

from augcam.errors import ConfigError
from augcam.registry import Registry

__all__ = ["AUGMENTATIONS", "Augmentation", "build_augmentation", "register_augmentation"]


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
        _check_inputs(images, generator)
        if images.shape[0] == 0:
            return images
        params = self.sample_params(tuple(images.shape), generator)
        return self.apply(images, _to_device(params, images))

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The random parameters for a batch of `shape`, drawn on the CPU from `generator` alone."""
        return {}

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The deterministic pixel work, given the parameters from `sample_params` on the batch's device."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply() or __call__()")


def _check_inputs(images: torch.Tensor, generator: torch.Generator) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"augmentations take a float tensor (B, C, H, W), got "
                         f"{getattr(images, 'dtype', type(images))} of shape {tuple(getattr(images, 'shape', ()))}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        # A CUDA generator would make the random stream depend on the device, which is exactly
        # what the CPU-draw convention rules out.
        raise ValueError(f"augmentations take a CPU torch.Generator, got {generator!r}")


def _to_device(params: dict[str, torch.Tensor], images: torch.Tensor) -> dict[str, torch.Tensor]:
    # Floating parameters were drawn in float64 for accuracy; the pixel work runs in the batch's dtype.
    return {key: value.to(device=images.device, dtype=images.dtype if value.is_floating_point() else value.dtype)
            for key, value in params.items()}


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")


def register_augmentation(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: register an `Augmentation` subclass under its `name` (warns on a duplicate)."""
    if not (isinstance(cls, type) and issubclass(cls, Augmentation)):
        raise TypeError(f"register_augmentation takes an Augmentation subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs a class attribute `name: ClassVar[str] = ...` to be registered")
    return AUGMENTATIONS.register(name)(cls)


def build_augmentation(name: str, params: dict[str, Any] | None = None,
                       where: str = "augmentations") -> Augmentation:
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


# The built-in augmentations register themselves on import; imported last because they subclass
# the names defined above.
from augcam.augment.transforms import (  # noqa: E402
    Affine,
    ColorJitter,
    CutMix,
    Elastic,
    Equalization,
    GaussianBlur,
    Identity,
    RandomCrop,
    RandomErasing,
    sample_beta,
)

__all__ += ["Affine", "ColorJitter", "CutMix", "Elastic", "Equalization", "GaussianBlur", "Identity",
            "RandomCrop", "RandomErasing", "sample_beta"]
from augcam.augment import mixing  # noqa: E402,F401  (mixup, saliencymix, cutmix_targets)
