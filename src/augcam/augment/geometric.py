"""The geometric built-in augmentations: they move pixels (affine, elastic, crop, flip, translate).

Each one draws its random parameters on the CPU from the generator it is given (`sample_params`,
float64 unless noted) and does the pixel work on the batch's device (`apply`). The draws of one
call happen in a fixed order, documented per class, so the same generator state always gives the
same parameters.

The thesis names the augmentations but gives no parameter values; the defaults follow the
defaults of the matching torchvision transform where it has one, and each class docstring says
where a value comes from. `augcam.augment` registers these classes, in the study's order.
"""

from __future__ import annotations

import math
from typing import ClassVar

import kornia
import torch
import torch.nn.functional as F
from pydantic import Field

from augcam.augment.base import Augmentation, Params, PositiveRange, fit_kernel, uniform

__all__ = ["Affine", "Elastic", "HorizontalFlip", "RandomCrop", "Translate"]


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
        angle = uniform(-self.degrees, self.degrees, u[0])
        tx = torch.round(uniform(-self.translate * width, self.translate * width, u[1]))
        ty = torch.round(uniform(-self.translate * height, self.translate * height, u[2]))
        scale = uniform(*self.scale, u[3])
        shear = uniform(-self.shear, self.shear, u[4])
        theta = _affine_theta(angle, tx, ty, scale, shear, height, width)
        return {"angle": angle, "translate": torch.stack([tx, ty], 1), "scale": scale, "shear": shear, "theta": theta}

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        grid = F.affine_grid(params["theta"], list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)  # bilinear weights sum to 1 only up to rounding


def _affine_theta(
    angle: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
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
        kernel = fit_kernel(kernel, height, width)
        smooth = kornia.filters.gaussian_blur2d(
            noise, (kernel, kernel), (self.sigma, self.sigma), border_type="reflect"
        )
        per_axis = torch.tensor([self.alpha / width, self.alpha / height], device=noise.device, dtype=noise.dtype)
        return (smooth * per_axis.view(1, 2, 1, 1)).permute(0, 2, 3, 1)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        n = images.shape[0]
        identity = torch.eye(2, 3, device=images.device, dtype=images.dtype).expand(n, 2, 3)
        grid = F.affine_grid(identity, list(images.shape), align_corners=False) + self.displacement(params["noise"])
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, 1.0)


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
        return (
            max(1, math.floor(self.size_fraction * height + 0.5)),
            max(1, math.floor(self.size_fraction * width + 0.5)),
        )

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
            raise ValueError(
                f"translate: pixels={self.pixels} needs images larger than that (reflection), got {height}×{width}"
            )
        if self.pixels == 0 or batch == 0:
            return images
        padded = F.pad(images, (self.pixels,) * 4, mode="reflect")
        rows = params["top"][:, None] + torch.arange(height, device=images.device)  # (B, H)
        cols = params["left"][:, None] + torch.arange(width, device=images.device)  # (B, W)
        every = torch.arange(batch, device=images.device)[:, None, None, None]
        plane = torch.arange(channels, device=images.device)[None, :, None, None]
        return padded[every, plane, rows[:, None, :, None], cols[:, None, None, :]]
