"""Mixed-sample augmentations: each image takes pixels from a partner image of the same batch.

`cutmix` (:class:`CutMix`) is the study's CutMix and keeps every image's own label. The others can
also mix labels (Won, Bae & Kim's comparison of Mixup/CutMix-family methods with and without label
mixing).

Backwards-compatible extension of `Augmentation`: a :class:`MixingAugmentation` is still called
as ``aug(images, generator) -> images`` (so it plugs into today's training loop, which keeps the
original labels), and adds

    images, targets = aug.mix(images, labels_onehot, generator)    # targets: (B, K) rows summing to 1

which a label-aware training loop calls instead (cross-entropy with probability targets,
``F.cross_entropy(logits, targets)``). :func:`augment_batch` does the dispatch for any
augmentation, mixing or not, so the loop needs one call.

Every mixing method here pastes or blends a *partner* image of the same batch into each image
and so defines, per image, the **own weight** w ∈ [0, 1]: the share of the result that comes
from the image itself (Mixup: λ; box methods: the fraction of pixels outside the box). Then

* ``label_mixing: true``  → target = w · y_self + (1 − w) · y_partner (the papers' soft label);
* ``label_mixing: false`` → target = one-hot of the image contributing the most: y_self when
  w ≥ 1/2 (ties keep the image's own label), y_partner otherwise.

Randomness follows the conventions of `augcam.augment`: per-image parameters drawn on the CPU
from the generator passed in, pixel work batched on the images' device. Every method here chooses
partners with :func:`cyclic_partners`: a random permutation puts the batch in cyclic order and
each image takes the next one, so no image is its own partner (B ≥ 2). λ comes from
:func:`sample_beta`. `augcam.augment` registers these classes, in the study's order.
"""

from __future__ import annotations

import math
from typing import ClassVar

import kornia
import torch
import torch.nn.functional as F
from pydantic import Field

from augcam.augment.base import Augmentation, Params, box_mask, check_inputs, params_to_device

__all__ = [
    "CutMix",
    "MixingAugmentation",
    "Mixup",
    "SaliencyMix",
    "CutMixTargets",
    "augment_batch",
    "cyclic_partners",
    "mixed_targets",
    "sample_beta",
    "spectral_residual_saliency",
]

# Hou & Zhang (2007) as implemented by OpenCV's StaticSaliencySpectralResidual, the saliency
# SaliencyMix (Uddin et al., ICLR 2021) uses: 64×64 working size, 3×3 mean filter of the log
# amplitude, 5×5 Gaussian of sigma 8 on the reconstructed magnitude, both with reflect-101 borders.
SPECTRAL_SIZE = 64
SPECTRAL_BLUR = (5, 8.0)
# ITU-R BT.601 luma (OpenCV's RGB→gray); augcam images are RGB.
_LUMA = (0.299, 0.587, 0.114)


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


def cyclic_partners(n: int, generator: torch.Generator) -> torch.Tensor:
    """Each image's partner index: the next one in a random cyclic order (one `randperm` draw)."""
    order = torch.randperm(n, generator=generator)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


def mixed_targets(
    labels_onehot: torch.Tensor, partner: torch.Tensor, own_weight: torch.Tensor, label_mixing: bool
) -> torch.Tensor:
    """(B, K) targets from one-hot labels, partner indices and own weights (see module docstring)."""
    weight = own_weight.to(device=labels_onehot.device, dtype=labels_onehot.dtype).view(-1, 1)
    partner = partner.to(labels_onehot.device)
    if label_mixing:
        return weight * labels_onehot + (1.0 - weight) * labels_onehot[partner]
    return torch.where(weight >= 0.5, labels_onehot, labels_onehot[partner])


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
        partner = cyclic_partners(n, generator)
        lam = sample_beta(self.alpha, n, generator)
        centre = torch.rand(2, n, generator=generator, dtype=torch.float64)
        cx = (centre[0] * width).long().clamp_(max=width - 1)
        cy = (centre[1] * height).long().clamp_(max=height - 1)
        half = 0.5 * torch.sqrt(1.0 - lam)
        half_w, half_h = (half * width).long(), (half * height).long()
        box = torch.stack(
            [
                (cx - half_w).clamp(min=0),
                (cy - half_h).clamp(min=0),
                (cx + half_w).clamp(max=width),
                (cy + half_h).clamp(max=height),
            ],
            1,
        )
        return {"partner": partner, "lam": lam, "box": box}  # box: x1, y1, x2, y2 (end exclusive)

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = images.shape
        inside = box_mask(params["box"], height, width, images.device)
        return torch.where(inside, images[params["partner"]], images)


class MixingAugmentation(Augmentation):
    """Base of augmentations that mix two images and so can mix their labels.

    Subclasses implement `sample_params` (must include ``partner``) and `apply_with_weight`,
    which returns the augmented images and each image's own weight (float64, on the CPU or the
    images' device)."""

    per_image: ClassVar[bool] = False
    label_mixing: bool = False

    def apply_with_weight(self, images: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement apply_with_weight()")

    def apply(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        return self.apply_with_weight(images, params)[0]

    def mix(
        self, images: torch.Tensor, labels_onehot: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images and their (B, K) targets (rows sum to 1), in the labels' dtype."""
        check_inputs(images, generator)
        if (
            labels_onehot.dim() != 2
            or labels_onehot.shape[0] != images.shape[0]
            or not labels_onehot.is_floating_point()
        ):
            raise ValueError(
                f"labels_onehot must be a float (B, K) tensor with B = {images.shape[0]}, got "
                f"{labels_onehot.dtype} {tuple(labels_onehot.shape)}"
            )
        if images.shape[0] == 0:
            return images, labels_onehot
        params = self.sample_params(tuple(images.shape), generator)
        out, own_weight = self.apply_with_weight(images, params_to_device(params, images))
        return out, mixed_targets(labels_onehot, params["partner"], own_weight, self.label_mixing)


def augment_batch(
    augmentation: Augmentation, images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One call for the training loop: (augmented images, float (B, K) targets) for any augmentation.

    A mixing augmentation decides the targets; any other keeps the one-hot original labels."""
    onehot = F.one_hot(labels, num_classes).to(images.dtype)
    if isinstance(augmentation, MixingAugmentation):
        return augmentation.mix(images, onehot, generator)
    return augmentation(images, generator), onehot


def _box_weight(box: torch.Tensor, height: int, width: int) -> torch.Tensor:
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return 1.0 - area.double() / (height * width)


class Mixup(MixingAugmentation):
    """Mixup (Zhang et al., 2018): x' = λ·x + (1 − λ)·x_partner, λ ~ Beta(alpha, alpha) per image;
    own weight λ. Default alpha=1.0 (λ uniform), the value of the mixup paper's CIFAR-10 runs.

    Draws: a permutation of B (`randperm`), then λ (`sample_beta`)."""

    name: ClassVar[str] = "mixup"

    alpha: float = Field(1.0, gt=0.0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        partner = cyclic_partners(shape[0], generator)
        return {"partner": partner, "lam": sample_beta(self.alpha, shape[0], generator)}

    def apply_with_weight(self, images: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        lam = params["lam"]
        ratio = lam.view(-1, 1, 1, 1)
        out = images * ratio + images[params["partner"]] * (1.0 - ratio)
        return out.clamp_(0.0, 1.0), lam.double()


class CutMixTargets(MixingAugmentation, CutMix):
    """`cutmix` (same parameters, draws and pixels) with targets: own weight = 1 − box area / (H·W),
    the exact pasted fraction (as in Yun et al.'s code, after clipping the box at the borders).

    A separate name so that the `cutmix` entry (which keeps the original label) stays unchanged."""

    name: ClassVar[str] = "cutmix_targets"

    def apply_with_weight(self, images: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = images.shape[-2:]
        return CutMix.apply(self, images, params), _box_weight(params["box"], height, width)


class SaliencyMix(MixingAugmentation):
    """SaliencyMix (Uddin et al., ICLR 2021): CutMix whose box is centred on the most salient
    pixel of the partner (source) image, by spectral-residual static saliency.

    Per image: λ ~ Beta(alpha, alpha); box half-sides ⌊√(1−λ)·W/2⌋ × ⌊√(1−λ)·H/2⌋ (as `cutmix`)
    centred at the argmax of :func:`spectral_residual_saliency` of the partner (first maximum in
    row-major order), clipped at the borders; that box of the partner is pasted at the same place.
    Own weight = 1 − box area / (H·W). Unlike the paper's code (one λ and one permutation per
    batch) λ is drawn per image, following augcam's per-sample convention. Default alpha=1.0.

    Draws: a permutation of B (`randperm`), then λ (`sample_beta`); the centre is not random.
    """

    name: ClassVar[str] = "saliencymix"

    alpha: float = Field(1.0, gt=0.0)

    def sample_params(self, shape: tuple[int, ...], generator: torch.Generator) -> Params:
        partner = cyclic_partners(shape[0], generator)
        return {"partner": partner, "lam": sample_beta(self.alpha, shape[0], generator)}

    def boxes(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        """(B, 4) long boxes x1, y1, x2, y2 (end exclusive) on the images' device."""
        _, _, height, width = images.shape
        partner = params["partner"]
        saliency = spectral_residual_saliency(images[partner])  # (B, H, W)
        peak = saliency.flatten(1).argmax(dim=1)
        cy, cx = peak // width, peak % width
        half = 0.5 * torch.sqrt(1.0 - params["lam"].double())
        half_w, half_h = (half * width).long(), (half * height).long()
        return torch.stack(
            [
                (cx - half_w).clamp(min=0),
                (cy - half_h).clamp(min=0),
                (cx + half_w).clamp(max=width),
                (cy + half_h).clamp(max=height),
            ],
            1,
        )

    def apply_with_weight(self, images: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, height, width = images.shape
        box = self.boxes(images, params)
        inside = box_mask(box, height, width, images.device)
        return torch.where(inside, images[params["partner"]], images), _box_weight(box, height, width)


def spectral_residual_saliency(images: torch.Tensor) -> torch.Tensor:
    """Spectral-residual static saliency (Hou & Zhang, CVPR 2007), batched, (B, C, H, W) → (B, H, W).

    As OpenCV's `StaticSaliencySpectralResidual` (the implementation SaliencyMix calls): luma of
    RGB (or the single channel), bilinear resize to 64×64, 2-D DFT; the log amplitude minus its
    3×3 mean (reflect-101 border) is the spectral residual; inverse DFT of exp(residual)·e^{i·phase};
    magnitude blurred by a 5×5 Gaussian of sigma 8 (reflect-101), squared, divided by its maximum,
    resized bilinearly to H×W. Computed in float64; returned in [0, 1], float64.

    One deviation: a zero amplitude (e.g. an all-black image) has log −inf in OpenCV (NaN
    saliency); here it is clamped to the smallest normal float64, which keeps the map finite.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"spectral_residual_saliency takes (B, 1 or 3, H, W) images, got {tuple(images.shape)}")
    _, channels, height, width = images.shape
    x = images.double()
    if channels == 3:
        luma = torch.tensor(_LUMA, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
        x = (x * luma).sum(dim=1, keepdim=True)
    small = F.interpolate(x, size=(SPECTRAL_SIZE, SPECTRAL_SIZE), mode="bilinear", align_corners=False)
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log(spectrum.abs().clamp_min(torch.finfo(torch.float64).tiny))
    # torch's "reflect" padding is OpenCV's BORDER_REFLECT_101 (the edge pixel is not repeated).
    local_mean = F.avg_pool2d(F.pad(log_amplitude, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    residual = torch.polar(torch.exp(log_amplitude - local_mean), spectrum.angle())
    magnitude = torch.fft.ifft2(residual).abs()
    kernel, sigma = SPECTRAL_BLUR
    magnitude = kornia.filters.gaussian_blur2d(magnitude, (kernel, kernel), (sigma, sigma), border_type="reflect")
    saliency = magnitude.square()
    saliency = saliency / saliency.amax(dim=(-2, -1), keepdim=True)
    return F.interpolate(saliency, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
