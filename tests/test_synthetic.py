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
    return sum(
        1
        for r in range(28)
        for c in range(28)
        if m[r][c] and (r == 0 or not m[r - 1][c]) and (c == 0 or not m[r][c - 1])
    )


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


def test_crosses_provide_their_flipped_validation_set():
    from augcam.data import load_dataset_parts

    parts = load_dataset_parts("crosses")
    reference = crosses_splits()
    assert (len(parts.train), len(parts.val), len(parts.test)) == (500, 200, 500)
    for part, expected in ((parts.train, reference.train), (parts.val, reference.val), (parts.test, reference.test)):
        assert torch.equal(part.images, expected.images) and torch.equal(part.masks, expected.masks)
    # the distractor is on the class's training side in train and on the other side at val/test
    for part, side_of_0 in ((parts.train, "left"), (parts.val, "right"), (parts.test, "right")):
        sides = [distractor_side(image) for image in part.images]
        expected = [
            side_of_0 if label == 0 else ("right" if side_of_0 == "left" else "left") for label in part.labels.tolist()
        ]
        assert sides == expected
    for part in (parts.train, parts.val, parts.test):
        for image, mask, label in zip(part.images[:50], part.masks[:50], part.labels[:50].tolist()):
            assert count_crosses(image, mask) == 1 + label


def test_split_with_the_datasets_own_validation_set():
    from augcam.data.splits import make_split

    parts = crosses_splits(train_size=40, val_size=20, test_size=30)
    split = make_split(parts.train.labels, parts.test.labels, val_fraction=0.1, seed=0, val_labels=parts.val.labels)
    assert split.train.tolist() == list(range(40)) and split.val.tolist() == list(range(20))
    assert split.test.tolist() == list(range(30))
    small = make_split(
        parts.train.labels,
        parts.test.labels,
        val_fraction=0.1,
        seed=0,
        train_size=10,
        val_size=8,
        test_size=6,
        val_labels=parts.val.labels,
    )
    assert (len(small.train), len(small.val), len(small.test)) == (10, 8, 6)
    assert int(parts.val.labels[small.val].sum()) == 4  # stratified
    with pytest.raises(ValueError, match="val_size is 21 but the dataset's own validation set has only 20"):
        make_split(
            parts.train.labels, parts.test.labels, val_fraction=0.1, seed=0, val_size=21, val_labels=parts.val.labels
        )


def test_study_validates_on_the_flipped_set_and_carries_the_masks():
    from augcam.pipeline import prepare
    from augcam.pipeline.chain import training_data

    prepared = prepare(
        {
            "name": "t",
            "data": {"dataset": "crosses", "train_size": 40, "val_size": 20, "test_size": 30},
            "augmentations": ["affine"],
            "controls": {"identity": False, "sanity_images": 0, "baseline_replicas": 0},
        }
    )
    reference = crosses_splits()
    data = training_data(prepared, torch.device("cpu"))
    assert torch.equal(data.val_images, reference.val.images[prepared.split.val].float() / 255)
    assert torch.equal(data.val_labels, reference.val.labels[prepared.split.val])
    assert torch.equal(data.train_masks, reference.train.masks[prepared.split.train])
    assert torch.equal(prepared.test_masks, reference.test.masks[prepared.split.test])
