"""Faithfulness of an attribution map to its model, controlled for occlusion robustness.

Removing the pixels a model's attribution ranks highest should hurt that model's confidence more
than removing as many random pixels. A model trained with occlusion-like augmentation (CutMix,
random erasing) is barely hurt by *any* removal, so the plain deletion score would call its maps
unfaithful; subtracting the random-removal drop controls for that. Definitions (per image, true
class y, p(·) = softmax probability of y, x̃ = x with a pixel set replaced by the fill):

* ``drop_top_q``    = p(x) − p(x̃_top),   x̃_top: the k = ⌈q·P/100⌉ highest-attribution pixels removed
* ``drop_random_q`` = mean over `draws` of p(x) − p(x̃_rand), k uniformly random pixels removed
* ``faithfulness_q`` = drop_top_q − drop_random_q
* deletion / insertion curves (Petsiuk et al., RISE, 2018): p(y) after removing (deletion) or
  after restoring onto the fill (insertion) the top ⌈s·P/steps⌉ pixels, s = 0..steps; their AUC
  by the trapezoid rule over the removed fraction in [0, 1].

Conventions: attribution maps are (N, H, W) at the images' size; a "pixel" is a spatial position,
all its channels are removed together. The ranking is by decreasing attribution with ties broken
by the lower flat index (a stable sort), so results do not depend on the sort implementation.
Random pixel sets: for image n and draw d, the k pixels with the smallest keys of
``torch.rand((N, draws, P), generator=generator, dtype=torch.float64)[n, d]`` — images are
processed `batch_size` at a time, drawing each chunk's rows in order, which consumes the CPU
generator exactly like that one (N, draws, P) draw, so results do not depend on `batch_size`.

The fill (what a removed pixel becomes; registry `FILLS`): ``"zero"``; ``"mean"``, the per-channel
dataset mean given as `mean`; ``"blur"``, the image blurred by a Gaussian of `blur_sigma` (reflect
border).
Everything is in the space of the `images` given: `model(images)` must return logits, so a model
that expects normalised inputs is passed wrapped together with its normalisation, and then
"zero" means black only if the images are not normalised. `model` is used as is (put it in eval
mode first) under ``torch.no_grad``. Results are float64 on the images' device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Literal

import kornia
import torch
from torch import Tensor

from augcam.metrics.ranks import region_size
from augcam.registry import Registry

__all__ = [
    "FILLS",
    "removal_fill",
    "removal_order",
    "remove_top",
    "true_class_probability",
    "faithfulness",
    "deletion_insertion",
    "accuracy_under_random_occlusion",
]

Model = Callable[[Tensor], Tensor]
Fill = Literal["zero", "mean", "blur"]
# fn(images (N, C, H, W), *, mean, blur_sigma) -> the (N, C, H, W) values removed pixels take.
FillFunction = Callable[..., Tensor]
FILLS: Registry[FillFunction] = Registry("faithfulness fill")


@FILLS.register("zero")
def zero_fill(images: Tensor, *, mean: Sequence[float] | Tensor | None = None, blur_sigma: float = 5.0) -> Tensor:
    return torch.zeros_like(images)


@FILLS.register("mean")
def mean_fill(images: Tensor, *, mean: Sequence[float] | Tensor | None = None, blur_sigma: float = 5.0) -> Tensor:
    if mean is None:
        raise ValueError("fill 'mean' needs the dataset's per-channel `mean`")
    value = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    if value.shape[1] != images.shape[1]:
        raise ValueError(f"`mean` has {value.shape[1]} channels, the images {images.shape[1]}")
    return value.expand_as(images).clone()


@FILLS.register("blur")
def blur_fill(images: Tensor, *, mean: Sequence[float] | Tensor | None = None, blur_sigma: float = 5.0) -> Tensor:
    if not (math.isfinite(blur_sigma) and blur_sigma > 0):
        raise ValueError(f"blur_sigma must be > 0, got {blur_sigma!r}")
    # ±3 sigma, odd, and small enough for reflect padding (pad < side).
    kernel = min(2 * math.ceil(3 * blur_sigma) + 1, 2 * min(images.shape[-2:]) - 1)
    return kornia.filters.gaussian_blur2d(images, (kernel, kernel), (blur_sigma, blur_sigma), border_type="reflect")


def removal_fill(
    images: Tensor, fill: Fill, *, mean: Sequence[float] | Tensor | None = None, blur_sigma: float = 5.0
) -> Tensor:
    """(N, C, H, W) values that removed pixels take, by the fill registered as `fill` in FILLS."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {tuple(FILLS)}, got {fill!r}")
    return FILLS[fill](images, mean=mean, blur_sigma=blur_sigma)


def removal_order(attributions: Tensor) -> Tensor:
    """(N, P) flat pixel indices by decreasing attribution, ties by lower index."""
    return torch.sort(attributions.flatten(1), dim=1, descending=True, stable=True).indices


def remove_top(images: Tensor, fill_images: Tensor, order: Tensor, k: int) -> Tensor:
    """`images` with the first `k` pixels of each row of `order` replaced by `fill_images`."""
    n, _c, h, w = images.shape
    removed = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
    removed.scatter_(1, order[:, :k], True)
    return torch.where(removed.view(n, 1, h, w), fill_images, images)


def true_class_probability(model: Model, images: Tensor, labels: Tensor) -> Tensor:
    """float64 softmax probability of `labels` for each image."""
    with torch.no_grad():
        logits = model(images)
    return torch.softmax(logits.double(), dim=1).gather(1, labels.view(-1, 1).to(logits.device))[:, 0]


def _check(images: Tensor, labels: Tensor, attributions: Tensor | None) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
    if attributions is not None and attributions.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"attributions must be (N, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(attributions.shape)}"
        )


def _check_batch(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def faithfulness(
    model: Model,
    images: Tensor,
    labels: Tensor,
    attributions: Tensor,
    *,
    generator: torch.Generator,
    percentages: Sequence[float] = (5, 10, 20, 50),
    fill: Fill = "zero",
    mean: Sequence[float] | Tensor | None = None,
    blur_sigma: float = 5.0,
    draws: int = 5,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """``drop_top_q``, ``drop_random_q`` and ``faithfulness_q`` (float64 Tensor[N]) for each q."""
    _check(images, labels, attributions)
    _check_batch(batch_size)
    if draws < 1:
        raise ValueError(f"draws must be ≥ 1, got {draws}")
    n, _, h, w = images.shape
    pixels = h * w
    ks = {q: region_size(q, pixels) for q in percentages}
    names = [f"{kind}_{float(q):g}" for q in percentages for kind in ("drop_top", "drop_random", "faithfulness")]
    out = {name: torch.empty(n, dtype=torch.float64, device=images.device) for name in names}
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y = images[start:stop], labels[start:stop]
        fill_images = removal_fill(x, fill, mean=mean, blur_sigma=blur_sigma)
        order = removal_order(attributions[start:stop]).to(x.device)
        keys = torch.rand((stop - start, draws, pixels), generator=generator, dtype=torch.float64)
        random_order = keys.argsort(dim=2, stable=True).to(x.device)
        base = true_class_probability(model, x, y)
        for q, k in ks.items():
            tag = f"{float(q):g}"
            top = base - true_class_probability(model, remove_top(x, fill_images, order, k), y)
            rand = torch.stack(
                [
                    base - true_class_probability(model, remove_top(x, fill_images, random_order[:, d], k), y)
                    for d in range(draws)
                ]
            ).mean(dim=0)
            out[f"drop_top_{tag}"][start:stop] = top
            out[f"drop_random_{tag}"][start:stop] = rand
            out[f"faithfulness_{tag}"][start:stop] = top - rand
    return out


def deletion_insertion(
    model: Model,
    images: Tensor,
    labels: Tensor,
    attributions: Tensor,
    *,
    steps: int = 20,
    fill: Fill = "zero",
    mean: Sequence[float] | Tensor | None = None,
    blur_sigma: float = 5.0,
    batch_size: int = 256,
) -> dict[str, Tensor]:
    """``deletion_curve`` and ``insertion_curve`` (N, steps + 1), ``deletion_auc`` and
    ``insertion_auc`` (N,): see the module docstring. Low deletion AUC and high insertion AUC
    mean a faithful map."""
    _check(images, labels, attributions)
    _check_batch(batch_size)
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    n, _, h, w = images.shape
    pixels = h * w
    ks = [math.ceil(Fraction(s, steps) * pixels) for s in range(steps + 1)]
    deletion = torch.empty(n, steps + 1, dtype=torch.float64, device=images.device)
    insertion = torch.empty_like(deletion)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y = images[start:stop], labels[start:stop]
        fill_images = removal_fill(x, fill, mean=mean, blur_sigma=blur_sigma)
        order = removal_order(attributions[start:stop]).to(x.device)
        for s, k in enumerate(ks):
            deletion[start:stop, s] = true_class_probability(model, remove_top(x, fill_images, order, k), y)
            # insertion: the top-k pixels of the image on the fill = the image with the rest removed
            insertion[start:stop, s] = true_class_probability(model, remove_top(fill_images, x, order, k), y)

    def auc(curve: Tensor) -> Tensor:
        return (curve[:, 1:] + curve[:, :-1]).sum(dim=1) / (2 * steps)

    return {
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "deletion_auc": auc(deletion),
        "insertion_auc": auc(insertion),
    }


def accuracy_under_random_occlusion(
    model: Model,
    images: Tensor,
    labels: Tensor,
    percentage: float,
    *,
    generator: torch.Generator,
    fill: Fill = "zero",
    mean: Sequence[float] | Tensor | None = None,
    blur_sigma: float = 5.0,
    draws: int = 5,
    batch_size: int = 256,
) -> Tensor:
    """Per image, the fraction of `draws` in which the model still predicts `labels` after
    k = ⌈percentage·P/100⌉ uniformly random pixels are removed (same random sets as
    :func:`faithfulness` for the same generator state); ``.mean()`` is the accuracy."""
    _check(images, labels, None)
    _check_batch(batch_size)
    if draws < 1:
        raise ValueError(f"draws must be ≥ 1, got {draws}")
    n, _, h, w = images.shape
    k = region_size(percentage, h * w)
    correct = torch.empty(n, dtype=torch.float64, device=images.device)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y = images[start:stop], labels[start:stop].to(images.device)
        fill_images = removal_fill(x, fill, mean=mean, blur_sigma=blur_sigma)
        keys = torch.rand((stop - start, draws, h * w), generator=generator, dtype=torch.float64)
        random_order = keys.argsort(dim=2, stable=True).to(x.device)
        hits = torch.zeros(stop - start, dtype=torch.float64, device=x.device)
        with torch.no_grad():
            for d in range(draws):
                hits += (model(remove_top(x, fill_images, random_order[:, d], k)).argmax(dim=1) == y).double()
        correct[start:stop] = hits / draws
    return correct
