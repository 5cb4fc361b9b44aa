"""Mixed-sample augmentations with targets: mixup, saliencymix, cutmix_targets, and the
spectral-residual saliency against a slow NumPy/SciPy per-image implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from augcam.augment import build_augmentation
from augcam.augment.mixing import (
    MixingAugmentation,
    augment_batch,
    spectral_residual_saliency,
)

MIXING = ["mixup", "saliencymix", "cutmix_targets"]


def batch(channels: int, n: int = 6, size: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, channels, size, size + 3, generator=g)  # non-square on purpose
    labels = torch.arange(n) % 4
    return images, F.one_hot(labels, 4).double(), labels


@pytest.mark.parametrize("name", MIXING)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("label_mixing", [True, False])
def test_targets_follow_drawn_parameters(name, channels, label_mixing):
    aug = build_augmentation(name, {"label_mixing": label_mixing})
    images, onehot, _ = batch(channels)
    out, targets = aug.mix(images, onehot, torch.Generator().manual_seed(5))
    params = aug.sample_params(tuple(images.shape), torch.Generator().manual_seed(5))
    partner = params["partner"]
    assert sorted(partner.tolist()) == list(range(len(images))) and bool((partner != torch.arange(6)).all())
    n, _, height, width = images.shape
    if name == "mixup":
        lam = params["lam"]
        expected = lam.view(-1, 1, 1, 1).float() * images + (1 - lam.view(-1, 1, 1, 1).float()) * images[partner]
        torch.testing.assert_close(out, expected.clamp(0, 1))
        own = lam
    else:
        # box methods: every pixel is the image's own or its partner's; own weight = own-pixel share
        from_partner = (out == images[partner]).all(dim=1) & (out != images).any(dim=1)
        from_self = (out == images).all(dim=1)
        assert bool((from_partner | from_self).all())
        own = 1.0 - from_partner.flatten(1).sum(1).double() / (height * width)
        # the pasted region is a box of the drawn size (up to clipping at the borders)
        half = 0.5 * torch.sqrt(1 - params["lam"])
        for i in range(n):
            rows = from_partner[i].any(dim=1).nonzero().flatten()
            cols = from_partner[i].any(dim=0).nonzero().flatten()
            if len(rows):
                assert int(from_partner[i].sum()) == len(rows) * len(cols)
                assert len(rows) <= 2 * int(half[i] * height) and len(cols) <= 2 * int(half[i] * width)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(n, dtype=torch.float64))
    for i in range(n):
        w = float(own[i])
        if label_mixing:
            expected_row = w * onehot[i] + (1 - w) * onehot[partner[i]]
        else:
            expected_row = onehot[i] if w >= 0.5 else onehot[partner[i]]
        # mixup's λ reaches the pixels (and so the weight) in the images' dtype, float32 here
        torch.testing.assert_close(targets[i], expected_row, atol=1e-7 if name == "mixup" else 1e-12, rtol=0)


@pytest.mark.parametrize("name", MIXING)
def test_same_seed_same_output_and_plain_call(name):
    aug = build_augmentation(name, {"label_mixing": True})
    images, onehot, _ = batch(3, seed=1)
    a = aug.mix(images, onehot, torch.Generator().manual_seed(9))
    b = aug.mix(images, onehot, torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # backwards compatible: aug(images, generator) gives the same images, no targets
    assert torch.equal(aug(images, torch.Generator().manual_seed(9)), a[0])
    assert isinstance(aug, MixingAugmentation)


def test_augment_batch_dispatch_and_cutmix_agrees():
    images, _, labels = batch(1, seed=2)
    plain = build_augmentation("cutmix")
    out, targets = augment_batch(plain, images, labels, 4, torch.Generator().manual_seed(3))
    assert torch.equal(targets, F.one_hot(labels, 4).float())
    with_targets = build_augmentation("cutmix_targets")
    out2, _ = augment_batch(with_targets, images, labels, 4, torch.Generator().manual_seed(3))
    assert torch.equal(out, out2)  # same draws, same pixels as the existing cutmix


def test_mixup_weight_one_keeps_image():
    # alpha tiny: λ is almost always 0 or 1; the hard label then follows the majority image
    aug = build_augmentation("mixup", {"alpha": 1e-3})
    images, onehot, _ = batch(3, n=8, seed=4)
    out, targets = aug.mix(images, onehot, torch.Generator().manual_seed(0))
    params = aug.sample_params(tuple(images.shape), torch.Generator().manual_seed(0))
    for i in range(8):
        source = i if params["lam"][i] >= 0.5 else int(params["partner"][i])
        torch.testing.assert_close(out[i], images[source], atol=1e-5, rtol=0)
        assert torch.equal(targets[i], onehot[source])


# --- spectral residual saliency -------------------------------------------------------------------


def bilinear_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize, one output pixel at a time (OpenCV INTER_LINEAR semantics
    for upsampling, torch align_corners=False)."""
    in_h, in_w = image.shape
    out = np.empty((height, width))
    for r in range(height):
        y = max((r + 0.5) * in_h / height - 0.5, 0.0)
        y0 = min(math.floor(y), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        fy = y - y0
        for c in range(width):
            x = max((c + 0.5) * in_w / width - 0.5, 0.0)
            x0 = min(math.floor(x), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            fx = x - x0
            out[r, c] = (1 - fy) * ((1 - fx) * image[y0, x0] + fx * image[y0, x1]) + fy * (
                (1 - fx) * image[y1, x0] + fx * image[y1, x1]
            )
    return out


def oracle_spectral_residual(image: np.ndarray) -> np.ndarray:
    """Hou & Zhang's recipe with NumPy FFTs and SciPy filters ('mirror' = reflect-101)."""
    gray = image[0] if image.shape[0] == 1 else 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    small = bilinear_resize(gray, 64, 64)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum))
    residual = log_amp - scipy.ndimage.uniform_filter(log_amp, size=3, mode="mirror")
    back = np.abs(np.fft.ifft2(np.exp(residual) * np.exp(1j * np.angle(spectrum))))
    taps = np.exp(-((np.arange(5) - 2.0) ** 2) / (2 * 8.0**2))
    taps /= taps.sum()
    back = scipy.ndimage.correlate1d(back, taps, axis=0, mode="mirror")
    back = scipy.ndimage.correlate1d(back, taps, axis=1, mode="mirror")
    saliency = back**2
    saliency /= saliency.max()
    return bilinear_resize(saliency, *image.shape[1:])


@pytest.mark.parametrize("channels", [1, 3])
def test_spectral_residual_matches_slow_numpy(channels):
    images = torch.rand(2, channels, 24, 30, generator=torch.Generator().manual_seed(channels), dtype=torch.float64)
    got = spectral_residual_saliency(images)
    assert got.shape == (2, 24, 30) and got.dtype == torch.float64
    for i in range(2):
        np.testing.assert_allclose(got[i].numpy(), oracle_spectral_residual(images[i].numpy()), rtol=1e-9, atol=1e-12)


def test_spectral_residual_finds_the_odd_blob_and_saliencymix_centres_on_it():
    images = torch.full((2, 1, 28, 28), 0.2)
    images[0, 0, 4:7, 18:21] = 1.0  # blob top-right
    images[1, 0, 20:23, 5:8] = 1.0  # blob bottom-left
    saliency = spectral_residual_saliency(images)
    for i, (r, c) in enumerate([(5, 19), (21, 6)]):
        peak = int(saliency[i].argmax())
        assert abs(peak // 28 - r) <= 2 and abs(peak % 28 - c) <= 2
    aug = build_augmentation("saliencymix")
    params = aug.sample_params((2, 1, 28, 28), torch.Generator().manual_seed(0))
    box = aug.boxes(images, params)
    for i in range(2):  # box of image i is centred on its partner's blob
        x1, y1, x2, y2 = box[i].tolist()
        r, c = [(5, 19), (21, 6)][int(params["partner"][i])]
        assert y1 <= r < y2 or y2 - y1 == 0
        assert x1 <= c < x2 or x2 - x1 == 0
    zero = spectral_residual_saliency(torch.zeros(1, 1, 8, 8))
    assert bool(torch.isfinite(zero).all())
