"""Mask-guided training losses (Viviano et al., "Saliency is a possible red herring when
diagnosing poor generalization", ICLR 2021): ground-truth masks of the region of interest (ROI),
used only at training time, steer what the model may use.

Each loss is a registry entry ``fn(model, images, labels, masks, *, generator, feature_layer)
-> scalar Tensor`` that the training loop adds to the cross-entropy with a configured weight::

    loss = F.cross_entropy(model(x), y) + weight * GUIDED_LOSSES["rrr"](model, x, y, masks, generator=g)

`images` are what the model takes (normalised), `masks` are bool (B, H, W) or (B, 1, H, W), True
inside the ROI. Every loss is a sum over the pixels (and channels) of one image, averaged over
the batch, so the weight does not depend on the batch size. The input-gradient losses build the
graph of the gradient (double backpropagation), so they train the parameters.

* ``actdiff`` — ‖f(x) − f(x̃)‖₂, f the penultimate features, x̃ = x with the pixels outside the
  mask randomly permuted among themselves (:func:`shuffle_outside`): the representation must not
  change when only the background changes. "Penultimate features" = the input of the model's
  last `nn.Linear` (in `model.modules()` order), or of the module named by `feature_layer`
  (e.g. `ModelSpec.head.classifier` of a registered model); x and x̃ go through the model in one
  batch.
* ``gradmask`` (Simpson et al., 2019) — Σ_outside |∂c/∂x|, c = |z_y − max_{j≠y} z_j| the logit
  contrast (for two classes exactly the paper's |z_0 − z_1|).
* ``rrr`` — "right for the right reasons" (Ross et al., 2017): Σ_outside (∂/∂x Σ_k log p_k)².
* ``classify_masked`` — cross-entropy of model(x · mask): the model sees only the ROI (outside
  pixels become 0 in the input space given). Viviano et al.'s "masked" baseline trains on this
  alone, i.e. with the plain cross-entropy's weight set to 0.

`GuidedTraining` is one such configured loss, and `guided_step` the batch loss the training loop
takes instead of the plain cross-entropy when a model is trained with it.

In training mode BatchNorm couples the images of a batch; the definitions above are per image
in eval mode and the tests check them there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augcam.registry import Registry

__all__ = [
    "GUIDED_LOSSES",
    "register_guided_loss",
    "guided_loss",
    "penultimate_features",
    "shuffle_outside",
    "actdiff",
    "gradmask",
    "rrr",
    "classify_masked",
    "GuidedTraining",
    "guided_step",
]


class GuidedLoss(Protocol):
    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        masks: Tensor,
        *,
        generator: torch.Generator | None = None,
        feature_layer: str | None = None,
    ) -> Tensor: ...


GUIDED_LOSSES: Registry[GuidedLoss] = Registry("guided loss")


def register_guided_loss(name: str) -> Callable[[GuidedLoss], GuidedLoss]:
    return GUIDED_LOSSES.register(name)


def guided_loss(
    name: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    """The registered loss `name` (ConfigError listing the valid names if unknown)."""
    fn = GUIDED_LOSSES.lookup(name, where="training.guided.loss")
    return fn(model, images, labels, masks, generator=generator, feature_layer=feature_layer)


def _mask4(masks: Tensor, images: Tensor) -> Tensor:
    """Masks as (B, 1, H, W) bool on the images' device."""
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(
            f"masks must be (B, H, W) or (B, 1, H, W) matching images {tuple(images.shape)}, got {tuple(masks.shape)}"
        )
    return masks.to(device=images.device, dtype=torch.bool)


def _feature_module(model: nn.Module, feature_layer: str | None) -> nn.Module:
    if feature_layer is not None:
        modules = dict(model.named_modules())
        if feature_layer not in modules:
            raise ValueError(f"feature_layer {feature_layer!r} is not a module of {type(model).__name__}")
        return modules[feature_layer]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear; name the penultimate layer with feature_layer")
    return linears[-1]


def penultimate_features(model: nn.Module, images: Tensor, feature_layer: str | None = None) -> Tensor:
    """(B, F) input of the feature module (see module docstring), flattened, with its graph."""
    captured: list[Tensor] = []
    handle = _feature_module(model, feature_layer).register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0])
    )
    try:
        model(images)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(
            f"the feature layer ran {len(captured)} times in one forward pass; name another with feature_layer"
        )
    return captured[0].flatten(1)


def shuffle_outside(images: Tensor, masks: Tensor, generator: torch.Generator) -> Tensor:
    """Each image with its pixels outside the mask permuted uniformly at random among themselves
    (all channels of a pixel move together); ROI pixels stay. Random keys are drawn on the CPU
    from `generator` as ``torch.rand((B, H·W), dtype=float64)``."""
    inside = _mask4(masks, images).flatten(1)  # (B, P)
    b, c, h, w = images.shape
    p = h * w
    keys = torch.rand((b, p), generator=generator, dtype=torch.float64).to(images.device)
    position = torch.arange(p, device=images.device, dtype=torch.float64).expand(b, p)
    # Outside pixels get keys in [0, 1), ROI pixels 2 + their index: sorting puts the outside pixels
    # first (randomly ordered by `keys`, or in index order by `position / p`), then the ROI in
    # index order in both, so pairing the two orders maps the ROI onto itself.
    shuffled = torch.sort(torch.where(inside, 2 + position, keys), dim=1, stable=True).indices
    ordered = torch.sort(torch.where(inside, 2 + position, position / p), dim=1, stable=True).indices
    source = torch.empty_like(ordered).scatter_(1, ordered, shuffled)  # destination ← source pixel
    flat = images.flatten(2)
    return flat.gather(2, source.unsqueeze(1).expand(b, c, p)).view_as(images)


@register_guided_loss("actdiff")
def actdiff(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    if generator is None:
        raise ValueError("actdiff needs a CPU generator to shuffle the pixels outside the mask")
    shuffled = shuffle_outside(images, masks, generator)
    features = penultimate_features(model, torch.cat([images, shuffled]), feature_layer)
    original, background_changed = features.chunk(2)
    return (original - background_changed).norm(dim=1).mean()


def _input_gradient_outside(images: Tensor, masks: Tensor, objective: Callable[[Tensor], Tensor]) -> Tensor:
    """∂ objective(x) / ∂x with its graph, zeroed inside the ROI."""
    x = images if images.requires_grad else images.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(x), x, create_graph=True)
    return gradient.masked_fill(_mask4(masks, images), 0.0)


@register_guided_loss("gradmask")
def gradmask(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    def contrast(x: Tensor) -> Tensor:
        logits = model(x)
        true = logits.gather(1, labels.view(-1, 1))[:, 0]
        others = logits.scatter(1, labels.view(-1, 1), float("-inf")).amax(dim=1)
        return (true - others).abs().sum()  # a sum: each image's gradient is its own term's

    return _input_gradient_outside(images, masks, contrast).abs().flatten(1).sum(dim=1).mean()


@register_guided_loss("rrr")
def rrr(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    def summed_log_probabilities(x: Tensor) -> Tensor:
        return F.log_softmax(model(x), dim=1).sum()

    return _input_gradient_outside(images, masks, summed_log_probabilities).square().flatten(1).sum(dim=1).mean()


@register_guided_loss("classify_masked")
def classify_masked(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    *,
    generator: torch.Generator | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    return F.cross_entropy(model(images * _mask4(masks, images).to(images.dtype)), labels)


@dataclass(frozen=True)
class GuidedTraining:
    """A mask-guided loss added to the cross-entropy: the training loss is
    ce_weight · CE(model(x), y) + weight · GUIDED_LOSSES[loss](model, x, y, masks), x the normalised
    inputs; needs TrainingData.train_masks."""

    loss: str
    weight: float
    ce_weight: float = 1.0
    feature_layer: str | None = None


def guided_step(
    guided: GuidedTraining, model: nn.Module, inputs: Tensor, labels: Tensor, masks: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(logits of the plain inputs, for the train accuracy; the batch's loss). The plain forward
    pass comes first, then the guided loss's own passes. With ce_weight 0 the model must not see the
    plain inputs in training (Viviano's "masked" model sees only x · mask, BatchNorm statistics
    included), so their logits are taken in eval mode without gradients."""
    if guided.ce_weight == 0:
        model.eval()
        with torch.no_grad():
            logits = model(inputs)
        model.train()
    else:
        logits = model(inputs)
    extra = guided.weight * guided_loss(
        guided.loss, model, inputs, labels, masks, generator=generator, feature_layer=guided.feature_layer
    )
    if guided.ce_weight == 0:
        return logits, extra
    return logits, guided.ce_weight * F.cross_entropy(logits, labels) + extra
