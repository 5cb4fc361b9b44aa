"""Class activation maps, batched on the model's device.

    compute(method, model, target_layer, images, targets=None)   # -> Tensor[N, H, W] in [0, 1]
    raw_cams(method, model, target_layer, images, targets=None)  # -> raw maps (N, h, w), logits (N, K)
    gradcam(model, target_layer, images, targets=None)           # = compute("gradcam", ...)

Methods (registry `CAM_METHODS`): gradcam, gradcampp, hirescam, xgradcam, layercam, scorecam,
eigencam (each equal to pytorch-grad-cam's class of the same method) and saliency (vanilla
gradient saliency). A method is a subclass of `CAMMethod` overriding one hook, `channel_weights`
or `layer_map` (see `augcam.cams.base`) and carrying its `display_name` ("Grad-CAM"); users register
their own with `@register_cam_method`. The cascading randomisation check of a method is
`augcam.cams.sanity`.

`upsample` turns raw maps into input-sized maps with the reference semantics of pytorch-grad-cam:
per-image min-max at the layer's resolution, bilinear resize, ReLU, min-max again (both with its
1e-7 guard against division by zero). Stored CAM sets hold the raw maps; every comparison
upsamples them with `upsample`, so a rerun of the comparison from stored maps gives exactly the
same numbers.

Pass ``head=MODELS[name].head`` (a `LinearHead` declared in the model registry) to let gradient
methods skip the backward pass when the target layer is the one the head follows; other layers,
models without a declared head and non-gradient methods take the general path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from augcam.cams import methods as _methods  # noqa: F401  (registers the built-in methods)
from augcam.cams.base import (
    CAM_METHODS,
    CAMMethod,
    LayerCapture,
    cam_method_display_name,
    capture_output,
    eval_mode,
    inference_copy,
    linear_head_classifier,
    register_cam_method,
    resolve_layer,
)
from augcam.models import LinearHead

__all__ = [
    "CAM_METHODS",
    "CAMMethod",
    "LayerCapture",
    "cam_method_display_name",
    "capture_output",
    "compute",
    "eval_mode",
    "gradcam",
    "inference_copy",
    "linear_head_classifier",
    "raw_cams",
    "register_cam_method",
    "resolve_layer",
    "upsample",
]

# pytorch-grad-cam divides by (1e-7 + max) so that an all-zero map stays zero instead of NaN.
_NORM_EPS = 1e-7


def raw_cams(
    method: str,
    model: nn.Module,
    target_layer: nn.Module | str,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    batch_size: int = 256,
    *,
    head: LinearHead | None = None,
    optimize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps (N, h, w) at the target layer's resolution and logits (N, K) for `images`.

    `targets` are class indices (N,); None means each image's predicted class (argmax of the
    logits). `head` is the model's declared `LinearHead` (fast path when it follows the target
    layer), or None. With `optimize` the maps are computed on an `inference_copy` of the model
    (BatchNorm folded, channels_last, frozen parameters: the same maps up to float rounding,
    faster); callers that explain many batches with one model make that copy once themselves and
    pass it with ``optimize=False``. The model is used in eval mode and its own mode is restored
    afterwards; nothing else about it is changed. Maps of the `saliency` method are at the input
    resolution.
    """
    cam = CAM_METHODS.lookup(method, where="cam.method")()
    layer = resolve_layer(model, target_layer)
    if optimize:
        model, layer = inference_copy(model, layer)
    classifier = linear_head_classifier(model, layer, head)
    device = next(model.parameters()).device
    maps, logits = [], []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            batch_targets = None if targets is None else targets[start : start + batch_size]
            batch_maps, batch_logits = cam.raw(
                model, layer, batch, batch_targets, head=classifier, batch_size=batch_size
            )
            maps.append(batch_maps)
            logits.append(batch_logits)
    return torch.cat(maps), torch.cat(logits)


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    shifted = maps - low
    high = shifted.flatten(1).max(dim=1).values[:, None, None]
    return shifted / (_NORM_EPS + high)


def upsample(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Raw maps (N, h, w) → maps (N, H, W) in [0, 1] with pytorch-grad-cam's post-processing."""
    scaled = _min_max(raw.float())
    if tuple(scaled.shape[-2:]) != tuple(size):
        scaled = F.interpolate(scaled[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return _min_max(torch.relu(scaled))


def compute(
    method: str,
    model: nn.Module,
    target_layer: nn.Module | str,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    batch_size: int = 256,
    *,
    head: LinearHead | None = None,
    optimize: bool = True,
) -> torch.Tensor:
    """Input-sized CAMs (N, H, W) in [0, 1] for `images` (N, C, H, W) by the named method
    (`optimize`: see `raw_cams`)."""
    maps, _ = raw_cams(method, model, target_layer, images, targets, batch_size, head=head, optimize=optimize)
    return upsample(maps, tuple(images.shape[-2:]))


def gradcam(
    model: nn.Module,
    target_layer: nn.Module | str,
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    batch_size: int = 256,
    *,
    head: LinearHead | None = None,
    optimize: bool = True,
) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) at the input resolution, equal to pytorch-grad-cam's `GradCAM`."""
    return compute("gradcam", model, target_layer, images, targets, batch_size, head=head, optimize=optimize)
