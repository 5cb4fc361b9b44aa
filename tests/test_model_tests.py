"""Model-level statistics against independent oracles: SciPy's exact permutation test, statsmodels'
Benjamini–Hochberg, binomial coefficients worked out by hand, and simulations whose truth is known
(coverage of the bootstrap interval, the false-positive rate of the whole table under the null)."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from augcam.analysis.design import design_limits, detectable_effect, min_p_value, null_models_needed
from augcam.analysis.model_tests import (
    MODEL_TEST_COLUMNS,
    hierarchical_bootstrap_ci,
    model_level_table,
    model_summaries,
    permutation_test,
)
from augcam.analysis.statistics import benjamini_hochberg, paired_test

ALTERNATIVES = ("two-sided", "greater", "less")


def scipy_permutation_p(a, b, alternative="two-sided"):
    def difference_of_means(x, y, axis):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    result = stats.permutation_test(
        (a, b),
        difference_of_means,
        permutation_type="independent",
        vectorized=True,
        n_resamples=np.inf,
        alternative=alternative,
    )
    return result.pvalue


def rational_permutation_p(a, b, alternative):
    """The permutation p-value of mean(a) − mean(b) by exact rational arithmetic over every split
    (decimal strings in): no rounding, so ties are ties."""
    pooled = [Fraction(x) for x in (*a, *b)]
    k, n = len(a), len(a) + len(b)

    def statistic(chosen):
        first = sum(pooled[i] for i in chosen)
        return first / k - (sum(pooled) - first) / (n - k)

    observed = statistic(range(k))
    values = [statistic(chosen) for chosen in itertools.combinations(range(n), k)]
    greater = Fraction(sum(v >= observed for v in values), len(values))
    less = Fraction(sum(v <= observed for v in values), len(values))
    return {"greater": greater, "less": less}.get(alternative, min(1, 2 * min(greater, less)))


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("seed", range(8))
def test_permutation_test_equals_scipys_exact_test(seed, alternative):
    rng = np.random.default_rng(seed)
    k, m = int(rng.integers(2, 5)), int(rng.integers(2, 8))
    a = 0.9 + 0.01 * rng.normal(size=k) + 0.005 * seed
    b = 0.9 + 0.01 * rng.normal(size=m)
    expected = scipy_permutation_p(a, b, alternative)
    assert permutation_test(a, b, alternative=alternative) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("seed", range(6))
def test_permutation_test_equals_scipy_with_ties(seed, alternative):
    # Few distinct values, and decimals whose sums are inexact in binary (0.1 + 0.2 ≠ 0.3): many
    # splits tie with the observed statistic, and each must be counted on both sides.
    rng = np.random.default_rng(100 + seed)
    a = rng.choice([0.1, 0.2, 0.3], size=3)
    b = rng.choice([0.1, 0.2, 0.3, 0.4], size=6)
    expected = scipy_permutation_p(a, b, alternative)
    assert permutation_test(a, b, alternative=alternative) == pytest.approx(expected, rel=1e-12)
    # A statistic of exactly 0 with inexact decimals: SciPy's tolerance is relative to the observed
    # statistic, so it loses this tie one-sided; the oracle is exact rational arithmetic.
    a, b = ["0.1", "0.2"], ["0.3", "0.0", "0.15"]
    expected = rational_permutation_p(a, b, alternative)
    assert expected == (1 if alternative == "two-sided" else Fraction(6, 10))  # 6 of 10 splits on each side
    observed = permutation_test([float(x) for x in a], [float(x) for x in b], alternative=alternative)
    assert observed == pytest.approx(float(expected), rel=1e-12)


def test_permutation_test_rejects_an_unknown_alternative():
    with pytest.raises(ValueError, match="alternative"):
        permutation_test([0.1, 0.2], [0.3, 0.4], alternative="further")


def test_monte_carlo_path_agrees_with_the_exact_p():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0.4, 1, size=8), rng.normal(0, 1, size=10)  # C(18, 8) = 43,758 splits
    exact = permutation_test(a, b)
    assert exact == pytest.approx(scipy_permutation_p(a, b), rel=1e-12)
    monte_carlo = permutation_test(a, b, max_exact=1000, n_resamples=20_000, seed=3)
    assert monte_carlo != exact  # the other path ran
    assert abs(monte_carlo - exact) < 4 * 2 * math.sqrt(exact * (1 - exact) / 20_000)
    # The +1 correction: a random-split p-value is never below 2 / (n + 1), even under complete separation.
    separated = permutation_test(np.arange(10.0) + 100, np.arange(10.0), max_exact=10, n_resamples=999)
    assert separated == pytest.approx(2 / 1000)


def test_min_p_value_and_the_counts_the_design_needs():
    # One-sided: the one split with the augmentation's models furthest from the baseline.
    assert min_p_value(3, 3) == pytest.approx(0.05)  # 1 / C(6, 3) = 1 / 20: never below 0.05
    assert min_p_value(3, 6) == pytest.approx(1 / 84)
    assert min_p_value(3, 12) == pytest.approx(1 / 455)
    assert min_p_value(1, 1) == 0.5
    assert min_p_value(0, 6) == 1.0
    # C(3+3, 3) = 20 → 0.05, not below; C(3+4, 3) = 35 → 0.029: four null models for three seeds.
    assert null_models_needed(3) == 4
    assert null_models_needed(3, alpha=0.01) == 7  # C(9, 3) = 84 → 0.012; C(10, 3) = 120 → 0.0083
    assert null_models_needed(1) == 20  # 1 / (m + 1) < 0.05
    assert null_models_needed(2) == 5  # C(6, 2) = 15 → 0.067; C(7, 2) = 21 → 0.048


@pytest.mark.parametrize(("k", "m"), [(2, 2), (3, 3), (3, 6), (2, 5), (4, 3)])
def test_complete_separation_reaches_exactly_the_design_limit(k, m):
    rng = np.random.default_rng(k * 10 + m)
    b = rng.normal(0, 1, size=m)
    # Lopsided: the augmentation's models far away, so the mirror split is not as extreme; the
    # one-sided p-value in their direction is the stated limit, the two-sided one twice that.
    a = 50 + rng.normal(0, 1, size=k)
    assert permutation_test(a, b, alternative="greater") == pytest.approx(min_p_value(k, m))
    assert permutation_test(-a, b, alternative="less") == pytest.approx(min_p_value(k, m))
    assert permutation_test(a, b, alternative="less") == 1.0
    assert permutation_test(a, b) == pytest.approx(min(1.0, 2 * min_p_value(k, m)))
    assert permutation_test(a, b) == pytest.approx(scipy_permutation_p(a, b))
    assert permutation_test(np.full(k, 0.5), np.full(m, 0.5)) == 1.0


def test_permutation_test_rejects_non_finite_values():
    with pytest.raises(ValueError, match="finite"):
        permutation_test([1.0, np.inf], [0.0, 1.0])
    assert math.isnan(permutation_test([], [0.0, 1.0]))


def test_benjamini_hochberg_equals_statsmodels_and_ignores_nan():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(0, 0.06, 20), rng.uniform(0, 1, 20), [2 / 84] * 5]
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    with_nan = p.copy()
    with_nan[[3, 17, 30]] = np.nan
    adjusted = benjamini_hochberg(with_nan)
    defined = ~np.isnan(with_nan)
    assert np.isnan(adjusted[~defined]).all()
    expected = multipletests(with_nan[defined], method="fdr_bh")[1]
    np.testing.assert_allclose(adjusted[defined], expected, rtol=1e-12)
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()


def _simulated_groups(rng, k, m, n, effect, model_sd=0.05, image_sd=0.1, noise_sd=0.1, interaction_sd=0.03):
    """Per-image values of k augmented and m null models on the same n images: a shared image
    effect, the augmentation's per-image effect, a per-model effect and per-(model, image) noise."""
    image = rng.normal(0, image_sd, n)
    interaction = rng.normal(0, interaction_sd, n)
    a = effect + image + interaction + rng.normal(0, model_sd, (k, 1)) + rng.normal(0, noise_sd, (k, n))
    b = image + rng.normal(0, model_sd, (m, 1)) + rng.normal(0, noise_sd, (m, n))
    return a, b


def test_hierarchical_bootstrap_covers_the_true_difference_at_its_level():
    # Both sources vary; the true difference of expected model means is `effect` (the per-image
    # interaction has mean 0 over the population of images). 400 datasets: one standard error of
    # a 95% coverage is 0.011, of an 80% coverage 0.02.
    rng = np.random.default_rng(11)
    effect, trials = 0.2, 400
    hits = {0.95: 0, 0.8: 0}
    widths = {0.95: [], 0.8: []}
    for trial in range(trials):
        a, b = _simulated_groups(rng, 3, 6, 40, effect)
        for confidence in hits:
            low, high = hierarchical_bootstrap_ci(a, b, confidence=confidence, n_resamples=400, seed=trial)
            hits[confidence] += low <= effect <= high
            widths[confidence].append(high - low)
    coverage = {c: h / trials for c, h in hits.items()}
    assert coverage[0.95] >= 0.95 - 3 * 0.011
    assert abs(coverage[0.8] - 0.8) <= 3 * 0.02
    assert np.mean(widths[0.8]) < 0.8 * np.mean(widths[0.95])


def test_hierarchical_bootstrap_is_wider_than_an_images_only_bootstrap_when_models_vary():
    rng = np.random.default_rng(5)
    a, b = _simulated_groups(rng, 3, 6, 200, 0.1, model_sd=0.05)
    low, high = hierarchical_bootstrap_ci(a, b, n_resamples=2000, seed=0)
    # Oracle: the usual bootstrap over images of the per-image difference of the group means,
    # which treats the models as fixed.
    difference = a.mean(0) - b.mean(0)
    draws = rng.integers(0, len(difference), size=(2000, len(difference)))
    image_low, image_high = np.percentile(difference[draws].mean(1), [2.5, 97.5])
    assert low <= a.mean() - b.mean() <= high
    assert high - low > 2 * (image_high - image_low)
    # Without differences between models (and noise-free images) the model resampling adds nothing.
    same = np.tile(rng.normal(0, 0.1, 100), (3, 1))
    low0, high0 = hierarchical_bootstrap_ci(same + 0.1, np.tile(same[0], (6, 1)), n_resamples=500)
    assert low0 == pytest.approx(0.1) and high0 == pytest.approx(0.1)


def test_hierarchical_bootstrap_skips_nan_and_checks_shapes():
    a = np.array([[1.0, np.nan, 1.0], [1.0, 1.0, np.nan]])
    b = np.zeros((2, 3))
    assert hierarchical_bootstrap_ci(a, b, n_resamples=200) == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError, match="same images"):
        hierarchical_bootstrap_ci(np.zeros((2, 3)), np.zeros((2, 4)))
    assert all(math.isnan(v) for v in hierarchical_bootstrap_ci(np.zeros((0, 3)), b))


def _metrics_frame(rng, shifts, n_null=6, n_seeds=3, n_images=30):
    """A metrics table (as metrics.parquet) of null models ('identity') and augmentations whose
    model means are moved by `shifts[aug] = (pearson shift, class_kld shift)`."""
    rows = []
    image = rng.normal(0, 0.05, n_images)
    groups = [("identity", n_null, (0.0, 0.0))] + [(aug, n_seeds, shift) for aug, shift in shifts.items()]
    for aug, count, (d_pearson, d_kld) in groups:
        for seed in range(count):
            model = rng.normal(0, 0.01, 2)
            pearson = 0.8 + d_pearson + model[0] + image + rng.normal(0, 0.02, n_images)
            kld = np.abs(0.05 + d_kld + model[1] + rng.normal(0, 0.01, n_images))
            for i in range(n_images):
                rows.append(
                    {
                        "model_id": f"{aug}_s{seed}",
                        "augmentation": aug,
                        "seed": seed,
                        "image_index": i,
                        "label": i % 10,
                        "pearson": pearson[i],
                        "class_kld": kld[i],
                    }
                )
    return pd.DataFrame(rows)


def test_model_summaries_are_per_model_means_skipping_nan():
    frame = _metrics_frame(np.random.default_rng(0), {"rotate": (0.0, 0.0)}, n_null=2, n_seeds=2, n_images=4)
    frame.loc[0, "pearson"] = np.nan
    summaries = model_summaries(frame, ["pearson", "class_kld"])
    assert list(summaries.columns) == ["model_id", "augmentation", "seed", "pearson", "class_kld"]
    assert len(summaries) == 4
    first = frame[frame["model_id"] == "identity_s0"]
    assert summaries.loc[0, "pearson"] == pytest.approx(np.nanmean(first["pearson"]))
    assert summaries.loc[0, "class_kld"] == pytest.approx(first["class_kld"].mean())


def test_model_level_table_on_planted_effects():
    rng = np.random.default_rng(3)
    shifts = {"null_like": (0.0, 0.0), "moves_away": (-0.2, 0.3), "moves_closer": (0.1, -0.04)}
    frame = _metrics_frame(rng, shifts)
    table = model_level_table(frame, n_resamples=300)
    assert list(table.columns) == MODEL_TEST_COLUMNS
    assert list(zip(table["augmentation"], table["metric"], strict=True)) == [
        (aug, metric) for aug in shifts for metric in ("pearson", "class_kld")
    ]
    rows = table.set_index(["augmentation", "metric"])
    assert (table["n_models"] == 3).all() and (table["n_null"] == 6).all()
    np.testing.assert_allclose(table["min_p"], 1 / 84, rtol=1e-12)
    assert (table["p_value"] >= table["min_p"] - 1e-15).all()
    # The null augmentation: same distribution as the null models, nothing found.
    assert not rows.loc["null_like", "significant"].any()
    # Complete separation away from the baseline: the design's smallest p-value in both metrics
    # (lower Pearson, higher Class-KLD). Complete separation towards the baseline is described
    # (direction, effect, CI) but is not a change of where the models look: p = 1.
    for aug, direction, p_value in (("moves_away", "further", 1 / 84), ("moves_closer", "closer", 1.0)):
        for metric in ("pearson", "class_kld"):
            row = rows.loc[(aug, metric)]
            assert row["p_value"] == pytest.approx(p_value)
            assert row["direction"] == direction
            assert row["effect_ci_low"] <= row["effect"] <= row["effect_ci_high"]
            assert bool(row["significant"]) == (direction == "further")
    mine = model_summaries(frame[frame["augmentation"].isin(["moves_away", "identity"])], ["pearson"])
    away, null = (mine.loc[mine["augmentation"] == g, "pearson"].to_numpy() for g in ("moves_away", "identity"))
    assert rows.loc[("moves_away", "pearson"), "p_value"] == pytest.approx(scipy_permutation_p(away, null, "less"))
    assert rows.loc[("moves_away", "pearson"), "effect"] == pytest.approx(-0.2, abs=0.03)
    assert rows.loc[("moves_away", "pearson"), "effect_ci_high"] < 0
    assert rows.loc[("moves_away", "pearson"), "standardized_effect"] < -5
    # Benjamini–Hochberg over the whole table.
    expected = multipletests(table["p_value"].to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(table["p_adjusted"].to_numpy(), expected, rtol=1e-12)
    assert (table["significant"] == (table["p_adjusted"] < 0.05)).all()


def test_model_level_table_says_why_a_row_has_no_test():
    rng = np.random.default_rng(4)
    frame = _metrics_frame(rng, {"one_seed": (0.0, 0.0)}, n_seeds=1)
    table = model_level_table(frame, n_resamples=50)
    assert table["p_value"].isna().all() and not table["significant"].any()
    assert table["note"].str.contains("fewer than 2 models").all()
    few_null = _metrics_frame(rng, {"rotate": (0.0, 0.0)}, n_null=1)
    assert model_level_table(few_null, n_resamples=50)["note"].str.contains("null models").all()
    infinite = _metrics_frame(rng, {"rotate": (0.0, 0.0)})
    infinite.loc[infinite["model_id"] == "rotate_s0", "class_kld"] = np.inf
    row = model_level_table(infinite, n_resamples=50).set_index("metric").loc["class_kld"]
    assert math.isnan(row["p_value"]) and "not finite" in row["note"]


def test_null_tables_are_rejected_at_most_at_the_nominal_rate():
    # 500 null studies (3 seeds against 6 null models, every model a draw of the same process with
    # model-level and image-level noise): the table must declare a difference in at most alpha of
    # them. The per-image Wilcoxon test on the same data, whose units are images of a few fixed
    # models, rejects far more often: the data would catch a test with the wrong unit.
    rng = np.random.default_rng(2024)
    trials, model_level, per_image = 500, 0, 0
    for trial in range(trials):
        a, b = _simulated_groups(rng, 3, 6, 50, 0.0, noise_sd=0.05, interaction_sd=0.0)
        frame = pd.DataFrame(
            {
                "model_id": np.repeat([f"m{j}" for j in range(9)], 50),
                "augmentation": np.repeat(["aug"] * 3 + ["identity"] * 6, 50),
                "seed": np.repeat(np.arange(9), 50),
                "image_index": np.tile(np.arange(50), 9),
                "pearson": np.concatenate([a, b]).ravel(),
            }
        )
        table = model_level_table(frame, n_resamples=20, seed=trial)
        model_level += bool(table["significant"].iloc[0])
        if trial < 100:
            per_image += paired_test(a.mean(0), b.mean(0)) < 0.05
    rate = model_level / trials
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / trials)
    assert per_image / 100 > 0.3


def test_design_limits_state_what_the_design_can_show():
    limits = design_limits(3, 6)
    assert limits["min_p"] == pytest.approx(1 / 84) and limits["reachable"]
    assert limits["null_models_needed"] == 4 and limits["seeds_needed"] == 2  # 1 / C(8, 2) = 0.036
    assert "0.012" in limits["message"] and "cannot" not in limits["message"]
    assert "one-sided" in limits["message"]
    assert not design_limits(3, 6, augmentations=7)["alone_reachable"]  # 7 / 84 ≥ 0.05
    assert "train at least 8 null models" in design_limits(3, 6, augmentations=7)["message"]  # 7 / 165 < 0.05
    assert design_limits(3, 12, augmentations=22)["alone_reachable"]  # 22 / 455 < 0.05
    assert not design_limits(3, 12, augmentations=23)["alone_reachable"]
    small = design_limits(3, 3)
    assert not small["reachable"] and small["min_p"] == pytest.approx(0.05)
    assert "cannot reach p < 0.05 by design" in small["message"]
    assert "4 null models (controls.null_models) or 4 seeds" in small["message"]
    assert small["detectable_effect"] == math.inf
    assert "no model-level test" in design_limits(3, 0)["message"]


def test_detectable_effect_has_the_stated_power():
    shift = detectable_effect(3, 6)  # simulated with 2,000 draws
    rng = np.random.default_rng(9)
    trials = 3000
    found = sum(
        permutation_test(rng.normal(shift, 1, 3), rng.normal(0, 1, 6), alternative="greater") < 0.05
        for _ in range(trials)
    )
    assert abs(found / trials - 0.8) < 3 * math.sqrt(0.8 * 0.2 * (1 / trials + 1 / 2000))
    # Many models: the normal approximation of the one-sided test, (z_0.95 + z_0.8) · sqrt(1/k + 1/m).
    assert detectable_effect(20, 20) == pytest.approx((1.644854 + 0.841621) * math.sqrt(0.1), rel=1e-5)


@pytest.mark.parametrize(
    "k,m,augmentations", [(3, 6, 2), (3, 6, 4), (3, 6, 5), (3, 12, 7), (3, 12, 22), (3, 12, 23), (4, 8, 5)]
)
def test_alone_reachable_matches_statsmodels_bh_on_a_table_with_one_augmentation_at_the_floor(k, m, augmentations):
    # One augmentation with all 8 metric rows at the design's floor, every other row at p = 1:
    # statsmodels' BH decides whether it passes on its own, and the design limits must agree.
    metrics = 8
    p = np.ones(augmentations * metrics)
    p[:metrics] = min_p_value(k, m)
    found = (multipletests(p, method="fdr_bh")[1][:metrics] < 0.05).all()  # significant: p_adj < alpha
    limits = design_limits(k, m, augmentations=augmentations)
    assert limits["alone_reachable"] == found
    needed = limits["null_models_needed_alone"]
    p[:metrics] = min_p_value(k, needed)
    assert (multipletests(p, method="fdr_bh")[1][:metrics] < 0.05).all()
    p[:metrics] = min_p_value(k, needed - 1)
    assert not (multipletests(p, method="fdr_bh")[1][:metrics] < 0.05).any()
