"""The dataset contract (`ImageSet`, `DatasetParts`), the `DATASETS` registry, `load_dataset` and
the file-search helpers the loaders share. `augcam.data`'s docstring describes how they fit together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from augcam.registry import Registry

__all__ = [
    "ImageSet",
    "DatasetParts",
    "DATASETS",
    "load_dataset",
    "load_dataset_parts",
    "data_env_dir",
    "download_dir",
    "search_dirs",
]

# Environment variable naming a directory that holds datasets (one per subdirectory, or directly).
DATA_ENV = "AUGCAM_DATA"


@dataclass(frozen=True)
class ImageSet:
    """A labelled set of images held in memory, as stored: uint8, not normalised or resized."""

    images: torch.Tensor  # uint8, shape (N, C, H, W), C in {1, 3}
    labels: torch.Tensor  # int64, shape (N,)
    classes: tuple[str, ...]  # class names, index = label
    # Optional ground-truth region of interest per image (bool, (N, H, W)), e.g. the synthetic
    # `crosses` set; used only by mask-guided training and localisation metrics.
    masks: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Checked once here so that every consumer can rely on the layout without re-checking.
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(
                f"ImageSet.images must be uint8 with shape (N, 1 or 3, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageSet.labels must be int64 with shape ({self.images.shape[0]},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.masks is not None and (
            self.masks.dtype != torch.bool or self.masks.shape != (self.images.shape[0], *self.images.shape[2:])
        ):
            raise ValueError(
                f"ImageSet.masks must be bool with shape ({self.images.shape[0]}, "
                f"{self.images.shape[2]}, {self.images.shape[3]}), "
                f"got {self.masks.dtype} {tuple(self.masks.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


# (train, test) or (train, test, own validation set)
Loader = Callable[[Path | None, bool], "tuple[ImageSet, ImageSet] | tuple[ImageSet, ImageSet, ImageSet]"]

DATASETS: Registry[Loader] = Registry("dataset")


@dataclass(frozen=True)
class DatasetParts:
    """What a loader gives: the official train and test sets and, for a dataset that defines one,
    its own validation set (used instead of a split of the training set)."""

    train: ImageSet
    test: ImageSet
    val: ImageSet | None = None


def load_dataset_parts(name: str, root: str | Path | None = None, download: bool = False) -> DatasetParts:
    """Every part dataset `name` provides; see the module docstring for `root`."""
    loader = DATASETS.lookup(name, where="data.dataset")
    root_path = Path(root).expanduser() if root is not None and str(root) != "" else None
    parts = loader(root_path, download)
    if len(parts) not in (2, 3):
        raise ValueError(
            f"dataset loader {name!r} must return (train, test) or (train, test, val), got {len(parts)} parts"
        )
    return DatasetParts(*parts)


def load_dataset(name: str, root: str | Path | None = None, download: bool = False) -> tuple[ImageSet, ImageSet]:
    """The official (train, test) sets of dataset `name`; see the module docstring for `root`."""
    parts = load_dataset_parts(name, root, download)
    return parts.train, parts.test


def data_env_dir() -> Path | None:
    """The directory named by $AUGCAM_DATA, or None when it is unset or empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def download_dir() -> Path:
    """Where `download: true` puts files when no root is given. It is also searched (last), so a
    dataset downloaded once is found again by later studies that do not ask to download."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "augcam"


def search_dirs(root: Path | None, layouts: list[str], extra: Sequence[Path] = ()) -> list[tuple[Path, str]]:
    """Candidate directories in search order, each with a label saying why it is searched.

    With a root, only the root with every relative `layouts` entry ("." for the directory
    itself); without one, $AUGCAM_DATA with every layout, then the `extra` places, then the
    download cache with every layout.
    """
    if root is not None:
        # A root the user names is authoritative: data found anywhere else would be a surprise.
        return [(root / layout if layout != "." else root, "data.root") for layout in layouts]
    candidates: list[tuple[Path, str]] = []
    env = data_env_dir()
    if env is not None:
        candidates += [(env / layout if layout != "." else env, f"${DATA_ENV}") for layout in layouts]
    candidates += [(place, "standard place") for place in extra]
    cache = download_dir()
    candidates += [(cache / layout if layout != "." else cache, "download cache") for layout in layouts]
    # The same directory can come up twice (root == $AUGCAM_DATA); search it once.
    seen: set[Path] = set()
    unique = []
    for path, why in candidates:
        if path not in seen:
            seen.add(path)
            unique.append((path, why))
    return unique
