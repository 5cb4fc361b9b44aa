"""The model-level test when an augmentation's seeds do not train independent models.

A deterministic augmentation trains the same model under every seed (split, init and order are
shared by design), and one of tiny randomness trains near-copies of one trajectory. The permutation
test alone counts such models as independent draws; `clustered_t_test` counts them by how much they
vary, and the table's p-value is the larger of the two."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from augcam.analysis.design import design_limits, detectable_effect_one_model
from augcam.analysis.model_tests import clustered_t_test, model_level_table, permutation_test

ALTERNATIVES = ("two-sided", "greater", "less")


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("seed", range(5))
def test_equal_models_count_once_as_scipys_pooled_t_test_of_one_model(seed, alternative):
    rng = np.random.default_rng(seed)
    null = rng.normal(0, 1, 12)
    one_model = float(rng.normal(1.5, 1))
    result = clustered_t_test(np.full(3, one_model), null, alternative=alternative)
    expected = stats.ttest_ind([one_model], null, equal_var=True, alternative=alternative)
    assert result["p_value"] == pytest.approx(expected.pvalue, rel=1e-10)
    assert result["effective_models"] == pytest.approx(1.0)
    interval = stats.ttest_ind([one_model], null, equal_var=True).confidence_interval(0.95)  # two-sided
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((interval.low, interval.high), rel=1e-10)


def test_models_that_vary_like_the_null_models_count_as_independent():
    rng = np.random.default_rng(1)
    null = rng.normal(0, 1, 12)
    spread_out = np.array([-3.0, 0.0, 3.0]) + 0.5  # own SD 3: more than the null models'
    result = clustered_t_test(spread_out, null, alternative="greater")
    assert result["effective_models"] == pytest.approx(3.0)
    se = np.std(null, ddof=1) * math.sqrt(1 / 3 + 1 / 12)
    assert result["p_value"] == pytest.approx(stats.t(11).sf((spread_out.mean() - null.mean()) / se), rel=1e-10)
    # In between, the count follows the spread: less spread, fewer independent models, larger p.
    counts, p_values = [], []
    for scale in (0.0, 0.3, 0.6, 0.9):
        models = 1.5 + scale * np.std(null, ddof=1) * np.array([-1.0, 0.0, 1.0])
        result = clustered_t_test(models, null, alternative="greater")
        counts.append(result["effective_models"])
        p_values.append(result["p_value"])
    assert counts[0] == pytest.approx(1.0) and all(np.diff(counts) > 0) and counts[-1] < 3
    assert all(np.diff(p_values) < 0)


def test_degenerate_inputs():
    assert math.isnan(clustered_t_test([1.0, 2.0], [0.5])["p_value"])
    assert clustered_t_test([1.0, 1.0], [0.0, 0.0], alternative="greater")["p_value"] == 0.0
    assert clustered_t_test([1.0, 1.0], [0.0, 0.0], alternative="less")["p_value"] == 1.0
    with pytest.raises(ValueError, match="alternative"):
        clustered_t_test([1.0], [0.0, 1.0], alternative="bigger")


@pytest.mark.parametrize("shared", [0.0, 0.5, 0.9, 1.0])
def test_false_positive_rate_at_most_nominal_whatever_the_models_share(shared):
    # 3 models against 12 null models, no effect: the augmentation's models share a component of
    # variance `shared` (1 = one model trained three times). The permutation test alone rejects a
    # fully shared null far above its level, which is what the clustered t-test guards against.
    rng = np.random.default_rng(7)
    trials, alpha, rejected, rejected_permutation = 2000, 0.05, 0, 0
    for _ in range(trials):
        null = rng.normal(0, 1, 12)
        models = math.sqrt(shared) * rng.normal() + math.sqrt(1 - shared) * rng.normal(0, 1, 3)
        p_permutation = permutation_test(models, null, alternative="greater")
        p = max(p_permutation, clustered_t_test(models, null, alternative="greater")["p_value"])
        rejected += p < alpha
        rejected_permutation += p_permutation < alpha
    margin = 2.5 * math.sqrt(alpha * (1 - alpha) / trials)
    assert rejected / trials <= alpha + margin
    if shared == 1.0:
        assert rejected_permutation / trials > 3 * alpha
        assert rejected / trials >= alpha - margin  # exact for one model: not needlessly conservative


def _frame(per_model: dict[str, np.ndarray], n_images: int = 40) -> pd.DataFrame:
    """A metrics table with one Pearson value per (model, image): model summary + image noise."""
    rng = np.random.default_rng(0)
    image_noise = rng.normal(0, 0.02, n_images)
    rows = []
    for aug, means in per_model.items():
        for seed, mean in enumerate(means):
            values = 0.8 + mean + image_noise
            rows += [
                {"model_id": f"{aug}_{seed}", "augmentation": aug, "seed": seed, "image_index": i, "pearson": v}
                for i, v in enumerate(values)
            ]
    return pd.DataFrame(rows)


def test_table_counts_one_model_trained_three_times_once():
    null = np.random.default_rng(5).normal(0, 0.01, 12)
    null -= null.mean()
    sd = float(np.std(null, ddof=1))
    frame = _frame({"identity": null, "one_model": np.full(3, -1.5 * sd), "far_away": np.full(3, -20 * sd)})
    table = model_level_table(frame, n_resamples=200).set_index("augmentation")
    near, far = table.loc["one_model"], table.loc["far_away"]
    # The permutation test sees complete separation (its floor) in both; one model 1.5 SDs beyond the
    # null models is within retraining noise, one 20 SDs beyond is not.
    assert near["p_permutation"] == pytest.approx(1 / math.comb(15, 3))
    null_summaries = null + near["null_mean"] - null.mean()  # each model's mean over the images
    expected = stats.ttest_ind([near["mean"]], null_summaries, alternative="less").pvalue
    assert near["p_clustered"] == pytest.approx(expected, rel=1e-6)
    assert near["p_value"] == near["p_clustered"] > 0.05 and not near["significant"]
    assert near["effective_models"] == pytest.approx(1.0)
    assert near["effect_ci_low"] < 0 < near["effect_ci_high"]  # widened to the one-model interval
    assert far["p_value"] == far["p_permutation"] and far["significant"] and far["effect_ci_high"] < 0


def test_detectable_effect_of_one_model_has_the_stated_power():
    shift = detectable_effect_one_model(12)
    rng = np.random.default_rng(11)
    null = rng.normal(0, 1, (4000, 12))
    one_model = rng.normal(shift, 1, 4000)
    p = np.array([stats.ttest_ind([x], row, alternative="greater").pvalue for x, row in zip(one_model, null)])
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.025)
    assert detectable_effect_one_model(12) < detectable_effect_one_model(6) < detectable_effect_one_model(3)
    assert detectable_effect_one_model(1) == float("inf")
    assert design_limits(3, 12)["detectable_effect_one_model"] == pytest.approx(shift)
