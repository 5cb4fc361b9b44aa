"""Classifiers of torchvision and timm by name: ``torchvision:resnet50``, ``timm:vit_small_patch16_224``.

Each is built without pretrained weights (nothing is downloaded; local weights: `model.weights`,
augcam.models.weights) for the study's number of classes and input channels, with `model.params`
passed to the library's constructor (e.g. ``img_size: 32, patch_size: 8`` for a timm ViT,
``image_size: 32`` for torchvision's). timm is an optional dependency: ``pip install 'augcam[timm]'``.
The CAM target layer is found from the built model (augcam.models.layers).
"""

from __future__ import annotations

import difflib
import functools

from torch import nn

from augcam.errors import ConfigError
from augcam.models.base import ModelSpec, first_conv_for

LIBRARIES = ("torchvision", "timm")


def _unknown(library: str, arch: str, names: list[str]) -> ConfigError:
    near = difflib.get_close_matches(arch, names, n=3)
    hint = f"; did you mean {', '.join(repr(f'{library}:{n}') for n in near)}?" if near else ""
    return ConfigError(f"model.name: {library} has no classification model {arch!r}{hint}")


@functools.cache
def library_spec(name: str) -> ModelSpec | None:
    """The spec of a ``library:architecture`` name; None for a name without a library prefix."""
    library, sep, arch = name.partition(":")
    if not sep:
        return None
    if library == "torchvision":
        import torchvision.models

        names = torchvision.models.list_models(module=torchvision.models)
        if arch not in names:
            raise _unknown(library, arch, names)
        return ModelSpec(functools.partial(_torchvision_model, arch), library="torchvision")
    if library == "timm":
        try:
            import timm
        except ImportError:
            raise ConfigError(
                f"model.name: {name!r} needs the optional dependency timm: pip install 'augcam[timm]'"
            ) from None
        if not timm.is_model(arch):
            raise _unknown(library, arch, timm.list_models())
        return ModelSpec(functools.partial(_timm_model, arch), library="timm")
    raise ConfigError(f"model.name: unknown model library {library!r} in {name!r} (valid: {', '.join(LIBRARIES)})")


def _torchvision_model(arch: str, in_channels: int, num_classes: int, **params) -> nn.Module:
    import torchvision.models

    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **params)
    if in_channels != 3:
        # The stem: the first convolution that reads the 3 RGB channels (every torchvision
        # classifier registers it before any other convolution).
        stem = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        if stem is None or model.get_submodule(stem).in_channels != 3:
            raise ConfigError(f"model.name: torchvision:{arch} has no 3-channel stem convolution to adapt")
        parent, _, child = stem.rpartition(".")
        setattr(model.get_submodule(parent), child, first_conv_for(model.get_submodule(stem), in_channels))
    return model


def _timm_model(arch: str, in_channels: int, num_classes: int, **params) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_channels, **params)
