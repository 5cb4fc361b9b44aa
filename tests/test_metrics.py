"""Map metrics and class KLD against independent per-image oracles (SciPy / NumPy loops)."""

from __future__ import annotations

import math
import warnings
from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest
import scipy.stats
import torch

from augcam.errors import ConfigError
from augcam.metrics import (
    MAP_METRICS,
    METRICS,
    average_ranks,
    class_kld,
    compare_maps,
    overlap_rate,
    register_map_metric,
)

DEFAULT_KEYS = ["mad", "msd", "pearson", "spearman", "overlap_20", "overlap_10", "overlap_5"]


# --- oracles: obvious, slow, one image at a time -----------------------------------------------


def oracle_mad(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean(np.abs(p - q)))


def oracle_msd(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.mean((p - q) ** 2))


def oracle_pearson(p: np.ndarray, q: np.ndarray) -> float:
    with warnings.catch_warnings():  # constant input: SciPy warns and returns nan
        warnings.simplefilter("ignore")
        return float(scipy.stats.pearsonr(p, q).statistic)


def oracle_spearman(p: np.ndarray, q: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(scipy.stats.spearmanr(p, q).statistic)


def oracle_region(p: np.ndarray, percentage: float) -> np.ndarray:
    # k = ceil(Y * N / 100) in decimal arithmetic, independent of the implementation's Fraction.
    k = int((Decimal(repr(percentage)) * len(p) / 100).to_integral_value(rounding=ROUND_CEILING))
    threshold = np.sort(p)[::-1][k - 1]
    return p >= threshold


def oracle_overlap(percentage: float):
    def overlap(p: np.ndarray, q: np.ndarray) -> float:
        a, b = oracle_region(p, percentage), oracle_region(q, percentage)
        return float(np.sum(a & b) / np.sum(a | b))

    return overlap


ORACLES = {
    "mad": oracle_mad,
    "msd": oracle_msd,
    "pearson": oracle_pearson,
    "spearman": oracle_spearman,
    "overlap_20": oracle_overlap(20),
    "overlap_10": oracle_overlap(10),
    "overlap_5": oracle_overlap(5),
}


# --- the shared tester ---------------------------------------------------------------------------


def check_batched(
    metric, oracle, base: torch.Tensor, other: torch.Tensor, *, atol: float = 1e-12, **kwargs
) -> torch.Tensor:
    """Run `metric` over the whole batch and compare it, image by image, with `oracle`.

    The oracle sees each map flattened and converted to float64 NumPy (exactly the same values),
    so the comparison is tight whatever the input dtype. NaN must appear in exactly the same places.
    """
    got = metric(base, other, **kwargs)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert got.shape == (len(base),) and got.device == base.device
    p = base.detach().cpu().double().reshape(len(base), -1).numpy()
    q = other.detach().cpu().double().reshape(len(other), -1).numpy()
    expected = np.array([oracle(p[i], q[i]) for i in range(len(p))], dtype=np.float64)
    got_np = got.cpu().numpy()
    np.testing.assert_array_equal(np.isnan(got_np), np.isnan(expected), err_msg="NaN positions differ")
    np.testing.assert_allclose(got_np, expected, rtol=0, atol=atol, equal_nan=True)
    return got


def compare_metric(name: str):
    """One key of compare_maps, as a metric function for check_batched."""

    def metric(base, other, **kwargs):
        return compare_maps(base, other, metrics=[name], **kwargs)[name]

    return metric


# --- inputs ----------------------------------------------------------------------------------------


def make_maps(kind: str, dtype: torch.dtype, n: int = 16, h: int = 9, w: int = 11, seed: int = 0):
    # Drawn in float64 (full 53-bit values), then converted: float64 cases must not be float32 data.
    g = torch.Generator().manual_seed(seed)
    shape = (n, h, w)
    f64 = torch.float64
    if kind == "random":
        base, other = torch.rand(shape, generator=g, dtype=f64), torch.rand(shape, generator=g, dtype=f64)
        other = 0.6 * base + 0.4 * other  # correlated, so the values are not all near 0
    elif kind == "quantised":  # 5 levels: most pixels tied with many others
        base = torch.randint(0, 5, shape, generator=g) / 4
        other = torch.randint(0, 5, shape, generator=g) / 4
    elif kind == "relu":  # ReLU'd CAMs: large flat zero areas (ties at the bottom, often inside top-Y %)
        base = torch.relu(torch.randn(shape, generator=g, dtype=f64) - 0.8)
        other = torch.relu(0.5 * base + torch.randn(shape, generator=g, dtype=f64) - 1.2)
    elif kind == "constant":  # some constant maps in either batch → undefined correlations
        base, other = torch.rand(shape, generator=g, dtype=f64), torch.rand(shape, generator=g, dtype=f64)
        base[1] = 0.3
        base[2] = 0.0
        other[2] = 0.7
        other[5] = 0.1
        other[7] = 0.0  # all zeros, like a dead ReLU'd CAM
    elif kind == "signed":  # negative values, −0.0 beside +0.0 (equal, other bits), negative ties
        base = torch.randn(shape, generator=g, dtype=f64)
        other = 0.5 * base + torch.randn(shape, generator=g, dtype=f64)
        base[:, 0, :3] = -0.0
        base[:, 1, :3] = 0.0
        other[::2, 0, :4] = -1.5
    else:
        raise AssertionError(kind)
    return base.to(dtype), other.to(dtype)


KINDS = ["random", "quantised", "relu", "constant", "signed"]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture
def clean_registry():
    """Lets a test register map metrics without leaking them into other tests."""
    saved = dict(METRICS)
    yield MAP_METRICS
    METRICS.clear()
    METRICS.update(saved)


# --- agreement with the oracles ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", DEFAULT_KEYS)
def test_compare_maps_matches_oracle(name, kind, dtype):
    base, other = make_maps(kind, dtype)
    check_batched(compare_metric(name), ORACLES[name], base, other)


@pytest.mark.parametrize("name", ["mad", "msd", "pearson", "spearman"])
def test_registered_functions_match_oracle_directly(name):
    base, other = make_maps("relu", torch.float64, n=6, h=28, w=28, seed=3)
    check_batched(MAP_METRICS[name], ORACLES[name], base.flatten(1), other.flatten(1))


@pytest.mark.parametrize("name", ["pearson", "spearman"])
def test_float32_agrees_with_scipy_on_float32_arrays(name):
    """SciPy fed the float32 arrays themselves (its own float32 arithmetic) agrees to 1e-6."""
    base, other = make_maps("random", torch.float32, n=8, h=28, w=28, seed=5)
    got = compare_maps(base, other, metrics=[name])[name].numpy()
    fn = scipy.stats.pearsonr if name == "pearson" else scipy.stats.spearmanr
    expected = [fn(b.ravel(), o.ravel()).statistic for b, o in zip(base.numpy(), other.numpy())]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_correlations_are_not_trivially_equal():
    """Guards the oracle tests: the inputs yield a spread of different correlations."""
    base, other = make_maps("relu", torch.float64)
    result = compare_maps(base, other)
    assert not torch.allclose(result["pearson"], result["spearman"])
    assert result["pearson"].std() > 0.05


@pytest.mark.parametrize("overlap", [1, 2.5, 33.3, 50, 100])
def test_overlap_rate_matches_oracle_for_other_percentages(overlap):
    base, other = make_maps("relu", torch.float32, seed=2)
    check_batched(overlap_rate, oracle_overlap(overlap), base, other, percentage=overlap)


def test_average_ranks_match_scipy_rankdata():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 6, (20, 37), generator=g).double()
    x[0] = 2.0  # one fully tied row
    x[1] = torch.arange(37, 0, -1)  # no ties, descending
    expected = np.stack([scipy.stats.rankdata(row, method="average") for row in x.numpy()])
    np.testing.assert_array_equal(average_ranks(x).numpy(), expected)


# --- undefined values, identities ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_constant_maps_give_nan_correlations(dtype):
    base, other = make_maps("constant", dtype)
    result = compare_maps(base, other)
    expected_nan = torch.zeros(len(base), dtype=torch.bool)
    expected_nan[[1, 2, 5, 7]] = True
    for name in ("pearson", "spearman"):
        assert torch.equal(torch.isnan(result[name]), expected_nan), name
        assert int(torch.isnan(result[name]).sum()) == 4
    for name in ("mad", "msd", "overlap_20", "overlap_10", "overlap_5"):
        assert torch.isfinite(result[name]).all(), name


def test_constant_maps_are_nan_even_when_their_mean_is_inexact():
    # The float64 mean of 784 copies of these values is not exactly the value, so the centred
    # map is tiny noise rather than 0: only an exact constancy test yields NaN (SciPy's behaviour).
    values = torch.tensor([0.3, 2.2, 0.9, 1 / 3], dtype=torch.float64)
    base = values[:, None, None].expand(-1, 28, 28).contiguous()
    assert base.flatten(1).mean(dim=1).ne(values).all()  # the premise of this test
    other = torch.rand(4, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    for first, second in ((base, other), (other, base)):
        result = compare_maps(first, second, metrics=["pearson", "spearman"])
        assert torch.isnan(result["pearson"]).all() and torch.isnan(result["spearman"]).all()


def test_correlation_never_leaves_minus_one_to_one():
    # Identical or opposite maps: rounding puts the raw ratio just above 1 for about a third of them.
    g = torch.Generator().manual_seed(8)
    base = torch.rand(300, 99, dtype=torch.float64, generator=g)
    # Quantised to 2..40 levels, so the rank vectors' tie patterns (and norms) differ row by row.
    levels = torch.randint(2, 41, (300, 1), generator=g)
    base[150:] = torch.floor(base[150:] * levels[150:])
    for sign in (1, -1):
        result = compare_maps(base, sign * base, metrics=["pearson", "spearman"])
        for name, r in result.items():
            assert (r.abs() <= 1).all(), name
            torch.testing.assert_close(r, torch.full_like(r, sign), rtol=0, atol=1e-12)


def test_nan_pixels_give_nan():
    base, other = make_maps("random", torch.float64, n=4)
    other[2, 3, 4] = math.nan
    result = compare_maps(base, other)
    for name, value in result.items():
        assert torch.isnan(value[2]), name
        assert not torch.isnan(value[[0, 1, 3]]).any(), name


@pytest.mark.parametrize("kind", ["random", "quantised", "relu"])
def test_identical_maps(kind):
    base, _ = make_maps(kind, torch.float32)
    result = compare_maps(base, base.clone())
    ones = torch.ones(len(base), dtype=torch.float64)
    for name in ("pearson", "spearman", "overlap_20", "overlap_10", "overlap_5"):
        torch.testing.assert_close(result[name], ones, rtol=0, atol=1e-12, msg=name)
    for name in ("mad", "msd"):
        assert torch.equal(result[name], torch.zeros_like(ones)), name


def test_reversed_maps_have_correlation_minus_one():
    base = torch.rand(5, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    result = compare_maps(base, -base, metrics=["pearson", "spearman"])
    torch.testing.assert_close(result["pearson"], -torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(result["spearman"], -torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)


# --- Overlap Rate ---------------------------------------------------------------------------------


def test_overlap_ties_enlarge_region_hand_computed():
    # P = 10, Y = 20 → k = 2. Base: 2nd largest is 4, tied three times → region {0, 1, 2, 3}
    # (40 %, not 20 %). Other: top two are 9 and 4 → region {3, 4}. IoU = |{3}| / |{0..4}| = 1/5.
    base = torch.tensor([[5.0, 4, 4, 4, 1, 0, 0, 0, 0, 0]])
    other = torch.tensor([[0.0, 0, 0, 4, 9, 1, 0, 0, 0, 0]])
    assert overlap_rate(base, other, 20).item() == pytest.approx(0.2, abs=1e-15)
    # Y = 10 → k = 1: regions {0} and {4}, disjoint.
    assert overlap_rate(base, other, 10).item() == 0.0


def test_overlap_zero_flat_area_joins_region():
    # A ReLU'd map with only 2 positive pixels: its top 50 % is every pixel (all zeros tie).
    base = torch.tensor([[3.0, 1, 0, 0, 0, 0, 0, 0]])
    other = torch.tensor([[0.0, 0, 0, 0, 8, 7, 6, 5]])
    # base region: all 8; other region (k = 4): {4, 5, 6, 7} → IoU 4 / 8.
    assert overlap_rate(base, other, 50).item() == 0.5


@pytest.mark.parametrize(
    "percentage,pixels,k",
    [(20, 50, 10), (10, 784, 79), (7, 100, 7), (2.2, 1500, 33), (5, 1, 1), (100, 37, 37), (0.01, 784, 1)],
)
def test_overlap_region_size_is_exact_ceiling(percentage, pixels, k):
    # Base ranks pixels 0 < 1 < ... < P−1; other swaps the values at the k-th and (k+1)-th largest.
    # With exactly k pixels per region the IoU is (k−1)/(k+1); one pixel too many or too few
    # would give a different value (e.g. 1 for k + 1).
    base = torch.arange(pixels, dtype=torch.float64)[None]
    other = base.clone()
    if k < pixels:
        other[0, [pixels - k - 1, pixels - k]] = other[0, [pixels - k, pixels - k - 1]]
        expected = (k - 1) / (k + 1)
    else:
        expected = 1.0
    assert overlap_rate(base, other, percentage).item() == pytest.approx(expected, abs=1e-15)


def test_overlap_100_percent_is_one():
    base, other = make_maps("random", torch.float32)
    assert torch.equal(overlap_rate(base, other, 100), torch.ones(len(base), dtype=torch.float64))
    result = compare_maps(base, other, overlap_percentages=[100])
    assert torch.equal(result["overlap_100"], torch.ones(len(base), dtype=torch.float64))


@pytest.mark.parametrize("percentage", [0, -5, 100.5, 1e9, math.nan, math.inf, "10"])
def test_invalid_percentage_raises(percentage):
    base, other = make_maps("random", torch.float32, n=3)
    with pytest.raises(ValueError, match="percentage"):
        overlap_rate(base, other, percentage)
    with pytest.raises(ValueError, match="percentage"):
        compare_maps(base, other, overlap_percentages=[10, percentage])


def test_overlap_keys_are_formatted_with_g():
    base, other = make_maps("random", torch.float32, n=3)
    result = compare_maps(base, other, overlap_percentages=[20.0, 7.5, 100])
    assert list(result)[-3:] == ["overlap_20", "overlap_7.5", "overlap_100"]
    with pytest.raises(ValueError, match="twice"):
        compare_maps(base, other, overlap_percentages=[20, 20.0])


# --- compare_maps: shapes, chunking, selection, registry ----------------------------------------


def test_default_keys_and_dtype():
    base, other = make_maps("random", torch.float32, n=5)
    result = compare_maps(base, other)
    assert list(result) == DEFAULT_KEYS
    for value in result.values():
        assert value.dtype == torch.float64 and value.shape == (5,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_accepted(dtype):
    base, other = make_maps("quantised", dtype, n=5)
    got = compare_maps(base, other)
    want = compare_maps(base.double(), other.double())  # the conversion is exact
    for name in DEFAULT_KEYS:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
def test_chunked_equals_unchunked(kind):
    base, other = make_maps(kind, torch.float32, n=17)
    small = compare_maps(base, other, chunk_size=3)
    large = compare_maps(base, other, chunk_size=10_000)
    assert list(small) == list(large)
    for name in small:
        torch.testing.assert_close(small[name], large[name], rtol=0, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("group_pixels", [1, 2 * 3 * 99, 10**9])
def test_sort_groups_do_not_change_results(group_pixels, monkeypatch):
    # One chunk per group, two chunks per group (the last group short), all chunks in one group.
    from augcam.metrics import maps

    base, other = make_maps("relu", torch.float32, n=16)
    expected = compare_maps(base, other, chunk_size=16)
    monkeypatch.setattr(maps, "SORT_GROUP_PIXELS", group_pixels)
    got = compare_maps(base, other, chunk_size=3)
    for name in expected:  # (other chunk sizes may sum the float64 rows in another order)
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-12, equal_nan=True)


def test_metrics_see_bounded_chunks(clean_registry):
    seen: list[tuple[int, torch.dtype]] = []

    @register_map_metric("spy")
    def spy(base, other):
        seen.append((len(base), base.dtype))
        assert base.dim() == 2 and base.shape == other.shape
        return base.sum(dim=1)

    base, other = make_maps("random", torch.float32, n=11)
    result = compare_maps(base, other, chunk_size=4)
    assert seen == [(4, torch.float64), (4, torch.float64), (3, torch.float64)]
    torch.testing.assert_close(result["spy"], base.flatten(1).double().sum(1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_results_do_not_depend_on_the_number_of_threads(kind):
    # torch splits CPU work over its threads; no result may depend on how.
    base, other = make_maps(kind, torch.float32, n=9)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 3):
            torch.set_num_threads(count)
            results.append(compare_maps(base, other))
    finally:
        torch.set_num_threads(threads)
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("kind", KINDS)
def test_other_devices_code_path_agrees(kind, monkeypatch):
    # Without the CPU shortcuts (NumPy's sort of packed keys, skipping the sign fix-up of
    # non-negative maps) the code is that of a GPU: torch.sort of the keys.
    from augcam.metrics import ranks

    base, other = make_maps(kind, torch.float32)
    expected = compare_maps(base, other)
    monkeypatch.setattr(ranks, "host_shortcuts", lambda device: False)
    got = compare_maps(base, other)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, equal_nan=True)


def test_three_d_and_flat_inputs_agree():
    base, other = make_maps("relu", torch.float32)
    maps = compare_maps(base, other)
    flat = compare_maps(base.flatten(1), other.flatten(1))
    for name in maps:
        torch.testing.assert_close(maps[name], flat[name], rtol=0, atol=0, equal_nan=True)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 7, 7\).*\(4, 7, 8\)"):
        compare_maps(torch.rand(4, 7, 7), torch.rand(4, 7, 8))
    with pytest.raises(ValueError, match=r"\(4, 49\).*\(3, 49\)"):
        overlap_rate(torch.rand(4, 49), torch.rand(3, 49), 10)
    with pytest.raises(ValueError, match="chunk_size"):
        compare_maps(torch.rand(4, 7), torch.rand(4, 7), chunk_size=0)


def test_empty_batch():
    result = compare_maps(torch.rand(0, 5, 5), torch.rand(0, 5, 5))
    assert list(result) == DEFAULT_KEYS
    assert all(value.shape == (0,) for value in result.values())


def test_metrics_restricts_and_orders():
    base, other = make_maps("random", torch.float32, n=4)
    result = compare_maps(base, other, metrics=["overlap_10", "spearman"])
    assert list(result) == ["overlap_10", "spearman"]
    full = compare_maps(base, other)
    assert torch.equal(result["spearman"], full["spearman"])
    with pytest.raises(ConfigError, match="spearmann.*did you mean 'spearman'"):
        compare_maps(base, other, metrics=["spearmann"])
    # overlap names exist only for the requested percentages
    with pytest.raises(ConfigError, match="overlap_7"):
        compare_maps(base, other, metrics=["overlap_7"])


def test_user_registered_metric_shows_up(clean_registry):
    @register_map_metric("max_abs_diff")
    def max_abs_diff(base, other):
        return (base - other).abs().amax(dim=1)

    base, other = make_maps("random", torch.float32, n=6)
    result = compare_maps(base, other)
    assert list(result) == [*DEFAULT_KEYS[:4], "max_abs_diff", *DEFAULT_KEYS[4:]]
    check_batched(compare_metric("max_abs_diff"), lambda p, q: float(np.max(np.abs(p - q))), base, other)


def test_bad_user_metric_output_is_reported(clean_registry):
    register_map_metric("scalar")(lambda base, other: (base - other).mean())
    base, other = make_maps("random", torch.float32, n=3)
    with pytest.raises(ValueError, match="'scalar'"):
        compare_maps(base, other)


def test_duplicate_registration_warns(clean_registry):
    @register_map_metric("twice")
    def first(base, other):
        return base.mean(1)

    with pytest.warns(UserWarning, match="twice"):

        @register_map_metric("twice")
        def second(base, other):
            return other.mean(1)

    base, other = make_maps("random", torch.float32, n=3)
    torch.testing.assert_close(compare_maps(base, other, metrics=["twice"])["twice"], other.flatten(1).double().mean(1))


# --- class KLD -------------------------------------------------------------------------------------


def oracle_kld(p: np.ndarray, q: np.ndarray, eps: float) -> np.ndarray:
    out = np.zeros(len(p))
    for n in range(len(p)):
        for i in range(p.shape[1]):
            if q[n, i] > 0:
                out[n] += q[n, i] * np.log(eps + q[n, i] / p[n, i])
    return out


def probabilities(n: int, k: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, k, generator=g, dtype=torch.float64), dim=1).to(dtype)


@pytest.mark.parametrize("eps", [1e-10, 1e-3, 0.0])
def test_class_kld_matches_numpy(eps):
    p, q = probabilities(20, 10, 0), probabilities(20, 10, 1)
    got = class_kld(p, q, eps=eps)
    assert got.dtype == torch.float64 and got.shape == (20,)
    np.testing.assert_allclose(got.numpy(), oracle_kld(p.numpy(), q.numpy(), eps), rtol=1e-12, atol=1e-12)
    assert (got > 0.01).all()  # different distributions: clearly positive


def test_class_kld_equals_scipys_relative_entropy():
    # Σ Q log(Q / P) with Q = the augmented model's probabilities (second argument) and P = the
    # baseline's: with eps = 0 it is KL(Q ‖ P), SciPy's rel_entr(q, p) summed and entropy(q, p).
    # The two arguments swapped give another (asymmetric) number, so the order is checked too.
    from scipy import special, stats

    p, q = probabilities(50, 10, 7), probabilities(50, 10, 8)
    got = class_kld(p, q, eps=0.0).numpy()
    np.testing.assert_allclose(got, special.rel_entr(q.numpy(), p.numpy()).sum(1), rtol=1e-12)
    np.testing.assert_allclose(got, stats.entropy(q.numpy(), p.numpy(), axis=1), rtol=1e-10)
    assert np.abs(got - special.rel_entr(p.numpy(), q.numpy()).sum(1)).max() > 0.1
    # With eps > 0 the thesis definition: eps inside the log, Σ Q log(eps + Q / P).
    eps = 1e-3
    expected = (q.numpy() * np.log(eps + q.numpy() / p.numpy())).sum(1)
    np.testing.assert_allclose(class_kld(p, q, eps=eps).numpy(), expected, rtol=1e-12)
    assert (class_kld(p, q, eps=eps).numpy() > got).all()


def test_class_kld_float32_inputs():
    p, q = probabilities(8, 5, 2, torch.float32), probabilities(8, 5, 3, torch.float32)
    np.testing.assert_allclose(
        class_kld(p, q).numpy(), oracle_kld(p.double().numpy(), q.double().numpy(), 1e-10), rtol=1e-12, atol=1e-12
    )


def test_class_kld_zero_entries_in_q():
    p = probabilities(6, 4, 4)
    q = probabilities(6, 4, 5)
    q[:, 1] = 0.0
    q[2] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # one-hot
    q = q / q.sum(dim=1, keepdim=True)
    p[3, 1] = 0.0  # P = 0 where Q = 0 too: still a 0 term, not NaN
    got = class_kld(p, q)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), oracle_kld(p.numpy(), q.numpy(), 1e-10), rtol=1e-12, atol=1e-12)
    assert torch.isfinite(class_kld(p, q, eps=0.0)).all()  # 0·log(0) must not be NaN either


def test_class_kld_identical_inputs_is_log_one_plus_eps():
    p = probabilities(7, 10, 6)
    for eps in (1e-10, 1e-2):
        expected = torch.full((7,), math.log1p(eps), dtype=torch.float64)
        torch.testing.assert_close(class_kld(p, p.clone(), eps=eps), expected, rtol=1e-9, atol=1e-15)


def test_class_kld_baseline_zero_is_inf():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.4, 0.4, 0.2], [0.2, 0.3, 0.5]], dtype=torch.float64)
    got = class_kld(p, q)
    assert got[0] == math.inf
    assert torch.isfinite(got[1])


def test_class_kld_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        class_kld(torch.rand(3, 4), torch.rand(3, 5))
    with pytest.raises(ValueError, match="eps"):
        class_kld(torch.rand(3, 4), torch.rand(3, 4), eps=-1.0)
