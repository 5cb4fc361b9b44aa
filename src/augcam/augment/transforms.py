"""The built-in augmentations of the study.

Each one draws its random parameters on the CPU from the generator it is given (`sample_params`,
float64 unless noted) and does the pixel work on the batch's device (`apply`). The draws of one
call happen in a fixed order, documented per class, so the same generator state always gives the
same parameters.

The thesis names the augmentations but gives no parameter values; the defaults follow the
defaults of the matching torchvision transform where it has one, and each class docstring says
where a value comes from.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

import kornia
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from pydantic import AfterValidator, Field, PositiveFloat, field_validator

from augcam.augment import Augmentation, register_augmentation

Params = dict[str, torch.Tensor]

# Weights of torchvision's rgb_to_grayscale, which ColorJitter's contrast and saturation blend
# with (kornia's rgb_to_grayscale uses 0.299 instead of 0.2989).
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"a range must be (low, high) with low <= high, got ({value[0]}, {value[1]})")
    return value


PositiveRange = Annotated[tuple[PositiveFloat, PositiveFloat], AfterValidator(_ordered)]


def _uniform(low: float, high: float, row: torch.Tensor) -> torch.Tensor:
    """Map uniform [0, 1) draws onto [low, high)."""
    return low + (high - low) * row


def _fit_kernel(kernel_size: int, height: int, width: int) -> int:
    """The largest odd kernel ≤ `kernel_size` that reflect padding allows (pad < image side).

    Only images smaller than the kernel are affected; torchvision raises for them instead."""
    return min(kernel_size, 2 * min(height, width) - 1)


@register_augmentation
class Affine(Augmentation):
    """Random affine transformation about the image centre, as torchvision's `RandomAffine`.

    Per image: rotation angle ~ U(-degrees, degrees) (positive = counter-clockwise, as
    `torchvision.transforms.v2.functional.affine`); translation ~ U(-translate·W, translate·W) and
    U(-translate·H, translate·H) pixels, rounded to whole pixels as torchvision does; scale ~
    U(scale); shear parallel to the x axis ~ U(-shear, shear) degrees (torchvision's meaning of a
    single shear number). Bilinear interpolation, zero fill, so the result equals torchvision's
    `affine(image, angle, translate, scale, shear, BILINEAR)` image by image.

    torchvision's RandomAffine has no defaults (degrees is required, the rest are off); the
    defaults here — degrees=15, translate=0.1, scale=(0.9, 1.1), shear=10 — are moderate values
    that keep a 28×28 digit or garment inside the frame.

    Draws: one (5, B) uniform tensor: angle, x shift, y shift, scale, shear.
    """

    name: ClassVar[str] = "affine"

    degrees: float = Field(15.0, ge=0.0, le=180.0)
    translate: float = Field(0.1, ge=0.0, le=1.0)
    scale: PositiveRange = (0.9, 1.1)
    shear: float = Field(10.0, ge=0.0, lt=90.0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        n, _, height, width = shape
        u = torch.rand(5, n, generator=generator, dtype=torch.float64)
        angle = _uniform(-self.degrees, self.degrees, u[0])
        tx = torch.round(_uniform(-self.translate * width, self.translate * width, u[1]))
        ty = torch.round(_uniform(-self.translate * height, self.translate * height, u[2]))
        scale = _uniform(*self.scale, u[3])
        shear = _uniform(-self.shear, self.shear, u[4])
        theta = _affine_theta(angle, tx, ty, scale, shear, height, width)
        return {"angle": angle, "translate": torch.stack([tx, ty], 1), "scale": scale, "shear": shear,
                "theta": theta}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        grid = F.affine_grid(params["theta"], list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)  # bilinear weights sum to 1 only up to rounding


def _affine_theta(angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, scale: torch.Tensor,
                  shear: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) `affine_grid` matrices: output → input, in normalised (align_corners=False) coordinates.

    The forward map in pixel coordinates centred on the image is x ↦ R(angle)·S(scale)·Shx(shear)·x + t,
    the composition torchvision uses (with its sign conventions); the sampling grid needs its inverse.
    """
    rot, sx = torch.deg2rad(angle), torch.deg2rad(shear)
    tan_sx = torch.tan(sx)
    # Forward linear part [[a, b], [c, d]] (determinant 1 before scaling).
    a, c = torch.cos(rot), torch.sin(rot)
    b = -(a * tan_sx + c)
    d = a - c * tan_sx
    # Inverse linear part, then the inverse translation -M⁻¹·t.
    m00, m01, m10, m11 = d / scale, -b / scale, -c / scale, a / scale
    m02 = -(m00 * tx + m01 * ty)
    m12 = -(m10 * tx + m11 * ty)
    # Centred pixel coordinates are normalised ones times (W/2, H/2); conjugate by that scaling.
    row0 = torch.stack([m00, m01 * height / width, m02 * 2.0 / width], 1)
    row1 = torch.stack([m10 * width / height, m11, m12 * 2.0 / height], 1)
    return torch.stack([row0, row1], 1)


@register_augmentation
class CutMix(Augmentation):
    """CutMix (Yun et al., 2019) without label mixing: each image gets a box pasted from a partner.

    Per image: λ ~ Beta(alpha, alpha); a box of half-sides ⌊√(1−λ)·W/2⌋ × ⌊√(1−λ)·H/2⌋ centred at a
    uniformly drawn pixel, clipped at the borders (as torchvision's `CutMix`), is replaced by the
    same box of the partner image. The label stays the original's (the study does not mix labels).

    Partners come from the same batch: a random permutation puts the batch in a random cyclic order
    and each image takes the next one as partner, so no image is its own partner (for B ≥ 2). A
    batch of one image, identical partners or an empty box leave an image unchanged.

    Default alpha=1.0 (λ uniform) is torchvision's CutMix default.

    Draws: a permutation of B (`randperm`), then λ (see `sample_beta`), then one (2, B) uniform
    tensor for the box centre (x, y).
    """

    name: ClassVar[str] = "cutmix"
    per_image: ClassVar[bool] = False

    alpha: float = Field(1.0, gt=0.0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        n, _, height, width = shape
        order = torch.randperm(n, generator=generator)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)
        lam = sample_beta(self.alpha, n, generator)
        centre = torch.rand(2, n, generator=generator, dtype=torch.float64)
        cx = (centre[0] * width).long().clamp_(max=width - 1)
        cy = (centre[1] * height).long().clamp_(max=height - 1)
        half = 0.5 * torch.sqrt(1.0 - lam)
        half_w, half_h = (half * width).long(), (half * height).long()
        box = torch.stack([(cx - half_w).clamp(min=0), (cy - half_h).clamp(min=0),
                           (cx + half_w).clamp(max=width), (cy + half_h).clamp(max=height)], 1)
        return {"partner": partner, "lam": lam, "box": box}  # box: x1, y1, x2, y2 (end exclusive)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = images.shape
        x1, y1, x2, y2 = params["box"].unbind(1)
        cols = torch.arange(width, device=images.device)
        rows = torch.arange(height, device=images.device)
        in_x = (cols >= x1[:, None]) & (cols < x2[:, None])  # (B, W)
        in_y = (rows >= y1[:, None]) & (rows < y2[:, None])  # (B, H)
        inside = (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
        return torch.where(inside, images[params["partner"]], images)


def sample_beta(alpha: float, n: int, generator: torch.Generator, beta: float | None = None) -> torch.Tensor:
    """n draws of Beta(alpha, beta) (beta defaults to alpha), float64, from `generator` alone.

    torch.distributions cannot take a generator, so λ = X / (X + Y) with X ~ Gamma(alpha),
    Y ~ Gamma(beta) drawn by Marsaglia–Tsang; computed from log X − log Y so that tiny shapes
    (whose Gamma draws underflow to 0) still give a valid λ."""
    log_x = _log_gamma(alpha, n, generator)
    log_y = _log_gamma(alpha if beta is None else beta, n, generator)
    return torch.sigmoid(log_x - log_y).nan_to_num_(0.5)  # NaN only if both underflow to -inf


def _log_gamma(shape: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """log of n Gamma(shape, 1) draws by Marsaglia & Tsang (2000), vectorised rejection sampling."""
    boost = shape < 1.0  # Gamma(a) = Gamma(a + 1) · U^(1/a) for a < 1
    k = shape + 1.0 if boost else shape
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64)
    pending = torch.ones(n, dtype=torch.bool)
    # Every round draws for the whole batch, so the stream consumed depends only on how many rounds
    # the slowest sample needs; acceptance is ≥ 95 % per round, so that is a handful.
    while bool(pending.any()):
        x = torch.randn(n, generator=generator, dtype=torch.float64)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        positive = v > 0
        log_v = torch.log(torch.where(positive, v, torch.ones_like(v)))
        accept = positive & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
        newly = pending & accept
        out[newly] = math.log(d) + log_v[newly]
        pending &= ~accept
    if boost:
        out += torch.log(torch.rand(n, generator=generator, dtype=torch.float64)) / shape
    return out


@register_augmentation
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
        return {key: _uniform(low, high, row) for key, (low, high), row in zip(keys, ranges, u)}

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


@register_augmentation
class Elastic(Augmentation):
    """Elastic deformation with torchvision `ElasticTransform` semantics.

    Per image: a displacement field, uniform(−1, 1) noise of shape (2, H, W) blurred by a Gaussian
    of std `sigma` (kernel ⌊8·sigma + 1⌋ made odd, reflect padding, as torchvision), scaled by
    alpha / W (x) and alpha / H (y), is added to the identity sampling grid in normalised
    coordinates; bilinear sampling, zero fill. The result equals torchvision's
    `elastic(image, displacement)` image by image. For images under 4·sigma + 1 pixels the kernel
    is shrunk to fit the reflect padding (torchvision raises there).

    Defaults alpha=50.0, sigma=5.0 are torchvision's.

    Draws: one (B, 2, H, W) float32 uniform tensor (x then y displacement noise).
    """

    name: ClassVar[str] = "elastic"

    alpha: float = Field(50.0, ge=0.0)
    sigma: float = Field(5.0, gt=0.0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        n, _, height, width = shape
        # float32: the noise is image-sized, so the device copy is what costs here.
        noise = torch.rand(n, 2, height, width, generator=generator, dtype=torch.float32) * 2.0 - 1.0
        return {"noise": noise}

    def displacement(self, noise: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 2) normalised displacement from (B, 2, H, W) noise, on the noise's device."""
        height, width = noise.shape[-2:]
        kernel = int(8 * self.sigma + 1)
        kernel += 1 - kernel % 2
        kernel = _fit_kernel(kernel, height, width)
        smooth = kornia.filters.gaussian_blur2d(noise, (kernel, kernel), (self.sigma, self.sigma),
                                                border_type="reflect")
        per_axis = torch.tensor([self.alpha / width, self.alpha / height], device=noise.device, dtype=noise.dtype)
        return (smooth * per_axis.view(1, 2, 1, 1)).permute(0, 2, 3, 1)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        n = images.shape[0]
        identity = torch.eye(2, 3, device=images.device, dtype=images.dtype).expand(n, 2, 3)
        grid = F.affine_grid(identity, list(images.shape), align_corners=False) + self.displacement(params["noise"])
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)


@register_augmentation
class Equalization(Augmentation):
    """Histogram equalisation of each image and channel (torchvision's `equalize`, PIL's algorithm).

    The image is quantised to 256 levels as torchvision converts float to uint8, equalised, and
    returned as float (levels k/255). Deterministic: the generator is not used. No parameters.
    """

    name: ClassVar[str] = "equalization"

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return TF.equalize(images)  # vectorised over the batch and channels


@register_augmentation
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
        return {"sigma": _uniform(*self.sigma, u)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        kernel = _fit_kernel(self.kernel_size, *images.shape[-2:])
        sigma = params["sigma"]
        out = kornia.filters.gaussian_blur2d(images, (kernel, kernel), torch.stack([sigma, sigma], 1),
                                             border_type="reflect")
        return out.clamp_(0.0, 1.0)


@register_augmentation
class RandomCrop(Augmentation):
    """Crop at a random location and resize the crop back to the input size.

    Per image: a crop of round(size_fraction·H) × round(size_fraction·W) pixels at a uniformly drawn
    whole-pixel offset, resized to H × W bilinearly (align_corners=False). Since the crop is never
    larger than the image this is an upsampling, and the result equals torchvision's
    `resized_crop(image, top, left, h, w, (H, W))` image by image.

    This is a fixed-size version of torchvision's RandomResizedCrop (which also draws the area and
    aspect ratio); the default size_fraction=0.75 (56 % of the area) is not a torchvision default.

    Draws: one (2, B) uniform tensor: top, left.
    """

    name: ClassVar[str] = "random_crop"

    size_fraction: float = Field(0.75, gt=0.0, le=1.0)

    def crop_size(self, height: int, width: int) -> tuple[int, int]:
        return (max(1, math.floor(self.size_fraction * height + 0.5)),
                max(1, math.floor(self.size_fraction * width + 0.5)))

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        n, _, height, width = shape
        crop_h, crop_w = self.crop_size(height, width)
        u = torch.rand(2, n, generator=generator, dtype=torch.float64)
        return {"top": _whole_pixels(u[0], height - crop_h), "left": _whole_pixels(u[1], width - crop_w)}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = images.shape
        crop_h, crop_w = self.crop_size(height, width)
        ys = _crop_coordinates(params["top"], crop_h, height, images)  # (B, H)
        xs = _crop_coordinates(params["left"], crop_w, width, images)  # (B, W)
        grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # (B, H, W, 2)
        # Every sample point lies inside the image; "border" only guards against rounding.
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.clamp_(0.0, 1.0)


def _whole_pixels(u: torch.Tensor, last: int) -> torch.Tensor:
    """Uniform [0, 1) draws mapped to whole-pixel offsets 0..last, each equally likely."""
    return (u * (last + 1)).long().clamp_(max=last)


def _crop_coordinates(start: torch.Tensor, crop: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised sampling positions of a crop [start, start + crop) resized to `size` pixels.

    Same mapping as `F.interpolate(mode="bilinear", align_corners=False)`: output pixel j samples
    crop position (j + 0.5)·crop/size − 0.5, clamped to the crop so its edges are not blended with
    pixels outside it."""
    j = torch.arange(size, device=like.device, dtype=like.dtype)
    inside = ((j + 0.5) * (crop / size) - 0.5).clamp_(0.0, crop - 1.0)
    position = start.to(like.dtype)[:, None] + inside
    return (position + 0.5) * (2.0 / size) - 1.0


@register_augmentation
class HorizontalFlip(Augmentation):
    """Mirror left to right, each image with probability 1/2 (the drawn coin is the parameter: an
    image whose coin says no is unchanged). Equal to torchvision's `horizontal_flip` on the flipped
    images. Meant as a base augmentation (`training.base_augmentations`), as in the CIFAR-10
    speed-training recipes.

    Draws: one (B,) uniform tensor; an image is flipped where its draw is below 0.5.
    """

    name: ClassVar[str] = "horizontal_flip"

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        return {"flip": torch.rand(shape[0], generator=generator, dtype=torch.float64) < 0.5}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return torch.where(params["flip"].view(-1, 1, 1, 1), images.flip(-1), images)


@register_augmentation
class Translate(Augmentation):
    """Shift by whole pixels, drawn per image and axis in [−pixels, pixels], filling the uncovered
    border by reflection: pad `pixels` on every side (reflect) and crop the input's size at the drawn
    offset. Equal to torchvision's `RandomCrop(size, padding=pixels, padding_mode="reflect")` image
    by image. Default 2 pixels: the translation of the airbench CIFAR-10 recipes (Jordan, 2024);
    4 is the classic ResNet recipe's (with zero padding there).

    Draws: one (2, B) uniform tensor: top, left of the crop in the padded image.
    """

    name: ClassVar[str] = "translate"

    pixels: int = Field(2, ge=0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        u = torch.rand(2, shape[0], generator=generator, dtype=torch.float64)
        offsets = _whole_pixels(u, 2 * self.pixels)
        return {"top": offsets[0], "left": offsets[1]}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        batch, channels, height, width = images.shape
        if self.pixels >= min(height, width):
            raise ValueError(f"translate: pixels={self.pixels} needs images larger than that "
                             f"(reflection), got {height}×{width}")
        if self.pixels == 0 or batch == 0:
            return images
        padded = F.pad(images, (self.pixels,) * 4, mode="reflect")
        rows = params["top"][:, None] + torch.arange(height, device=images.device)  # (B, H)
        cols = params["left"][:, None] + torch.arange(width, device=images.device)  # (B, W)
        every = torch.arange(batch, device=images.device)[:, None, None, None]
        plane = torch.arange(channels, device=images.device)[None, :, None, None]
        return padded[every, plane, rows[:, None, :, None], cols[:, None, None, :]]


@register_augmentation
class Identity(Augmentation):
    """No change: the control that adds an unchanged extra copy of each image (the same tensor is
    returned, not a copy). No parameters; the generator is not used."""

    name: ClassVar[str] = "identity"

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return images


@register_augmentation
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
        area = _uniform(self.scale[0], self.scale[1], u[0]) * (height * width)
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), u[1]))
        box_h = torch.floor(torch.sqrt(area * aspect) + 0.5).long().clamp_(0, max(height - 1, 0))
        box_w = torch.floor(torch.sqrt(area / aspect) + 0.5).long().clamp_(0, max(width - 1, 0))
        top = torch.minimum((u[2] * (height - box_h + 1)).long(), height - box_h)
        left = torch.minimum((u[3] * (width - box_w + 1)).long(), width - box_w)
        return {"box": torch.stack([left, top, left + box_w, top + box_h], 1)}  # x1, y1, x2, y2 (end exclusive)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = images.shape
        x1, y1, x2, y2 = params["box"].unbind(1)
        cols = torch.arange(width, device=images.device)
        rows = torch.arange(height, device=images.device)
        in_x = (cols >= x1[:, None]) & (cols < x2[:, None])
        in_y = (rows >= y1[:, None]) & (rows < y2[:, None])
        inside = (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)
        return torch.where(inside, torch.full_like(images, self.value), images)
