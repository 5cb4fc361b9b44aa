"""Models: a name → a freshly initialised `nn.Module`, its CAM target layer and its head.

    build_model("small_cnn", in_channels=1, num_classes=10, init_seed=0)
    build_model("timm:vit_tiny_patch16_224", 1, 10, 0, params={"img_size": 28, "patch_size": 7})
    build_model("torchvision:resnet50", 3, 10, 0, weights="resnet50.safetensors")

Names are the architectures registered in `MODELS` (augcam's own, and users' with
`@register_model`), or ``torchvision:NAME`` / ``timm:NAME`` for any classifier of those libraries
(augcam.models.libraries). A model without a declared target layer gets one found automatically
(augcam.models.layers), and one without a declared linear head is checked for one by tracing
(augcam.models.heads). Initial weights depend on the init seed alone, or come from a local file
(augcam.models.weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from augcam.errors import ConfigError
from augcam.models import architectures as _architectures  # noqa: F401  (registers the built-in models)
from augcam.models.base import MODELS, Builder, LinearHead, ModelSpec, first_conv_for, get_layer, register_model
from augcam.models.heads import find_linear_head
from augcam.models.layers import LayerLayout, find_target_layer, layer_layout, spatial_layers
from augcam.models.libraries import LIBRARIES, library_spec
from augcam.models.weights import file_sha256, load_weights, read_state_dict

__all__ = [
    "LIBRARIES",
    "MODELS",
    "Builder",
    "LayerLayout",
    "LinearHead",
    "ModelSpec",
    "build_model",
    "find_linear_head",
    "find_target_layer",
    "file_sha256",
    "first_conv_for",
    "get_layer",
    "layer_layout",
    "load_weights",
    "model_spec",
    "read_state_dict",
    "register_model",
    "spatial_layers",
]


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of a ``torchvision:`` / ``timm:`` name; ConfigError otherwise."""
    if name in MODELS or ":" not in name:
        return MODELS.lookup(name, where="model.name")
    return library_spec(name)


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    init_seed: int,
    *,
    params: dict[str, Any] | None = None,
    weights: str | Path | None = None,
) -> nn.Module:
    """A new model whose initial weights depend on `init_seed` alone (global RNG state is
    restored), or are read from the local file `weights` (`load_weights`: a classifier for another
    class count keeps its seeded initialisation)."""
    spec = model_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            model = spec.build(in_channels, num_classes, **(params or {}))
        except TypeError as err:
            if not params:
                raise
            raise ConfigError(f"model.params: {name} does not take {sorted(params)} ({err})") from None
    if weights is not None:
        load_weights(model, weights)
    return model
