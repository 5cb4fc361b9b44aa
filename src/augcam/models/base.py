"""The model registry's types: a builder with its default CAM target layer and, optionally, its
declared linear head; the registry `MODELS` and `register_model`; `get_layer`.

A builder takes the data's shape (input channels, number of classes, and any `model.params` as
keyword arguments) and returns a freshly initialised module; it must not download anything
(weights=None), so every model of a study can start from the same seeded initial weights.

A model may declare its classification head (`LinearHead`) when the logits are a linear function
of the spatial mean of the target layer's output. The gradient of a logit with respect to the
layer is then known without a backward pass, and `augcam.cams` uses it (see `fast path` there).
A model that declares none is checked for one by tracing it (`augcam.models.heads`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from augcam.errors import ConfigError
from augcam.registry import Registry

Builder = Callable[..., nn.Module]  # (in_channels, num_classes, **params) -> nn.Module


@dataclass(frozen=True)
class LinearHead:
    """Declares ``logits = classifier(flatten(pool(layer(...))))`` in eval mode, with nothing but
    flatten and dropout in between; `pool` is a global average pooling and `classifier` an
    `nn.Linear`. All three are dotted module names, as in `model.named_modules()`."""

    layer: str
    pool: str
    classifier: str


@dataclass(frozen=True)
class ModelSpec:
    build: Builder  # (in_channels, num_classes, **params) -> nn.Module
    # Dotted module name, as in `model.named_modules()`; None: found from the model itself
    # (augcam.models.layers.find_target_layer).
    target_layer: str | None = None
    head: LinearHead | None = None  # None: not declared; looked for by tracing the model
    library: str = "augcam"  # who provides the architecture: augcam, torchvision, timm, or a user's module


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, target_layer: str | None = None, head: LinearHead | None = None):
    """Decorator: register `build(in_channels, num_classes, **params) -> nn.Module` under `name`.
    Without `target_layer` the CAM target layer is found automatically."""

    def decorator(build: Builder) -> Builder:
        library = (build.__module__ or "").split(".")[0] or "user"
        MODELS.register(name)(ModelSpec(build, target_layer, head, library))
        return build

    return decorator


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name`, or a ConfigError listing the candidates."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    candidates = [n for n, m in model.named_modules() if n and isinstance(m, (nn.Conv2d, nn.Sequential))]
    near = difflib.get_close_matches(name, list(modules), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    shown = ", ".join(candidates[-8:])
    raise ConfigError(
        f"model.target_layer: {type(model).__name__} has no layer {name!r}{hint} "
        f"(its last convolutional layers and blocks: {shown})"
    )


def first_conv_for(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The same stem convolution for another number of input channels (1-channel data)."""
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        1,
        bias=conv.bias is not None,
    )
