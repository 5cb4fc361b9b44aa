"""The photometric built-in augmentations: they change pixel values in place (colour, contrast,
histogram, blur, erasing) or nothing perceptible (`identity`, the null models' augmentation).

Same conventions as the geometric ones: random parameters drawn on the CPU from the generator
given (`sample_params`, float64), in the order each class docstring states, and the pixel work on
the batch's device (`apply`). Defaults follow torchvision where it has one. `augcam.augment`
registers these classes, in the study's order.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import kornia
import torch
import torchvision.transforms.v2.functional as TF
from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from augcam.augment.base import Augmentation, Params, PositiveRange, box_mask, fit_kernel, uniform
from augcam.rundir import IDENTITY

__all__ = ["MAX_NULL_NOISE_STD", "ColorJitter", "Equalization", "GaussianBlur", "Identity", "RandomErasing"]

# Weights of torchvision's rgb_to_grayscale, which ColorJitter's contrast and saturation blend
# with (kornia's rgb_to_grayscale uses 0.299 instead of 0.2989).
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# The largest perturbation `identity` accepts (exclusive): 2.5 grey levels of 255, far below what
# any augmentation changes, so models trained with it stay null models.
MAX_NULL_NOISE_STD = 0.01


class ColorJitter(Augmentation):
    """Random brightness, contrast, saturation and hue, with torchvision `ColorJitter` semantics.

    Per image: brightness factor ~ U(max(0, 1−brightness), 1+brightness) (the image is scaled by
    it); contrast factor likewise (blend with the mean of the grayscale image); saturation factor
    likewise (blend with the grayscale image); hue shift ~ U(−hue, hue) of a full turn (HSV).
    Unlike torchvision, which shuffles the four operations per call, they are applied in a fixed
    order: brightness → contrast → saturation → hue. On 1-channel images saturation and hue are
    no-ops (as in torchvision); brightness and contrast still apply.

    torchvision's ColorJitter defaults to 0 (off) for all four; brightness=contrast=saturation=0.4,
    hue=0.1 are the strengths commonly used for training (a setting of 0 switches that part off).

    Draws: one (4, B) uniform tensor: brightness, contrast, saturation, hue (always all four).
    """

    name: ClassVar[str] = "color_jitter"

    brightness: float = Field(0.4, ge=0.0)
    contrast: float = Field(0.4, ge=0.0)
    saturation: float = Field(0.4, ge=0.0)
    hue: float = Field(0.1, ge=0.0, le=0.5)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        u = torch.rand(4, shape[0], generator=generator, dtype=torch.float64)
        ranges = [(max(0.0, 1.0 - s), 1.0 + s) for s in (self.brightness, self.contrast, self.saturation)]
        ranges.append((-self.hue, self.hue))
        keys = ("brightness", "contrast", "saturation", "hue")
        return {key: uniform(low, high, row) for key, (low, high), row in zip(keys, ranges, u)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        out = images
        # A zero setting gives the factor 1 (or shift 0) exactly, so skipping it changes nothing.
        if self.brightness > 0:
            out = _blend(out, torch.zeros_like(out), params["brightness"])
        if self.contrast > 0:
            mean = _grayscale(out).mean(dim=(-3, -2, -1), keepdim=True)
            out = _blend(out, mean, params["contrast"])
        if out.shape[1] == 3:
            if self.saturation > 0:
                out = _blend(out, _grayscale(out), params["saturation"])
            if self.hue > 0:
                # kornia's hue is an angle in radians; torchvision's is a fraction of a turn.
                out = kornia.enhance.adjust_hue(out, params["hue"] * (2.0 * math.pi)).clamp_(0.0, 1.0)
        return out


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (r * _GRAY_WEIGHTS[0] + g * _GRAY_WEIGHTS[1] + b * _GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor·images + (1 − factor)·other, per image, clipped to [0, 1] (torchvision's `_blend`)."""
    ratio = factor.view(-1, 1, 1, 1)
    return (images * ratio + other * (1.0 - ratio)).clamp_(0.0, 1.0)


class Equalization(Augmentation):
    """Histogram equalisation of each image and channel (torchvision's `equalize`, PIL's algorithm).

    The image is quantised to 256 levels as torchvision converts float to uint8, equalised, and
    returned as float (levels k/255). Deterministic: the generator is not used. No parameters.
    """

    name: ClassVar[str] = "equalization"

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.equalize(images)  # vectorised over the batch and channels


class GaussianBlur(Augmentation):
    """Gaussian blur with a random standard deviation per image, as torchvision's `GaussianBlur`.

    Per image: sigma ~ U(sigma[0], sigma[1]), the same along both axes; a kernel_size × kernel_size
    kernel, reflect padding. The result equals torchvision's `gaussian_blur(image, kernel_size,
    sigma)` image by image. For images smaller than the kernel the kernel is shrunk to fit.

    Default sigma=(0.1, 2.0) is torchvision's; torchvision has no default kernel_size, 5 suits
    28–32 px images.

    Draws: one (B,) uniform tensor.
    """

    name: ClassVar[str] = "gaussian_blur"

    kernel_size: int = Field(5, ge=1)
    sigma: PositiveRange = (0.1, 2.0)

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {value}")
        return value

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        u = torch.rand(shape[0], generator=generator, dtype=torch.float64)
        return {"sigma": uniform(*self.sigma, u)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        kernel = fit_kernel(self.kernel_size, *images.shape[-2:])
        sigma = params["sigma"]
        out = kornia.filters.gaussian_blur2d(
            images, (kernel, kernel), torch.stack([sigma, sigma], 1), border_type="reflect"
        )
        return out.clamp_(0.0, 1.0)


class Identity(Augmentation):
    """No change, or an imperceptible one: the copy of each image that the null models train on.

    noise_std = 0 (the default): the same tensor is returned (not a copy) and the generator is not
    used, so a study that lists `identity` itself trains the model it always trained.
    noise_std > 0: Gaussian noise N(0, noise_std²) is added to every pixel, then the result is
    clipped to [0, 1]. The noise comes from the seed's random stream, so null models trained with
    different seeds take different training trajectories, as an augmentation's seeds do, while
    split, initial weights and data order stay those of every other model. It must stay far below
    what an augmentation changes: under 0.01 (2.5 grey levels of 255); the null models' default,
    1e-3 (`controls.null_noise_std`), is a quarter of one grey level.

    Draws (noise_std > 0 only): one (B, C, H, W) standard normal tensor.
    """

    name: ClassVar[str] = IDENTITY

    noise_std: float = 0.0

    @field_validator("noise_std")
    @classmethod
    def _imperceptible(cls, value: float) -> float:
        if not 0.0 <= value < MAX_NULL_NOISE_STD:
            raise ValueError(
                f"must be >= 0 and < {MAX_NULL_NOISE_STD}: identity's perturbation must stay "
                f"imperceptible ({MAX_NULL_NOISE_STD} is 2.5 grey levels of 255); for visible noise "
                "register an augmentation of its own"
            )
        return value

    @model_serializer(mode="wrap")
    def _without_zero_noise(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # noise_std = 0 is the identity of earlier versions: leaving it out of the dump keeps the
        # model key, and so the model id, of a study that lists `identity` itself.
        data = handler(self)
        if self.noise_std == 0.0:
            data.pop("noise_std", None)
        return data

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        if self.noise_std == 0.0:
            return {}
        return {"noise": torch.randn(shape, generator=generator, dtype=torch.float64)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        if self.noise_std == 0.0:
            return images
        return (images + self.noise_std * params["noise"]).clamp_(0.0, 1.0)


class RandomErasing(Augmentation):
    """Random erasing (Zhong et al., 2020), as torchvision's `RandomErasing` but applied to every
    image (no `p`): a rectangle of the image is set to `value`.

    Per image: area fraction s ~ U(scale), log aspect ratio r ~ U(log ratio[0], log ratio[1]);
    the box is h = round(√(s·H·W·e^r)) × w = round(√(s·H·W/e^r)) pixels (half up), at a uniformly
    drawn whole-pixel top-left corner. torchvision redraws (up to 10 times) a box that does not fit
    strictly inside the image; a batched draw cannot retry per image, so here h and w are clipped
    to H − 1 and W − 1 instead, which only affects boxes of extreme aspect ratio.

    Defaults are torchvision's (scale (0.02, 0.33), ratio (0.3, 3.3), value 0 = black, the MNIST
    background, since augcam's images are in [0, 1] before normalisation).

    Draws: one (4, B) uniform tensor: area fraction, log ratio, top, left.
    """

    name: ClassVar[str] = "random_erasing"

    scale: tuple[float, float] = (0.02, 0.33)
    ratio: PositiveRange = (0.3, 3.3)
    value: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < value[0] <= value[1] <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {value}")
        return value

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        n, _, height, width = shape
        u = torch.rand(4, n, generator=generator, dtype=torch.float64)
        area = uniform(self.scale[0], self.scale[1], u[0]) * (height * width)
        aspect = torch.exp(uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), u[1]))
        box_h = torch.floor(torch.sqrt(area * aspect) + 0.5).long().clamp_(0, max(height - 1, 0))
        box_w = torch.floor(torch.sqrt(area / aspect) + 0.5).long().clamp_(0, max(width - 1, 0))
        top = torch.minimum((u[2] * (height - box_h + 1)).long(), height - box_h)
        left = torch.minimum((u[3] * (width - box_w + 1)).long(), width - box_w)
        return {"box": torch.stack([left, top, left + box_w, top + box_h], 1)}  # x1, y1, x2, y2 (end exclusive)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = images.shape
        inside = box_mask(params["box"], height, width, images.device)
        return torch.where(inside, torch.full_like(images, self.value), images)
