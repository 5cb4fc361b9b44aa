"""Where a CAM reads a model: the layout of a layer's output and the automatic target layer.

A CAM needs maps (B, C, h, w). Convolutional layers give them directly; transformers give them
in other layouts, read here from the output's shape and the model itself, so no user writes a
`reshape_transform`:

* ``nchw`` — (B, C, h, w), convolutional stages;
* ``nhwc`` — (B, h, w, C), channels-last stages (Swin);
* ``tokens`` — (B, N, C), a Vision Transformer's tokens: the first `prefix` tokens (class,
  distillation, register tokens) are dropped and the rest laid back on their (h, w) grid. The
  prefix count and the grid come from the model (timm's ``num_prefix_tokens`` and
  ``patch_embed.grid_size``; torchvision's ``image_size // patch_size`` and its class token), else
  from the input's aspect ratio.

The automatic target layer is the last layer, in the order the forward pass finishes them, whose
output is a spatial map (larger than 1×1, with the channels of the features the head reads) and
still reaches the classifier at its spatial positions: after a ViT's last attention only the class
token feeds the head, so its final norm carries no gradient at the patch tokens and the last
block's first norm is chosen (the layer pytorch-grad-cam's documentation uses for ViTs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from augcam.errors import ConfigError

_MAX_PREFIX_TOKENS = 16  # class + distillation + register tokens in the models we know: ≤ 5


@dataclass(frozen=True)
class LayerLayout:
    kind: str  # "nchw", "nhwc" or "tokens"
    prefix: int = 0  # tokens dropped at the front (kind "tokens")
    grid: tuple[int, int] = (0, 0)  # (h, w) of the maps

    def to_maps(self, output: Tensor) -> Tensor:
        """The layer's output (or a gradient with respect to it) as maps (B, C, h, w)."""
        if self.kind == "nchw":
            return output
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        patches = output[:, self.prefix :, :]
        return patches.reshape(output.shape[0], *self.grid, output.shape[-1]).permute(0, 3, 1, 2)

    def describe(self) -> str:
        if self.kind == "tokens":
            return f"tokens, {self.prefix} prefix token(s) dropped, {self.grid[0]}×{self.grid[1]} grid"
        return "channels-last" if self.kind == "nhwc" else "channels-first"


def _fits(h: int, w: int, input_size: tuple[int, int]) -> bool:
    """(h, w) can be a feature map of an (H, W) input: no larger, and the same stride both ways."""
    height, width = input_size
    return 0 < h <= height and 0 < w <= width and round(height / h) == round(width / w)


def _model_token_grid(model: nn.Module) -> tuple[int, tuple[int, int]] | None:
    """(prefix tokens, grid) as the model states them (timm and torchvision ViTs)."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and hasattr(embed, "grid_size") and hasattr(model, "num_prefix_tokens"):
        return int(model.num_prefix_tokens), tuple(int(s) for s in embed.grid_size)
    if hasattr(model, "class_token") and hasattr(model, "patch_size") and hasattr(model, "image_size"):
        side = int(model.image_size) // int(model.patch_size)
        return 1, (side, side)
    return None


def layer_layout(
    model: nn.Module, shape: tuple[int, ...], input_size: tuple[int, int], *, strict: bool = False
) -> LayerLayout | None:
    """How to read a layer output of `shape` as maps, for inputs of `input_size`; None when it has
    no spatial map (a vector per image; a pooled 1×1 output is still a map). A 4-d output is
    channels-last only when its last three sizes fit (h, w, C) and not (C, h, w)."""
    if len(shape) == 4:
        if _fits(shape[2], shape[3], input_size):
            return LayerLayout("nchw", grid=(shape[2], shape[3]))
        if _fits(shape[1], shape[2], input_size):
            return LayerLayout("nhwc", grid=(shape[1], shape[2]))
        # Maps that fit neither (larger than the input, say) are read channels-first, unless `strict`.
        return None if strict else LayerLayout("nchw", grid=(shape[2], shape[3]))
    if len(shape) != 3:
        return None
    tokens = shape[1]
    stated = _model_token_grid(model)
    if stated is not None:
        prefix, (h, w) = stated
        if tokens == h * w:
            return LayerLayout("tokens", 0, (h, w))
        if tokens == prefix + h * w:
            return LayerLayout("tokens", prefix, (h, w))
    height, width = input_size
    for prefix in range(min(_MAX_PREFIX_TOKENS, tokens - 1) + 1):
        # A grid with the input's aspect ratio: h/w = H/W.
        h = math.isqrt(round((tokens - prefix) * height / width))
        if h > 0 and (tokens - prefix) % h == 0 and _fits(h, (tokens - prefix) // h, input_size):
            return LayerLayout("tokens", prefix, (h, (tokens - prefix) // h))
    return None


def _reaches_head(model: nn.Module, layer: nn.Module, layout: LayerLayout, images: Tensor) -> bool:
    """Whether the features the classifier reads depend on the layer's output at its spatial
    positions (a nonzero gradient of a random projection of them). The classifier's input, not
    the logits: torchvision initialises its ViT head to zero, which would make every gradient zero."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    features: list[Tensor] = []
    outputs: list[Tensor] = []

    def as_leaf(_module, _inputs, output: Tensor) -> Tensor:
        outputs.append(output.detach().requires_grad_(True))
        return outputs[-1].clone()

    handles = [layer.register_forward_hook(as_leaf)]
    if linears:
        handles.append(linears[-1].register_forward_pre_hook(lambda _m, args: features.append(args[0])))
    try:
        with torch.enable_grad():
            logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    if len(outputs) != 1:
        return False
    read = features[-1] if features else logits
    projection = torch.randn(read.shape, generator=torch.Generator().manual_seed(0)).to(read)
    (gradient,) = torch.autograd.grad((read * projection).sum(), outputs[0], allow_unused=True)
    return gradient is not None and bool(layout.to_maps(gradient).abs().amax() > 0)


def spatial_layers(model: nn.Module, images: Tensor) -> list[tuple[str, tuple[int, ...], LayerLayout]]:
    """(name, output shape, layout) of every module with a spatial output, in the order the
    forward pass finishes them; a module that returns its input unchanged (Identity, dropout in
    eval mode) is left out, so a layer is named by the module that computes it."""
    found: list[tuple[str, tuple[int, ...], LayerLayout]] = []
    size = tuple(images.shape[-2:])

    def hook(name):
        def record(_module, inputs, output):
            if not isinstance(output, Tensor) or any(output is x for x in inputs):
                return
            layout = layer_layout(model, tuple(output.shape), size, strict=True)
            if layout is not None:
                found.append((name, tuple(output.shape), layout))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return found


def find_target_layer(model: nn.Module, images: Tensor) -> tuple[str, LayerLayout]:
    """The automatic CAM target layer of `model` (in eval mode) for inputs like `images`."""
    candidates = [c for c in spatial_layers(model, images) if c[2].grid[0] * c[2].grid[1] > 1]
    if not candidates:
        raise ConfigError(
            f"model.target_layer: {type(model).__name__} has no layer with a spatial output larger than 1×1 at "
            f"{images.shape[-2]}×{images.shape[-1]} input; set data.image_size larger or name a layer"
        )
    # The channels of the features the head reads: those of the last spatial layer.
    last_name, last_shape, last_layout = candidates[-1]
    channels = last_layout.to_maps(torch.empty(last_shape, device="meta")).shape[1]
    modules = dict(model.named_modules())
    for name, shape, layout in reversed(candidates):
        if layout.to_maps(torch.empty(shape, device="meta")).shape[1] != channels:
            continue
        if _reaches_head(model, modules[name], layout, images):
            return name, layout
    return last_name, last_layout
