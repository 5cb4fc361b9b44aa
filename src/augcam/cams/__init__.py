"""Class activation maps, batched on the model's device.

A CAM method is a subclass of `CAMMethod` that overrides one hook, `channel_weights`; the shared
code captures the target layer's activations, takes the gradient of the target logits with respect
to them (and to nothing else: no parameter gradients are filled), and forms the raw map
``ReLU(Σ_c w_c · A_c)`` at the layer's resolution. `upsample` turns raw maps into input-sized maps
with the reference semantics of pytorch-grad-cam: per-image min-max at the layer's resolution,
bilinear resize, min-max again (both with its 1e-7 guard against division by zero).

Stored CAM sets hold the raw maps; every comparison upsamples them with `upsample`, so a rerun of
the comparison from stored maps gives exactly the same numbers.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from augcam.errors import ConfigError
from augcam.registry import Registry

CAM_METHODS: Registry[type["CAMMethod"]] = Registry("CAM method")

# pytorch-grad-cam divides by (1e-7 + max) so that an all-zero map stays zero instead of NaN.
_NORM_EPS = 1e-7


def register_cam_method(cls: type["CAMMethod"]) -> type["CAMMethod"]:
    return CAM_METHODS.register(cls.name)(cls)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def capture_output(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the outputs of `layer` during the forward passes inside the block; the hook is
    removed on exit, even after an exception."""
    outputs: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        outputs.append(output)
        # The rest of the network gets a copy: some forwards (DenseNet's) apply an in-place ReLU
        # to this output, which would otherwise change the captured activations and gradients.
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def resolve_layer(model: nn.Module, target_layer: nn.Module | str) -> nn.Module:
    if isinstance(target_layer, nn.Module):
        return target_layer
    from augcam.models import get_layer

    return get_layer(model, target_layer)


class CAMMethod:
    """Base class: subclasses set `name` and override `channel_weights`."""

    name: ClassVar[str]

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) activations and gradients → (B, C) weights."""
        raise NotImplementedError

    def raw(self, model: nn.Module, layer: nn.Module, images: torch.Tensor,
            targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: raw maps (B, h, w) at the layer's resolution and the logits (B, K)."""
        with capture_output(layer) as outputs, torch.enable_grad():
            logits = model(images)
        if len(outputs) != 1:
            raise ValueError(f"the target layer ran {len(outputs)} times in one forward pass; "
                             "choose a layer that runs exactly once")
        activations = outputs[0]
        if activations.dim() != 4:
            raise ConfigError(f"model.target_layer: the layer's output has shape {tuple(activations.shape)}; "
                              "a CAM needs a convolutional layer with (batch, channels, height, width) output")
        if targets is None:
            targets = logits.argmax(dim=1)
        # The target score is the raw logit of the target class (pytorch-grad-cam's
        # ClassifierOutputTarget). Samples are independent in eval mode, so the gradient of the
        # sum gives every sample's own gradient in one backward pass.
        score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
        (gradients,) = torch.autograd.grad(score, activations)
        weights = self.channel_weights(activations.detach(), gradients)
        maps = torch.relu((weights[:, :, None, None] * activations.detach()).sum(dim=1))
        return maps, logits.detach()


@register_cam_method
class GradCAM(CAMMethod):
    """Grad-CAM (Selvaraju et al., 2017): channel weight = spatial mean of the gradient."""

    name = "gradcam"

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        return gradients.mean(dim=(2, 3))


def raw_cams(method: str, model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor,
             targets: torch.Tensor | None = None, batch_size: int = 256,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps (N, h, w) at the target layer's resolution and logits (N, K) for `images`.

    `targets` are class indices (N,); None means each image's predicted class. The model is used
    in eval mode and its own mode is restored afterwards; nothing else about it is changed.
    """
    cam = CAM_METHODS.lookup(method, where="cam.method")()
    layer = resolve_layer(model, target_layer)
    device = next(model.parameters()).device
    maps, logits = [], []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            batch_targets = None if targets is None else targets[start:start + batch_size]
            batch_maps, batch_logits = cam.raw(model, layer, batch, batch_targets)
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


def compute(method: str, model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor,
            targets: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
    """Input-sized CAMs (N, H, W) in [0, 1] for `images` (N, C, H, W) by the named method."""
    maps, _ = raw_cams(method, model, target_layer, images, targets, batch_size)
    return upsample(maps, tuple(images.shape[-2:]))


def gradcam(model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor,
            targets: torch.Tensor | None = None, batch_size: int = 256) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) at the input resolution, equal to pytorch-grad-cam's `GradCAM`."""
    return compute("gradcam", model, target_layer, images, targets, batch_size)
