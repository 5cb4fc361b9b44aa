"""Statistics against independent oracles: exact Wilcoxon p-values worked out by hand and SciPy's
zero handling, Holm on a textbook example and against statsmodels, a NumPy-only and SciPy's
percentile bootstrap at more than one confidence level, and a planted effect."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from augcam.analysis.statistics import (
    SIGNIFICANCE_COLUMNS,
    bootstrap_ci,
    holm,
    noise_floor,
    paired_test,
    significance_table,
)


def test_holm_textbook_example():
    # m = 4: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan_out_of_the_family():
    adjusted = holm([0.5, float("nan"), 0.4])
    # family of 2: 0.4·2 = 0.8, then max(0.8, 0.5·1) = 0.8
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.8, 0.8])
    assert holm([0.9, 0.8, 0.7]).max() == 1.0


def test_holm_equals_statsmodels_and_ignores_nan():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(0, 0.02, 10), rng.uniform(0, 1, 30), [0.01, 0.01]]  # ties included
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    p[[2, 11]] = np.nan
    defined = ~np.isnan(p)
    adjusted = holm(p)
    assert np.isnan(adjusted[~defined]).all()
    np.testing.assert_allclose(adjusted[defined], multipletests(p[defined], method="holm")[1], rtol=1e-12)


def test_paired_test_drops_zero_differences_like_wilcoxons_original_test():
    # Eight zero differences: dropping them ("wilcox"), ranking them ("pratt") or splitting their
    # ranks ("zsplit") give clearly different p-values; the documented treatment is the first.
    difference = np.array([0.0] * 8 + [0.5, 1.0, -0.25, 1.5, 2.0, 0.75, -0.5, 1.25, 1.75, 2.5, 0.25, 3.0])
    got = paired_test(difference + 0.5, np.full(len(difference), 0.5))
    assert got == pytest.approx(stats.wilcoxon(difference, zero_method="wilcox").pvalue, rel=1e-9)
    for other in ("pratt", "zsplit"):
        assert abs(got - stats.wilcoxon(difference, zero_method=other).pvalue) > 0.2 * got


def test_paired_test_exact_small_sample():
    # Five positive differences: the signed-rank statistic's most extreme value, probability
    # 1/2^5 on each side, so the exact two-sided p is 2/32.
    assert paired_test(np.array([1.0, 2, 3, 4, 5]), np.zeros(5)) == pytest.approx(2 / 32)
    # Differences −1, +2, +3 (ranks 1, 2, 3): W− = 1; P(W ≤ 1) = 2/8 → two-sided 4/8.
    assert paired_test(np.array([0.0, 2, 3]), np.array([1.0, 0, 0])) == pytest.approx(0.5)


def test_paired_test_drops_nan_pairs_and_handles_no_difference():
    values = np.array([1.0, 2, 3, 4, 5, np.nan])
    reference = np.array([0.0, 0, 0, 0, 0, 7])
    assert paired_test(values, reference) == pytest.approx(2 / 32)
    assert paired_test(np.ones(10), np.ones(10)) == 1.0
    assert math.isnan(paired_test(np.array([1.0, np.nan]), np.array([0.0, 0.0])))
    with pytest.raises(ValueError, match="same shape"):
        paired_test(np.ones(3), np.ones(4))


def test_bootstrap_ci_agrees_with_a_numpy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    values = np.round(rng.gamma(2.0, 1.0, size=400), 1)  # rounded: many ties, like overlap rates
    low, high = bootstrap_ci(values, n_resamples=4000, seed=3)
    resamples = rng.choice(values, size=(4000, len(values)), replace=True)
    medians = np.median(resamples, axis=1)
    oracle_low, oracle_high = np.percentile(medians, [2.5, 97.5])
    assert low <= np.median(values) <= high
    # Two independent Monte-Carlo estimates of the same interval agree to well within its width.
    assert abs(low - oracle_low) <= 0.25 * (high - low) + 0.1
    assert abs(high - oracle_high) <= 0.25 * (high - low) + 0.1
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)


@pytest.mark.parametrize("engine", ["order-statistics", "scipy"])
def test_bootstrap_ci_honours_the_confidence_level(engine):
    # SciPy's percentile bootstrap at 0.9 is the oracle; the 0.95 interval is clearly wider, so an
    # interval computed at the wrong level lands outside the tolerance.
    values = np.random.default_rng(1).normal(0.6, 0.2, size=401)

    def scipy_interval(confidence):
        interval = stats.bootstrap(
            (values,),
            np.median,
            confidence_level=confidence,
            n_resamples=20_000,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(2),
        ).confidence_interval
        return interval.low, interval.high

    oracle_90, oracle_95 = scipy_interval(0.9), scipy_interval(0.95)
    low, high = bootstrap_ci(values, confidence=0.9, n_resamples=20_000, seed=3, engine=engine)
    gap = (oracle_95[1] - oracle_95[0]) - (oracle_90[1] - oracle_90[0])
    assert gap > 0.15 * (oracle_90[1] - oracle_90[0])
    assert abs((high - low) - (oracle_90[1] - oracle_90[0])) < 0.3 * gap
    assert abs(low - oracle_90[0]) < 0.5 * gap and abs(high - oracle_90[1]) < 0.5 * gap
    low_95, high_95 = bootstrap_ci(values, confidence=0.95, n_resamples=20_000, seed=3, engine=engine)
    assert low_95 < low and high < high_95


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)
    low, high = bootstrap_ci(np.array([np.nan, 1.0]))
    assert math.isnan(low) and math.isnan(high)


def _tables(n=300, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.5, 0.9, size=n)
    rows = []
    for aug, values in (
        ("moves_cams", noise - 0.2 + rng.normal(0, 0.02, n)),
        ("identity", noise + rng.normal(0, 0.02, n)),
    ):
        rows += [{"augmentation": aug, "image_index": i, "pearson": v} for i, v in enumerate(values)]
    aggregated = pd.DataFrame(rows)
    replicas = pd.DataFrame(
        {"image_index": np.r_[np.arange(n), np.arange(n)], "pearson": np.r_[noise + 0.01, noise - 0.01]}
    )
    return aggregated, noise_floor(replicas, ["pearson"])


def test_planted_effect_is_significant_and_identity_is_not():
    aggregated, noise = _tables()
    table = significance_table(aggregated, noise, ["pearson"], n_resamples=500)
    assert list(table.columns) == SIGNIFICANCE_COLUMNS
    by_aug = table.set_index("augmentation")
    assert bool(by_aug.loc["moves_cams", "significant"])
    assert not bool(by_aug.loc["identity", "significant"])
    assert by_aug.loc["moves_cams", "effect"] == pytest.approx(-0.2, abs=0.01)
    assert by_aug.loc["moves_cams", "effect_ci_low"] < -0.2 < by_aug.loc["moves_cams", "effect_ci_high"] + 0.01
    assert (table["p_adjusted"] >= table["p_value"]).all()
    assert (table["n_images"] == 300).all()


def test_noise_floor_is_the_mean_over_replicas_per_image():
    _, noise = _tables(n=5)
    aggregated, _ = _tables(n=5)
    assert noise.index.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="lacks 1"):
        significance_table(aggregated, noise.drop(index=4), ["pearson"], n_resamples=50)


@pytest.mark.parametrize("n", [5, 8, 41])
def test_resampled_medians_have_the_distribution_of_medians_of_resamples(n):
    # The order-statistics engine draws medians, not resamples; the distribution over the (few)
    # possible medians must be that of brute-force resampling (frequencies agree to Monte-Carlo error).
    from augcam.analysis.statistics import _resampled_medians

    rng = np.random.default_rng(n)
    values = np.round(rng.gamma(2.0, 1.0, size=n), 1)
    fast = pd.Series(_resampled_medians(values, 200_000, np.random.default_rng(0))).round(9)
    brute = pd.Series(np.median(rng.choice(values, size=(200_000, n)), axis=1)).round(9)
    freq = pd.concat([fast.value_counts(normalize=True), brute.value_counts(normalize=True)], axis=1).fillna(0)
    assert (freq.iloc[:, 0] - freq.iloc[:, 1]).abs().max() < 0.006  # ~5 standard errors at 200,000 draws
    assert set(fast.unique()) <= set(np.round(np.add.outer(values, values) / 2, 9).ravel()) | set(values)


def test_both_bootstrap_engines_estimate_the_same_interval():
    rng = np.random.default_rng(4)
    values = rng.normal(0.6, 0.2, size=2000)
    fast = bootstrap_ci(values, n_resamples=4000, seed=1)
    scipy = bootstrap_ci(values, n_resamples=4000, seed=1, engine="scipy")
    width = scipy[1] - scipy[0]
    assert abs(fast[0] - scipy[0]) < 0.15 * width and abs(fast[1] - scipy[1]) < 0.15 * width
    with pytest.raises(ValueError, match="engine"):
        bootstrap_ci(values, engine="bca")
