"""Localisation metrics against Quantus (tie-free maps) and a slow per-image implementation (ties)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from augcam.errors import ConfigError
from augcam.metrics.localisation import LOCALISATION_METRICS, localisation

N, H, W = 8, 7, 9


def maps_and_masks(seed: int, ties: bool):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(N, H, W, generator=g, dtype=torch.float64)
    if ties:
        maps = (maps * 4).floor() / 4
        maps[3] = 0.7  # constant map: every pixel is a maximum
    masks = torch.zeros(N, H, W, dtype=torch.bool)
    for i in range(N):
        top, left = int(torch.randint(0, H - 2, (1,), generator=g)), int(torch.randint(0, W - 3, (1,), generator=g))
        masks[i, top : top + 2 + i % 2, left : left + 3] = True
    masks[5, 0, 0] = True  # a second, detached part
    return maps, masks


def slow(map_: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    values = map_.flatten().tolist()
    inside = mask.flatten().tolist()
    k = sum(inside)
    if k == 0 or any(math.isnan(v) for v in values):
        return dict.fromkeys(LOCALISATION_METRICS, math.nan)
    kth = sorted(values, reverse=True)[k - 1]
    region = [v >= kth for v in values]
    inter = sum(r and m for r, m in zip(region, inside))
    union = sum(r or m for r, m in zip(region, inside))
    top = max(values)
    total = sum(values)
    return {
        "iou": inter / union,
        "intersection_over_prediction": inter / sum(region),
        "intersection_over_target": inter / k,
        "pointing_game": float(any(v == top and m for v, m in zip(values, inside))),
        "energy_pointing_game": sum(v for v, m in zip(values, inside) if m) / total if total else math.nan,
    }


@pytest.mark.parametrize("ties", [False, True])
def test_matches_slow_implementation(ties):
    maps, masks = maps_and_masks(0, ties)
    got = localisation(maps, masks)
    assert list(got) == list(LOCALISATION_METRICS)
    for i in range(N):
        expected = slow(maps[i], masks[i])
        for name, value in expected.items():
            np.testing.assert_allclose(got[name][i].item(), value, rtol=1e-12, equal_nan=True, err_msg=name)
    if ties:  # a tie at the threshold enlarges the predicted region beyond k
        assert got["intersection_over_prediction"][3].item() == pytest.approx(masks[3].sum().item() / (H * W))
        assert got["pointing_game"][3].item() == 1.0


def test_matches_quantus_on_tie_free_maps():
    quantus = pytest.importorskip("quantus", reason="Quantus is not installed (pip install 'augcam[oracles]')")
    maps, masks = maps_and_masks(1, ties=False)
    for i in range(0, N, 2):  # half of the maps peak inside their mask, so both outcomes occur
        maps[i][masks[i]] += 1.0
    a = maps.numpy()[:, None]
    s = masks.numpy()[:, None].astype(float)
    x = np.zeros_like(a)
    y = np.zeros(N, dtype=int)

    def run(metric_class):
        metric = metric_class(abs=False, normalise=False, disable_warnings=True)
        return np.asarray(
            metric(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s, channel_first=True), dtype=float
        )

    got = localisation(maps, masks)
    rank_accuracy = run(quantus.RelevanceRankAccuracy)  # |top-k ∩ M| / k, k = |M|
    np.testing.assert_allclose(got["intersection_over_target"].numpy(), rank_accuracy, rtol=1e-12)
    np.testing.assert_allclose(got["intersection_over_prediction"].numpy(), rank_accuracy, rtol=1e-12)
    # |S| = |M| = k without ties, so IoU = r / (2 − r)
    np.testing.assert_allclose(got["iou"].numpy(), rank_accuracy / (2 - rank_accuracy), rtol=1e-12)
    np.testing.assert_allclose(got["pointing_game"].numpy(), run(quantus.PointingGame), rtol=0)
    np.testing.assert_allclose(got["energy_pointing_game"].numpy(), run(quantus.RelevanceMassAccuracy), rtol=1e-12)
    assert 0 < got["pointing_game"].sum() < N  # the comparison saw both hits and misses


def test_undefined_and_errors():
    maps, masks = maps_and_masks(2, ties=False)
    masks[0] = False
    maps[1, 2, 2] = math.nan
    maps[2] = 0.0
    got = localisation(maps, masks)
    for name in LOCALISATION_METRICS:
        assert math.isnan(got[name][0]) and math.isnan(got[name][1]), name
    assert math.isnan(got["energy_pointing_game"][2])
    assert not math.isnan(got["iou"][2])
    with pytest.raises(ConfigError, match="unknown localisation metric"):
        localisation(maps, masks, ["io"])
    with pytest.raises(ValueError, match="bool"):
        localisation(maps, masks.double())
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        localisation(maps, masks[:, :3])
