"""`crosses`: a synthetic dataset with ground-truth masks and a spurious cue that flips at test time.

After the synthetic task of Viviano et al., "Saliency is a possible red herring when diagnosing
poor generalization" (ICLR 2021): the class is decided by a region of interest (ROI), and a
distractor outside it predicts the class perfectly in training and wrongly at validation/test
time, so a model that learnt the distractor generalises badly and its saliency points outside
the ROI. The masks exist to train such models *not* to use the distractor (`augcam.training.guided`) and
to measure where saliency falls (`augcam.metrics.localisation`).

One image (28×28, 1 channel, uint8):

* background: independent uniform grey levels in 0..BACKGROUND_MAX (weak noise, so a map or a
  model cannot rely on exact zeros);
* class 0: one cross, class 1: two crosses. A cross is a 5×5 "+" (the middle row and column of
  a 5×5 box) at 255, its box drawn uniformly inside rows 0..21 and columns 0..27; two boxes of
  one image never touch (at least one pixel apart);
* the ROI mask is the union of the crosses' 5×5 boxes;
* the distractor: a 3×4 rectangle at 255 in rows 24..26, at columns 1..4 (bottom-left) or
  23..26 (bottom-right), always outside the ROI. With ``spurious="aligned"`` (training) class 0
  has it bottom-left and class 1 bottom-right; with ``"flipped"`` (validation/test) the reverse.

Classes are balanced (labels 0, 1, 0, 1, … shuffled); everything is drawn from one numpy
Generator seeded by ``seed``, so a set is a pure function of (n, seed, spurious).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from augcam.data.base import DATASETS, ImageSet

__all__ = ["CROSSES_CLASSES", "CrossesSplits", "make_crosses", "crosses_splits", "load_crosses"]

CROSSES_CLASSES = ("one cross", "two crosses")
SIZE = 28
CROSS = 5  # side of a cross's box
ROI_ROWS = 22  # crosses live in rows 0..21; the distractor row band 24..26 is below them
BACKGROUND_MAX = 40
DISTRACTOR_ROWS = slice(24, 27)
DISTRACTOR_COLUMNS = {"left": slice(1, 5), "right": slice(23, 27)}

Spurious = Literal["aligned", "flipped"]


def _cross_boxes(rng: np.random.Generator, count: int) -> list[tuple[int, int]]:
    """Top-left corners of `count` 5×5 boxes in the ROI band, pairwise at least one pixel apart."""
    boxes: list[tuple[int, int]] = []
    while len(boxes) < count:
        top = int(rng.integers(0, ROI_ROWS - CROSS + 1))
        left = int(rng.integers(0, SIZE - CROSS + 1))
        # Boxes apart by ≥ 1 pixel: their extents grown by one pixel must not intersect.
        if all(top > t + CROSS or t > top + CROSS or left > lf + CROSS or lf > left + CROSS for t, lf in boxes):
            boxes.append((top, left))
    return boxes


def make_crosses(n: int, *, seed: int, spurious: Spurious = "aligned") -> ImageSet:
    """`n` images of the crosses task with their ROI masks (see the module docstring)."""
    if n < 1:
        raise ValueError(f"make_crosses needs n ≥ 1, got {n}")
    if spurious not in ("aligned", "flipped"):
        raise ValueError(f"spurious must be 'aligned' or 'flipped', got {spurious!r}")
    rng = np.random.default_rng(int(seed) % 2**64)
    labels = rng.permutation(np.arange(n) % 2)
    images = rng.integers(0, BACKGROUND_MAX + 1, size=(n, SIZE, SIZE), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i, label in enumerate(labels):
        for top, left in _cross_boxes(rng, 1 + int(label)):
            images[i, top + CROSS // 2, left : left + CROSS] = 255
            images[i, top : top + CROSS, left + CROSS // 2] = 255
            masks[i, top : top + CROSS, left : left + CROSS] = True
        cue_for_label_0 = "left" if spurious == "aligned" else "right"
        side = cue_for_label_0 if label == 0 else ("right" if cue_for_label_0 == "left" else "left")
        images[i, DISTRACTOR_ROWS, DISTRACTOR_COLUMNS[side]] = 255
    return ImageSet(
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        CROSSES_CLASSES,
        masks=torch.from_numpy(masks),
    )


@dataclass(frozen=True)
class CrossesSplits:
    train: ImageSet  # distractor aligned with the class
    val: ImageSet  # distractor flipped
    test: ImageSet  # distractor flipped


def crosses_splits(train_size: int = 500, val_size: int = 200, test_size: int = 500, seed: int = 0) -> CrossesSplits:
    """Viviano et al.'s protocol: training set with the spurious cue aligned, validation and test
    sets with it flipped; three independent draws (seeds derived from `seed`)."""
    return CrossesSplits(
        train=make_crosses(train_size, seed=3 * seed, spurious="aligned"),
        val=make_crosses(val_size, seed=3 * seed + 1, spurious="flipped"),
        test=make_crosses(test_size, seed=3 * seed + 2, spurious="flipped"),
    )


@DATASETS.register("crosses")
def load_crosses(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train: 500 aligned, test: 500 flipped, val: 200 flipped) of :func:`crosses_splits` with
    seed 0; generated, so `root` and `download` do not apply. The validation set is the dataset's
    own (a study validates on it, with the cue flipped as in the protocol, instead of splitting
    `val_fraction` off the aligned training set)."""
    splits = crosses_splits()
    return splits.train, splits.test, splits.val
