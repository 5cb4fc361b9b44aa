"""Faithfulness, deletion/insertion and accuracy under occlusion against slow per-image oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from augcam.metrics.faithfulness import (
    accuracy_under_random_occlusion,
    deletion_insertion,
    faithfulness,
    removal_fill,
)

N, C, H, W = 5, 2, 6, 7
P = H * W


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(C, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * P, 3)).double()
    return model.eval()


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(N, C, H, W, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1, 0])
    attributions = torch.rand(N, H, W, generator=g, dtype=torch.float64)
    attributions[1] = (attributions[1] * 3).floor()  # ties
    attributions[2] = 0.0  # all tied: order = flat index order
    return images, labels, attributions


# --- the slow, obvious implementation ---------------------------------------------------------


def prob(model, image: torch.Tensor, label: int) -> float:
    with torch.no_grad():
        logits = model(image.unsqueeze(0))[0].double().numpy()
    e = np.exp(logits - logits.max())
    return float(e[label] / e.sum())


def fill_of(image: torch.Tensor, fill: str, mean) -> torch.Tensor:
    if fill == "zero":
        return torch.zeros_like(image)
    if fill == "mean":
        return torch.stack([torch.full((H, W), float(m), dtype=image.dtype) for m in mean])
    # blur: SciPy Gaussian per channel, reflect-101 ('mirror'), kernel radius 3 sigma capped to the image
    sigma = 5.0
    radius = min(math.ceil(3 * sigma), min(H, W) - 1)
    return torch.stack(
        [
            torch.from_numpy(scipy.ndimage.gaussian_filter(ch.numpy(), sigma, mode="mirror", radius=radius))
            for ch in image
        ]
    )


def without(image: torch.Tensor, filler: torch.Tensor, pixels) -> torch.Tensor:
    out = image.clone()
    for flat in pixels:
        r, c = divmod(int(flat), W)
        out[:, r, c] = filler[:, r, c]
    return out


def ranking(attribution: torch.Tensor) -> list[int]:
    values = attribution.flatten().tolist()
    return sorted(range(P), key=lambda i: (-values[i], i))


@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
def test_faithfulness_matches_slow_loop(fill):
    model = tiny_model()
    images, labels, attributions = data()
    mean = (0.3, 0.6)
    draws = 3
    got = faithfulness(
        model,
        images,
        labels,
        attributions,
        generator=torch.Generator().manual_seed(11),
        fill=fill,
        mean=mean,
        draws=draws,
        batch_size=2,
    )
    keys = torch.rand((N, draws, P), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    for q in (5, 10, 20, 50):
        k = math.ceil(q * P / 100)
        for n in range(N):
            image, label = images[n], int(labels[n])
            filler = fill_of(image, fill, mean)
            base = prob(model, image, label)
            top = base - prob(model, without(image, filler, ranking(attributions[n])[:k]), label)
            rand = 0.0
            for d in range(draws):
                smallest = sorted(range(P), key=lambda i: keys[n, d, i].item())[:k]
                rand += (base - prob(model, without(image, filler, smallest), label)) / draws
            assert got[f"drop_top_{q}"][n].item() == pytest.approx(top, abs=1e-10)
            assert got[f"drop_random_{q}"][n].item() == pytest.approx(rand, abs=1e-10)
            assert got[f"faithfulness_{q}"][n].item() == pytest.approx(top - rand, abs=1e-10)


def test_batch_size_does_not_change_results():
    model = tiny_model()
    images, labels, attributions = data(1)
    a = faithfulness(model, images, labels, attributions, generator=torch.Generator().manual_seed(2), batch_size=2)
    b = faithfulness(model, images, labels, attributions, generator=torch.Generator().manual_seed(2), batch_size=64)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-12)


def test_deletion_insertion_match_slow_loop():
    model = tiny_model()
    images, labels, attributions = data(2)
    steps = 4
    got = deletion_insertion(
        model, images, labels, attributions, steps=steps, fill="mean", mean=(0.5, 0.1), batch_size=3
    )
    for n in range(N):
        image, label = images[n], int(labels[n])
        filler = fill_of(image, "mean", (0.5, 0.1))
        order = ranking(attributions[n])
        deletion, insertion = [], []
        for s in range(steps + 1):
            k = math.ceil(s * P / steps)
            deletion.append(prob(model, without(image, filler, order[:k]), label))
            insertion.append(prob(model, without(filler, image, order[:k]), label))
        np.testing.assert_allclose(got["deletion_curve"][n].numpy(), deletion, atol=1e-12)
        np.testing.assert_allclose(got["insertion_curve"][n].numpy(), insertion, atol=1e-12)
        assert got["deletion_auc"][n].item() == pytest.approx(np.trapezoid(deletion, dx=1 / steps), abs=1e-12)
        assert got["insertion_auc"][n].item() == pytest.approx(np.trapezoid(insertion, dx=1 / steps), abs=1e-12)
        # endpoints: nothing removed = the image; everything removed = the fill
        assert deletion[0] == pytest.approx(prob(model, image, label))
        assert insertion[0] == pytest.approx(prob(model, filler, label))


def test_accuracy_under_random_occlusion_matches_slow_loop():
    model = tiny_model()
    images, labels, _ = data(3)
    got = accuracy_under_random_occlusion(
        model, images, labels, 20, generator=torch.Generator().manual_seed(4), draws=3, batch_size=2
    )
    keys = torch.rand((N, 3, P), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    k = math.ceil(0.2 * P)
    for n in range(N):
        hits = 0
        for d in range(3):
            smallest = sorted(range(P), key=lambda i: keys[n, d, i].item())[:k]
            with torch.no_grad():
                hits += int(
                    model(without(images[n], torch.zeros_like(images[n]), smallest).unsqueeze(0)).argmax() == labels[n]
                )
        assert got[n].item() == pytest.approx(hits / 3)
    assert 0.0 <= float(got.mean()) <= 1.0


def test_fill_validation():
    images = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="needs the dataset's per-channel"):
        removal_fill(images, "mean")
    with pytest.raises(ValueError, match="fill must be one of"):
        removal_fill(images, "noise")
    with pytest.raises(ValueError, match="channels"):
        removal_fill(images, "mean", mean=(0.1,))
