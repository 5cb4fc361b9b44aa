"""Mask-guided losses against slow per-image implementations, and their basic properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from augcam.errors import ConfigError
from augcam.models import build_model
from augcam.training.guided import GUIDED_LOSSES, guided_loss, penultimate_features, shuffle_outside

B, H, W = 4, 12, 12


def model_and_batch(num_classes: int = 3, channels: int = 1):
    model = build_model("small_cnn", channels, num_classes, init_seed=0).double().eval()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(B, channels, H, W, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1]) % num_classes
    masks = torch.zeros(B, H, W, dtype=torch.bool)
    masks[:, 2:7, 3:9] = True
    masks[1] = False
    masks[1, 5:, 5:] = True
    return model, images, labels, masks


def slow_gradient(model, image: torch.Tensor, scalar_of_logits) -> torch.Tensor:
    x = image.unsqueeze(0).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(scalar_of_logits(model(x)[0]), x)
    return grad[0]


def test_rrr_matches_slow_loop():
    model, images, labels, masks = model_and_batch()
    got = guided_loss("rrr", model, images, labels, masks)
    total = 0.0
    for i in range(B):
        grad = slow_gradient(model, images[i], lambda z: torch.log_softmax(z, 0).sum())
        outside = ~masks[i]
        total += sum(float(grad[c][outside].square().sum()) for c in range(grad.shape[0]))
    assert got.item() == pytest.approx(total / B, rel=1e-9)


@pytest.mark.parametrize("num_classes", [2, 4])
def test_gradmask_matches_slow_loop(num_classes):
    model, images, labels, masks = model_and_batch(num_classes, channels=3)
    got = guided_loss("gradmask", model, images, labels, masks)
    total = 0.0
    for i in range(B):
        y = int(labels[i])

        def contrast(z):
            if num_classes == 2:
                return (z[0] - z[1]).abs()  # the paper's two-class form
            best_other = max(float(z[j].detach()) for j in range(num_classes) if j != y)
            other = next(j for j in range(num_classes) if j != y and float(z[j].detach()) == best_other)
            return (z[y] - z[other]).abs()

        grad = slow_gradient(model, images[i], contrast)
        total += float(grad.abs()[:, ~masks[i]].sum())
    assert got.item() == pytest.approx(total / B, rel=1e-9)


def test_classify_masked_matches_slow_loop():
    model, images, labels, masks = model_and_batch()
    got = guided_loss("classify_masked", model, images, labels, masks)
    with torch.no_grad():
        expected = (
            sum(float(F.cross_entropy(model((images[i] * masks[i]).unsqueeze(0)), labels[i : i + 1])) for i in range(B))
            / B
        )
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_shuffle_outside_is_a_permutation_of_the_background():
    _, images, _, masks = model_and_batch(channels=3)
    out = shuffle_outside(images, masks, torch.Generator().manual_seed(0))
    again = shuffle_outside(images, masks, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    for i in range(B):
        inside = masks[i]
        assert torch.equal(out[i][:, inside], images[i][:, inside])
        before = images[i][:, ~inside].T.tolist()  # pixels as (c0, c1, c2), channels moved together
        after = out[i][:, ~inside].T.tolist()
        assert sorted(before) == sorted(after) and before != after


def test_actdiff_matches_slow_loop():
    model, images, labels, masks = model_and_batch()
    got = guided_loss("actdiff", model, images, labels, masks, generator=torch.Generator().manual_seed(3))
    shuffled = shuffle_outside(images, masks, torch.Generator().manual_seed(3))

    def features(x):  # small_cnn's penultimate features, written out: pooled conv features
        return model.pool(model.features(x.unsqueeze(0))).flatten()

    with torch.no_grad():
        expected = sum(float((features(images[i]) - features(shuffled[i])).norm()) for i in range(B)) / B
    assert got.item() == pytest.approx(expected, rel=1e-9)
    explicit = guided_loss(
        "actdiff", model, images, labels, masks, generator=torch.Generator().manual_seed(3), feature_layer="classifier"
    )
    assert explicit.item() == pytest.approx(got.item(), rel=1e-12)
    assert penultimate_features(model, images).shape == (B, 64)


def test_zero_when_the_mask_covers_everything():
    model, images, labels, _ = model_and_batch()
    everything = torch.ones(B, H, W, dtype=torch.bool)
    for name in ("actdiff", "gradmask", "rrr"):
        value = guided_loss(name, model, images, labels, everything, generator=torch.Generator().manual_seed(0))
        assert value.item() == 0.0, name
    masked = guided_loss("classify_masked", model, images, labels, everything)
    assert masked.item() == pytest.approx(F.cross_entropy(model(images), labels).item(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(GUIDED_LOSSES))
def test_gradients_reach_the_parameters(name):
    model, images, labels, masks = model_and_batch()
    model.train()  # as in training: BatchNorm in batch mode
    loss = guided_loss(name, model, images, labels, masks, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    conv_weight = model.features[0].weight.grad
    assert conv_weight is not None and float(conv_weight.abs().sum()) > 0
    assert not images.requires_grad  # the caller's tensor is left alone


def test_errors():
    model, images, labels, masks = model_and_batch()
    with pytest.raises(ConfigError, match="unknown guided loss 'rr'"):
        guided_loss("rr", model, images, labels, masks)
    with pytest.raises(ValueError, match="needs a CPU generator"):
        guided_loss("actdiff", model, images, labels, masks)
    with pytest.raises(ValueError, match="masks must be"):
        guided_loss("rrr", model, images, labels, masks[:, :5])
    with pytest.raises(ValueError, match="no nn.Linear"):
        penultimate_features(nn.Conv2d(1, 2, 3), images)
