"""Stratified splits and subsets, and the per-channel statistics used to normalise inputs.

Everything here is a pure function of the labels and a seed, so a study split today is the same
split tomorrow and on another machine. Class counts are allocated by the largest-remainder
method in exact rational arithmetic (no float rounding can move an image between parts), and
images within a class are chosen by a numpy `Generator` permutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from augcam.config import DataConfig

__all__ = ["Split", "stratified_split", "stratified_subset", "make_split", "study_split", "channel_stats"]


@dataclass(frozen=True)
class Split:
    train: torch.Tensor  # indices into the official training set
    val: torch.Tensor  # indices into the official training set, or into the dataset's own validation set
    test: torch.Tensor  # indices into the official test set


def _labels_array(labels: torch.Tensor) -> np.ndarray:
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    return labels.detach().cpu().numpy().astype(np.int64, copy=False)


def _rng(seed: int) -> np.random.Generator:
    # numpy seeds must be non-negative; wrapping keeps every Python int usable and leaves the
    # usual non-negative seeds unchanged.
    return np.random.default_rng(int(seed) % 2**64)


def _largest_remainder(quotas: list[Fraction], total: int) -> list[int]:
    """Integer counts with sum `total`, each the floor or ceiling of its quota: floors first, then
    one more for the largest fractional parts (ties: the earlier class)."""
    counts = [math.floor(q) for q in quotas]
    extra = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:extra]:
        counts[i] += 1
    return counts


def _pick(labels: np.ndarray, fraction_of_class: Fraction, total: int, seed: int) -> np.ndarray:
    """Sorted indices: about `fraction_of_class` of each class, `total` in all."""
    classes, counts = np.unique(labels, return_counts=True)
    quotas = [fraction_of_class * int(n) for n in counts]
    per_class = _largest_remainder(quotas, total)
    rng = _rng(seed)
    picked = []
    # Classes in ascending label order, one generator: the choice depends only on labels and seed.
    for cls, k in zip(classes, per_class):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[:k])
    result = np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
    return result.astype(np.int64)


def _exact(fraction: float) -> Fraction:
    # repr gives the shortest decimal that round-trips: a user's 0.1 becomes exactly 1/10.
    return Fraction(repr(float(fraction)))


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, picked): `picked` holds round(fraction × N) indices, the floor or ceiling of
    fraction × (class size) from each class; both sorted ascending, int64, disjoint, covering all."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"a split fraction must be between 0 and 1, got {fraction}")
    array = _labels_array(labels)
    exact = _exact(fraction)
    picked = _pick(array, exact, round(exact * len(array)), seed)
    mask = np.ones(len(array), dtype=bool)
    mask[picked] = False
    return torch.from_numpy(np.flatnonzero(mask).astype(np.int64)), torch.from_numpy(picked)


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices, sorted ascending, with the class proportions of `labels` (largest remainder).
    ValueError when `size` is negative or larger than the number of labels."""
    array = _labels_array(labels)
    n = len(array)
    if size < 0 or size > n:
        raise ValueError(f"asks for {size} images but the set has {n}")
    if size == n:
        return torch.arange(n, dtype=torch.int64)
    return torch.from_numpy(_pick(array, Fraction(size, n), size, seed))


def make_split(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    val_fraction: float,
    seed: int,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    val_labels: torch.Tensor | None = None,
) -> Split:
    """Train/val from the official training set, test from the official test set.

    With `val_labels` (a dataset's own validation set, `DatasetParts.val`), val indexes that set
    instead: the whole training set is the training part (`val_fraction` does not apply) and
    `val_size` takes a stratified subset of the given validation set.

    The validation split is always taken from the FULL training set, and the optional sizes then
    take stratified subsets of each part (seeds seed+1, seed+2, seed+3). So a quick study's images
    are a subset of the full study's train / val / test parts, never a different split.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    n_train = len(train_labels)
    if val_labels is not None:
        return _split_with_own_val(train_labels, val_labels, test_labels, seed, train_size, val_size, test_size)
    rest, val = stratified_split(train_labels, val_fraction, seed)
    if len(val) == 0 or len(rest) == 0:
        raise ValueError(
            f"val_fraction {val_fraction} of {n_train} training images leaves "
            f"{len(rest)} for training and {len(val)} for validation; both need at least one"
        )
    test = torch.arange(len(test_labels), dtype=torch.int64)

    def subset(
        part: torch.Tensor, labels: torch.Tensor, size: int | None, offset: int, what: str, available: str
    ) -> torch.Tensor:
        if size is None:
            return part
        if size > len(part):
            raise ValueError(f"{what} is {size} but {available} has only {len(part)} images")
        return part[stratified_subset(labels[part], size, seed + offset)]

    split_note = f"the training part (the {n_train} official training images minus val_fraction {val_fraction})"
    return Split(
        train=subset(rest, train_labels, train_size, 1, "train_size", split_note),
        val=subset(
            val,
            train_labels,
            val_size,
            2,
            "val_size",
            f"the validation part (val_fraction {val_fraction} of {n_train} training images)",
        ),
        test=subset(test, test_labels, test_size, 3, "test_size", "the official test set"),
    )


def study_split(
    data: DataConfig, train_labels: torch.Tensor, test_labels: torch.Tensor, val_labels: torch.Tensor | None = None
) -> Split:
    """The split a study makes of its dataset: `make_split` with the study config's `data` section
    (a `DataConfig`: val_fraction, split_seed, train/val/test sizes). The study and the report's
    test images both take their split from here, so they cannot disagree. ValueError as make_split."""
    return make_split(
        train_labels,
        test_labels,
        val_fraction=data.val_fraction,
        seed=data.split_seed,
        train_size=data.train_size,
        val_size=data.val_size,
        test_size=data.test_size,
        val_labels=val_labels,
    )


def _split_with_own_val(
    train_labels: torch.Tensor,
    val_labels: torch.Tensor,
    test_labels: torch.Tensor,
    seed: int,
    train_size: int | None,
    val_size: int | None,
    test_size: int | None,
) -> Split:
    """make_split for a dataset with its own validation set: each part is a whole set or its
    stratified subset (same seeds seed+1, seed+2, seed+3 as the split of a training set)."""

    def part(labels: torch.Tensor, size: int | None, offset: int, what: str, available: str) -> torch.Tensor:
        everything = torch.arange(len(labels), dtype=torch.int64)
        if size is None:
            return everything
        if size > len(labels):
            raise ValueError(f"{what} is {size} but {available} has only {len(labels)} images")
        return stratified_subset(labels, size, seed + offset)

    if len(val_labels) == 0:
        raise ValueError("the dataset's own validation set is empty")
    return Split(
        train=part(train_labels, train_size, 1, "train_size", "the official training set"),
        val=part(val_labels, val_size, 2, "val_size", "the dataset's own validation set"),
        test=part(test_labels, test_size, 3, "test_size", "the official test set"),
    )


def channel_stats(images_uint8: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of images / 255.

    Computed exactly from a 256-bin histogram per channel (integer sums, then one rounding to
    float), so no float64 copy of the images is made and the order of summation cannot matter.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(
            f"channel_stats needs uint8 images (N, C, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}"
        )
    if images_uint8.numel() == 0:
        raise ValueError("channel_stats needs at least one pixel")
    values = np.arange(256, dtype=object)  # python ints: the sums below cannot overflow
    means, stds = [], []
    for c in range(images_uint8.shape[1]):
        hist = torch.bincount(images_uint8[:, c].reshape(-1), minlength=256).numpy().astype(object)
        n = int(hist.sum())
        s1 = int((hist * values).sum())
        s2 = int((hist * values * values).sum())
        mean = Fraction(s1, 255 * n)
        var = Fraction(n * s2 - s1 * s1, (255 * n) ** 2)
        means.append(float(mean))
        stds.append(math.sqrt(var))
    return tuple(means), tuple(stds)
