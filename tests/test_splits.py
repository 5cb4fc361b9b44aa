"""Stratified splits and subsets: partitions, class proportions, determinism, nesting; channel stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augcam.data.splits import Split, channel_stats, make_split, stratified_split, stratified_subset


def imbalanced_labels(seed: int = 0) -> torch.Tensor:
    # Class sizes chosen so that most quotas are fractional; shuffled so indices interleave.
    counts = [53, 31, 17, 9, 4, 1]
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return torch.from_numpy(np.random.default_rng(seed).permutation(labels))


def class_counts(labels: torch.Tensor, minlength: int = 6) -> np.ndarray:
    return torch.bincount(labels, minlength=minlength).numpy()


def assert_sorted_int64(indices: torch.Tensor) -> None:
    assert indices.dtype == torch.int64
    assert torch.all(indices[1:] > indices[:-1])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 1 / 3, 0.5, 0.9])
def test_stratified_split_partitions_and_proportions(fraction):
    labels = imbalanced_labels()
    rest, picked = stratified_split(labels, fraction, seed=3)
    assert_sorted_int64(rest)
    assert_sorted_int64(picked)
    assert set(rest.tolist()).isdisjoint(picked.tolist())
    assert sorted(rest.tolist() + picked.tolist()) == list(range(len(labels)))
    assert len(picked) == round(fraction * len(labels))
    exact = fraction * class_counts(labels)
    assert np.all(np.abs(class_counts(labels[picked]) - exact) <= 1)


def test_stratified_split_is_exact_when_it_can_be():
    labels = torch.arange(10).repeat_interleave(100)
    _, picked = stratified_split(labels, 0.3, seed=0)  # 0.3 × 100 is 29.999… in floats
    assert class_counts(labels[picked], 10).tolist() == [30] * 10


def test_stratified_split_is_deterministic_and_seeded():
    labels = imbalanced_labels()
    a = stratified_split(labels, 0.3, seed=7)
    b = stratified_split(labels.clone(), 0.3, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = stratified_split(labels, 0.3, seed=8)
    assert not torch.equal(a[1], c[1])
    assert class_counts(labels[a[1]]).tolist() == class_counts(labels[c[1]]).tolist()


def test_stratified_split_edges():
    labels = imbalanced_labels()
    rest, picked = stratified_split(labels, 0.0, seed=0)
    assert len(picked) == 0 and len(rest) == len(labels)
    rest, picked = stratified_split(labels, 1.0, seed=0)
    assert len(rest) == 0 and len(picked) == len(labels)
    with pytest.raises(ValueError, match=r"a split fraction must be between 0 and 1, got 1\.5"):
        stratified_split(labels, 1.5, seed=0)
    with pytest.raises(ValueError, match="labels must be a 1-D integer tensor"):
        stratified_split(labels.float(), 0.5, seed=0)
    # Any Python int is a seed, negative ones included.
    assert len(stratified_split(labels, 0.5, seed=-1)[1]) == round(0.5 * len(labels))


@pytest.mark.parametrize("size", [1, 7, 50, 114])
def test_stratified_subset(size):
    labels = imbalanced_labels()
    subset = stratified_subset(labels, size, seed=5)
    assert_sorted_int64(subset)
    assert len(subset) == size and subset.max() < len(labels)
    exact = size * class_counts(labels) / len(labels)
    assert np.all(np.abs(class_counts(labels[subset]) - exact) < 1)
    assert torch.equal(subset, stratified_subset(labels, size, seed=5))


def test_stratified_subset_limits():
    labels = imbalanced_labels()
    assert torch.equal(stratified_subset(labels, len(labels), seed=1), torch.arange(len(labels)))
    assert len(stratified_subset(labels, 0, seed=1)) == 0
    with pytest.raises(ValueError, match=f"asks for 200 images but the set has {len(labels)}"):
        stratified_subset(labels, 200, seed=1)
    assert not torch.equal(stratified_subset(labels, 40, seed=1), stratified_subset(labels, 40, seed=2))


def big_labels() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(11)
    return torch.from_numpy(rng.integers(0, 10, 3000)), torch.from_numpy(rng.integers(0, 10, 800))


def test_make_split_full():
    train_labels, test_labels = big_labels()
    split = make_split(train_labels, test_labels, val_fraction=0.1, seed=0)
    assert isinstance(split, Split)
    assert len(split.val) == 300 and len(split.train) == 2700
    assert set(split.train.tolist()).isdisjoint(split.val.tolist())
    assert sorted(split.train.tolist() + split.val.tolist()) == list(range(3000))
    assert torch.equal(split.test, torch.arange(800))
    again = make_split(train_labels, test_labels, val_fraction=0.1, seed=0)
    assert all(torch.equal(getattr(split, f), getattr(again, f)) for f in ("train", "val", "test"))
    other = make_split(train_labels, test_labels, val_fraction=0.1, seed=1)
    assert not torch.equal(split.val, other.val)


def test_make_split_subsets_nest_in_the_full_split():
    train_labels, test_labels = big_labels()
    full = make_split(train_labels, test_labels, val_fraction=0.2, seed=4)
    small = make_split(train_labels, test_labels, val_fraction=0.2, seed=4, train_size=500, val_size=60, test_size=100)
    assert (len(small.train), len(small.val), len(small.test)) == (500, 60, 100)
    for part in ("train", "val", "test"):
        assert set(getattr(small, part).tolist()) <= set(getattr(full, part).tolist())
        assert_sorted_int64(getattr(small, part))
    # Subsets keep the class proportions of their part.
    exact = 500 * class_counts(train_labels[full.train], 10) / len(full.train)
    assert np.all(np.abs(class_counts(train_labels[small.train], 10) - exact) < 1)
    # Asking for a subset of one part leaves the others as in the full split.
    only_train = make_split(train_labels, test_labels, val_fraction=0.2, seed=4, train_size=500)
    assert torch.equal(only_train.val, full.val) and torch.equal(only_train.train, small.train)
    # Any size nests in the full split.
    tiny = make_split(train_labels, test_labels, val_fraction=0.2, seed=4, train_size=50)
    assert set(tiny.train.tolist()) <= set(full.train.tolist())


def test_make_split_sizes_too_large():
    train_labels, test_labels = big_labels()
    with pytest.raises(ValueError, match=r"train_size is 2800 .* has only 2700 images"):
        make_split(train_labels, test_labels, val_fraction=0.1, seed=0, train_size=2800)
    with pytest.raises(ValueError, match=r"val_size is 301 .* has only 300 images"):
        make_split(train_labels, test_labels, val_fraction=0.1, seed=0, val_size=301)
    with pytest.raises(ValueError, match=r"test_size is 900 .* official test set has only 800 images"):
        make_split(train_labels, test_labels, val_fraction=0.1, seed=0, test_size=900)
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(train_labels, test_labels, val_fraction=0.0001, seed=0)  # empty validation part
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(train_labels, test_labels, val_fraction=1.0, seed=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_match_numpy(channels):
    rng = np.random.default_rng(channels)
    images = rng.integers(0, 256, (13, channels, 9, 7), dtype=np.uint8)
    images[:, -1] //= 3  # channels with different statistics
    mean, std = channel_stats(torch.from_numpy(images))
    assert isinstance(mean, tuple) and len(mean) == len(std) == channels
    assert all(type(v) is float for v in mean + std)
    scaled = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-13)


def test_channel_stats_constant_and_bad_input():
    mean, std = channel_stats(torch.full((2, 1, 3, 3), 51, dtype=torch.uint8))
    assert mean == (0.2,) and std == (0.0,)
    with pytest.raises(ValueError, match="channel_stats needs uint8 images"):
        channel_stats(torch.zeros(2, 1, 3, 3))
