"""Your own images: `root/train/<class>/*` and `root/test/<class>/*`.

Class names are the sorted subdirectory names, the same in train/ and test/. Every non-hidden
file in a class directory must be an image Pillow reads (PNG, JPEG, BMP, TIFF, WebP, …). Images
are kept as grayscale when every one is grayscale, otherwise all become RGB, and all must share
one size, because the sets are held as one tensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from augcam.data.base import DATASETS, ImageSet
from augcam.errors import DataError

__all__ = ["load_image_folder", "read_image"]


def _visible(entries: list[Path]) -> list[Path]:
    # Hidden entries (.DS_Store, .ipynb_checkpoints, …) are tool litter, not data.
    return sorted(p for p in entries if not p.name.startswith("."))


# Pillow modes that hold one gray channel (with alpha for "LA"); everything else becomes RGB.
_GRAY_MODES = {"1", "L", "LA", "La"}
_GRAY_16_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_image(path: Path) -> torch.Tensor:
    """One image as uint8 (C, H, W) with C = 1 (grayscale) or 3 (RGB); alpha is dropped.

    Pillow, not torchvision.io: torchvision 0.29 deprecates its decoders, and Pillow (a
    torchvision dependency) reads more formats.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames != 1:
                raise DataError(f"{path}: has {frames} frames; expected a single image")
            if img.mode in _GRAY_16_BIT:  # 16-bit grayscale PNG/TIFF: keep the high byte
                array = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
            elif img.mode in ("I", "F"):
                raise DataError(f"{path}: unsupported pixel mode {img.mode!r} (32-bit); expected 8-bit images")
            else:
                array = np.asarray(img.convert("L" if img.mode in _GRAY_MODES else "RGB"), dtype=np.uint8)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        # UnidentifiedImageError and truncated-file errors are OSErrors; a few plugins raise the others.
        raise DataError(f"{path}: cannot read the image ({err})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir}: no such directory; an image folder needs train/<class>/ and test/<class>/ subdirectories"
        )
    dirs = {p.name: p for p in _visible(list(split_dir.iterdir())) if p.is_dir()}
    if not dirs:
        raise DataError(f"{split_dir}: no class subdirectories; expected one directory of images per class")
    return dirs


@DATASETS.register("image-folder")
def load_image_folder(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """Images from `root/train/<class>/*` and `root/test/<class>/*`; `download` is ignored
    (there is nothing to download)."""
    if root is None:
        raise DataError(
            "dataset image-folder needs data.root: a directory with train/<class>/ and "
            "test/<class>/ subdirectories of images"
        )
    train_dirs, test_dirs = _class_dirs(root / "train"), _class_dirs(root / "test")
    if set(train_dirs) != set(test_dirs):
        only_train = sorted(set(train_dirs) - set(test_dirs))
        only_test = sorted(set(test_dirs) - set(train_dirs))
        raise DataError(
            f"{root}: train/ and test/ must have the same class directories; "
            f"only in train/: {only_train or 'none'}; only in test/: {only_test or 'none'}"
        )
    classes = tuple(sorted(train_dirs))

    # Read everything first: whether the sets are grayscale depends on every image.
    loaded: dict[str, list[tuple[Path, torch.Tensor, int]]] = {}
    for split, dirs in (("train", train_dirs), ("test", test_dirs)):
        items = []
        for label, name in enumerate(classes):
            files = [p for p in _visible(list(dirs[name].iterdir())) if p.is_file()]
            if not files:
                raise DataError(f"{dirs[name]}: class directory has no images")
            items += [(path, read_image(path), label) for path in files]
        loaded[split] = items

    first_path, first_image, _ = loaded["train"][0]
    size = tuple(first_image.shape[-2:])
    for path, image, _ in loaded["train"] + loaded["test"]:
        if tuple(image.shape[-2:]) != size:
            raise DataError(
                f"{path}: image is {image.shape[-1]}×{image.shape[-2]} (width×height) but "
                f"{first_path} is {size[1]}×{size[0]}; all images of an image folder must "
                "share one size (resize them beforehand)"
            )
    grayscale = all(image.shape[0] == 1 for _, image, _ in loaded["train"] + loaded["test"])
    channels = 1 if grayscale else 3

    def to_set(items: list[tuple[Path, torch.Tensor, int]]) -> ImageSet:
        images = torch.stack([image.expand(channels, -1, -1) for _, image, _ in items]).contiguous()
        labels = torch.tensor([label for _, _, label in items], dtype=torch.int64)
        return ImageSet(images=images, labels=labels, classes=classes)

    return to_set(loaded["train"]), to_set(loaded["test"])
