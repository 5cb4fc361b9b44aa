"""Batched data augmentations with per-sample random parameters and explicit randomness.

An augmentation is a frozen pydantic model: its fields are the parameters of the study (the same
for every seed), and calling it on a batch applies it with randomness drawn from the generator it
is given::

    aug = build_augmentation("affine", {"degrees": 10})
    out = aug(images, torch.Generator().manual_seed(0))   # images: float (B, C, H, W) in [0, 1]

Conventions every augmentation here follows (and a user-defined one should):

- All randomness comes from the CPU `torch.Generator` passed in, never from the global RNG, so a
  study is reproducible whatever else the process does.
- Random parameters are drawn on the CPU from that generator and only then moved to the batch's
  device. The generator is thus consumed the same way on any device, and the drawn parameters (and
  so the outputs, up to floating point) do not depend on where the batch lives.
- Each image of the batch gets its own parameters, and every image is augmented (there is no
  "apply with probability p"); only a drawn parameter that happens to be neutral leaves an image
  unchanged.
- The pixel work is batched library code (kornia, torchvision, `grid_sample`); no Python loop over
  the images.

The built-in augmentations split `__call__` into `sample_params` (the random draws, on the CPU) and
`apply` (the deterministic pixel work, on the batch's device), so tests can check the pixel work
against torchvision with the very parameters that were drawn. A user-defined augmentation may do
the same or simply override `__call__`.

Modules: `base` (the `Augmentation` contract, the `AUGMENTATIONS` registry, `build_augmentation`),
`geometric` (affine, elastic, random_crop, horizontal_flip, translate), `photometric`
(color_jitter, equalization, gaussian_blur, identity, random_erasing) and `mixing` (cutmix and the
label-mixing methods mixup, cutmix_targets, saliencymix). The built-in classes are registered
below, in one list, because the registry's order is the order of a study's augmentations; a
user-defined augmentation registers itself with `@register_augmentation`.
"""

from augcam.augment.base import AUGMENTATIONS, Augmentation, build_augmentation, register_augmentation
from augcam.augment.geometric import Affine, Elastic, HorizontalFlip, RandomCrop, Translate
from augcam.augment.mixing import (
    CutMix,
    CutMixTargets,
    MixingAugmentation,
    Mixup,
    SaliencyMix,
    augment_batch,
    sample_beta,
)
from augcam.augment.photometric import ColorJitter, Equalization, GaussianBlur, Identity, RandomErasing

__all__ = [
    "AUGMENTATIONS",
    "Affine",
    "Augmentation",
    "ColorJitter",
    "CutMix",
    "CutMixTargets",
    "Elastic",
    "Equalization",
    "GaussianBlur",
    "HorizontalFlip",
    "Identity",
    "MixingAugmentation",
    "Mixup",
    "RandomCrop",
    "RandomErasing",
    "SaliencyMix",
    "Translate",
    "augment_batch",
    "build_augmentation",
    "register_augmentation",
    "sample_beta",
]

# The registry's order is the order in which a study lists, trains and reports its augmentations.
for _builtin in (
    Affine,
    CutMix,
    ColorJitter,
    Elastic,
    Equalization,
    GaussianBlur,
    RandomCrop,
    HorizontalFlip,
    Translate,
    Identity,
    RandomErasing,
    Mixup,
    CutMixTargets,
    SaliencyMix,
):
    register_augmentation(_builtin)
del _builtin
