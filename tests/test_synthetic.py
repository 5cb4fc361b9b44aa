"""The synthetic `crosses` dataset: classes, masks, the spurious cue and its flip, determinism."""

from __future__ import annotations

import pytest
import torch

from augcam.data import ImageSet, load_dataset
from augcam.data.synthetic import crosses_splits, make_crosses


def count_crosses(image: torch.Tensor, mask: torch.Tensor) -> int:
    """Connected 5×5 boxes of the mask, counted the obvious way: a box's top-left corner is a mask
    pixel with no mask pixel above or to the left."""
    m = mask.tolist()
    return sum(1 for r in range(28) for c in range(28)
               if m[r][c] and (r == 0 or not m[r - 1][c]) and (c == 0 or not m[r][c - 1]))


def distractor_side(image: torch.Tensor) -> str:
    left = bool((image[0, 24:27, 1:5] == 255).all())
    right = bool((image[0, 24:27, 23:27] == 255).all())
    assert left != right
    return "left" if left else "right"


def test_classes_masks_and_cue():
    data = make_crosses(60, seed=7)
    assert data.images.shape == (60, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.masks.shape == (60, 28, 28) and data.masks.dtype == torch.bool
    assert int(data.labels.sum()) == 30
    for image, mask, label in zip(data.images, data.masks, data.labels.tolist()):
        assert count_crosses(image, mask) == 1 + label
        assert int(mask.sum()) == 25 * (1 + label)
        # every bright pixel is a cross (inside the mask) or the distractor (below the ROI band)
        bright = image[0] == 255
        assert bool((bright & ~mask)[:22].sum() == 0)
        assert not bool(mask[22:].any())
        # the "+" fills 9 of each 25-pixel box
        assert int((bright & mask).sum()) == 9 * (1 + label)
        assert distractor_side(image) == ("left" if label == 0 else "right")


def test_flipped_cue_and_protocol_splits():
    splits = crosses_splits(train_size=40, val_size=20, test_size=30, seed=1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 20, 30)
    for part, side_of_0 in ((splits.train, "left"), (splits.val, "right"), (splits.test, "right")):
        for image, label in zip(part.images, part.labels.tolist()):
            other = "right" if side_of_0 == "left" else "left"
            assert distractor_side(image) == (side_of_0 if label == 0 else other)
    assert not torch.equal(splits.val.images[:20], splits.test.images[:20])


def test_deterministic_and_registered():
    a, b = make_crosses(20, seed=3), make_crosses(20, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, make_crosses(20, seed=4).images)
    train, test = load_dataset("crosses")
    assert len(train) == 500 and len(test) == 500 and train.masks is not None


def test_imageset_masks_are_optional_and_checked():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.int64)
    assert ImageSet(images, labels, ("a",)).masks is None
    with pytest.raises(ValueError, match="masks must be bool"):
        ImageSet(images, labels, ("a",), masks=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="masks must be bool"):
        ImageSet(images, labels, ("a",), masks=torch.zeros(2, 1, 4, 4, dtype=torch.bool))
