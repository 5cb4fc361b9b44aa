"""Model-level statistics: does an augmentation change where models look, beyond retraining noise?

The unit that varies when a study is repeated is the trained model, not the test image: the 2,000
per-image values of one model are not 2,000 independent repetitions of the experiment. So each
model is summarised by one number per metric (the mean over the test images of its per-image value
against the baseline, `model_summaries`), and an augmentation's k models are compared with the m
*null models* (the identity control trained under other seeds: models that differ from each other
the way an augmentation's seeds make models differ) by a permutation test over the model labels,
one-sided: are the augmentation's models *further from the baseline* than the null models?

    model_level_table(run.metrics)     # one row per (augmentation, metric)

Each row has the effect (mean of the augmentation's model summaries − the null models'), its CI
(hierarchical bootstrap over images, then models, widened to the clustered t-test's interval), the
effect in null-model standard deviations, the p-value (the larger of the permutation test's and the
clustered t-test's, see below), the design's smallest reachable p-value and the Benjamini–Hochberg
adjusted p-value over the table. BH (false-discovery rate), not Holm (family-wise): the permutation
p-value of a few models has a floor (1 / C(k+m, k) = 0.0022 for 3 models against 12) that Holm
multiplies by the table's size — 56 rows for 7 augmentations × 8 metrics — so no row of a usual
study could ever be significant; BH keeps rows reachable and bounds the expected share of false
findings among them. The spreads of both groups' summaries are in the table too: the test asks
whether the augmentation's models are exchangeable with the null models, and an augmentation whose
seeds spread far more widely can differ by that alone (the report says so where it happens).

Why one-sided: the question is whether an augmentation changes where models look, that is, moves
their maps away from the baseline's further than retraining noise does. Models *closer* to the
baseline than the null models are models the augmentation perturbed less than an imperceptible
noise does — a no-op augmentation trains the baseline itself, and a null augmentation of smaller
noise than the null models' sits slightly closer (docs/trustworthy.md measures it) — and calling
them "different from retraining noise" would be a false finding about where they look. The
direction stays in the table (`direction`), as a description. The one-sided floor is
1 / C(k+m, k) (`augcam.analysis.design`, what a design can show, for `augcam validate` and the report).

Why two tests, and the larger p-value of the two: the permutation test is exact when the
augmentation's k models are k independent draws, but an augmentation's seeds need not train k
independent models. A deterministic augmentation (equalization, a fixed mask) trains one model k
times — split, init and order are shared by design — and an augmentation of tiny randomness trains
k near-copies of one trajectory; counted as k independent models they give a p-value as small as
1 / C(k+m, k) where one model can show no less than 1 / (m + 1), and a null augmentation with
another imperceptible noise than the null models' was found in 2 of 10 calibration studies
(docs/trustworthy.md). `clustered_t_test` allows the k models to share a component: it reads how
much they share from how much less they vary than the null models (Kish's design effect), so k
identical models count as one and k models that vary like the null models count as k. Taking the
larger p-value keeps the permutation test's exactness for independent models and the t-test's
guard for shared ones; the effect's interval is likewise the hull of the bootstrap interval and the
t-test's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from augcam.analysis.design import TIE_TOLERANCE, all_splits, min_p_value
from augcam.analysis.run_tables import BASELINE, CONTROL, metric_columns
from augcam.analysis.statistics import benjamini_hochberg

__all__ = [
    "MODEL_TEST_COLUMNS",
    "model_summaries",
    "permutation_test",
    "clustered_t_test",
    "hierarchical_bootstrap_ci",
    "model_level_table",
]

MODEL_TEST_COLUMNS = [
    "augmentation",
    "metric",
    "n_models",
    "n_null",
    "mean",
    "null_mean",
    "sd",
    "null_sd",
    "effect",
    "effect_ci_low",
    "effect_ci_high",
    "standardized_effect",
    "p_value",
    "p_permutation",
    "p_clustered",
    "effective_models",
    "min_p",
    "p_adjusted",
    "significant",
    "direction",
    "note",
]


def model_summaries(metrics: pd.DataFrame, metrics_cols: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per model (`model_id`, `augmentation`, `seed`, then one column per metric): the mean
    over the test images of the model's per-image values against the baseline, NaN values skipped
    (a model whose values are all NaN gets NaN)."""
    metrics_cols = metric_columns(metrics) if metrics_cols is None else list(metrics_cols)
    keys = [c for c in ("model_id", "augmentation", "seed") if c in metrics.columns]
    if "model_id" not in keys:
        raise ValueError("the metric table has no model_id column: model summaries need one row set per model")
    summary = metrics.groupby("model_id", sort=False).agg(
        {**{c: "first" for c in keys if c != "model_id"}, **dict.fromkeys(metrics_cols, "mean")}
    )
    return summary.reset_index()[keys + metrics_cols]


ALTERNATIVES = ("two-sided", "greater", "less")


def permutation_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    alternative: str = "two-sided",
    max_exact: int = 200_000,
    n_resamples: int = 20_000,
    seed: int = 0,
) -> float:
    """Permutation p-value of T = mean(a) − mean(b) over the assignments of the pooled values to
    groups of sizes len(a) and len(b), with SciPy's `alternative`: "greater" P(T ≥ T_obs), "less"
    P(T ≤ T_obs), "two-sided" twice the smaller of the two, capped at 1. Exact (every one of the
    C(k+m, k) splits) when there are at most `max_exact` splits, otherwise `n_resamples` random
    splits with the +1 correction ((1 + count) / (1 + n)), which keeps the p-value valid. Splits
    within a relative 1e-12 of the observed statistic count as ties. NaN when a group is empty."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("the permutation test needs finite values (drop NaN models first)")
    k, m = len(a), len(b)
    if k == 0 or m == 0:
        return float("nan")
    # mean(a) − mean(b) is increasing in sum(a) for a fixed pooled sample, so sums of group a are
    # compared; centring keeps them free of a large common offset.
    pooled = np.concatenate([a, b])
    pooled = pooled - np.median(pooled)
    scale = float(np.max(np.abs(pooled))) * k
    if scale == 0.0:
        return 1.0  # every value equal: every split has the observed statistic
    observed = float(np.sum(pooled[:k]))
    tolerance = TIE_TOLERANCE * scale
    if math.comb(k + m, k) <= max_exact:
        sums = pooled[all_splits(k, m)].sum(axis=1)
        low = np.count_nonzero(sums <= observed + tolerance) / len(sums)
        high = np.count_nonzero(sums >= observed - tolerance) / len(sums)
    else:
        rng = np.random.default_rng(seed)
        n_low = n_high = 0
        chunk = max(1, 4_000_000 // (k + m))
        for start in range(0, n_resamples, chunk):
            rows = min(chunk, n_resamples - start)
            # k distinct positions per row: the first k of a random permutation (argsort of uniforms).
            chosen = np.argpartition(rng.random((rows, k + m)), k - 1, axis=1)[:, :k]
            sums = pooled[chosen].sum(axis=1)
            n_low += int(np.count_nonzero(sums <= observed + tolerance))
            n_high += int(np.count_nonzero(sums >= observed - tolerance))
        low, high = (1 + n_low) / (1 + n_resamples), (1 + n_high) / (1 + n_resamples)
    if alternative == "greater":
        return float(high)
    if alternative == "less":
        return float(low)
    return float(min(1.0, 2.0 * min(low, high)))


def clustered_t_test(a: np.ndarray, b: np.ndarray, *, alternative: str = "two-sided", confidence: float = 0.95) -> dict:
    """A t-test of mean(a) − mean(b) that lets the k values of `a` share a component, the m of `b`
    being independent draws of the null distribution. Under the null hypothesis each value of `a`
    has the variance σ² of `b` but the k of them may be correlated (ρ ≥ 0), so their mean varies by
    σ²·(1 + (k − 1)ρ) / k (Kish's design effect). Their own spread shows how much they share: their
    variance is σ²(1 − ρ), so with σ² estimated by `b`'s variance s_b² the mean of `a` varies by
    max(s_b² / k, s_b² − (k − 1)/k · s_a²): s_b² when the k values are equal (one model counted
    once), s_b²/k when they vary at least like `b` (k independent models). t = difference / √(that +
    s_b²/m) on m − 1 degrees of freedom; for k equal values it is the pooled two-sample t-test of
    one value against `b`. Returns `p_value` (SciPy's `alternative` convention), `effective_models`
    (k / design effect, in [1, k]) and the `confidence` interval of the difference (`ci_low`,
    `ci_high`). p is NaN when `b` has fewer than 2 values; when `b` does not vary, p is 0 or 1
    (0.5 for no difference, one-sided)."""
    from scipy import stats

    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    k, m = len(a), len(b)
    nan = {"p_value": float("nan"), "effective_models": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    if k < 1 or m < 2:
        return nan
    null_var = float(np.var(b, ddof=1))
    own_var = float(np.var(a, ddof=1)) if k > 1 else 0.0
    mean_var = max(null_var / k, null_var - (k - 1) / k * own_var)
    difference = float(np.mean(a) - np.mean(b))
    se = math.sqrt(mean_var + null_var / m)
    effective = null_var / mean_var if mean_var > 0 else float(k)
    # A null distribution without spread: any difference is infinitely many of its SDs.
    no_spread = math.copysign(math.inf, difference) if difference else 0.0
    t = difference / se if se > 0 else no_spread
    distribution = stats.t(df=m - 1)
    greater, less = float(distribution.sf(t)), float(distribution.cdf(t))
    p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
    half = float(distribution.ppf(0.5 + confidence / 2)) * se
    return {"p_value": p, "effective_models": effective, "ci_low": difference - half, "ci_high": difference + half}


def hierarchical_bootstrap_ci(
    values_a: np.ndarray,
    values_b: np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(model means of a) − mean(model means of b), where a model's
    mean is over the test images (NaN skipped). `values_a` is (k models, n images), `values_b`
    (m, n), columns the same images. Each resample draws the n images with replacement — the same
    draw for every model, since the images are paired — then k models of a and m of b with
    replacement (deviations scaled for small groups, `_group_means`), so the interval carries the
    variation between models and between images. Resampling both levels counts the per-image noise
    of each model twice, so the interval is conservative when that noise dominates.
    (nan, nan) when a group has no model or no image has a value."""
    values_a = np.atleast_2d(np.asarray(values_a, dtype=np.float64))
    values_b = np.atleast_2d(np.asarray(values_b, dtype=np.float64))
    if values_a.shape[1] != values_b.shape[1]:
        raise ValueError(f"both groups need the same images (columns), got {values_a.shape} and {values_b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    k, m, n = len(values_a), len(values_b), values_a.shape[1]
    if k == 0 or m == 0 or n == 0:
        return float("nan"), float("nan")
    weights, rng = _image_weights(n, n_resamples, seed), np.random.default_rng([seed, 1])
    differences = _group_means(values_a, weights, rng) - _group_means(values_b, weights, rng)
    differences = differences[np.isfinite(differences)]
    if len(differences) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(differences, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


@functools.lru_cache(maxsize=1)
def _image_weights(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each image is drawn in each resample, (n, R): the same draws for every row of a table."""
    drawn = np.random.default_rng([seed, 0]).integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
    weights = np.ascontiguousarray(weights.T, dtype=np.float64)
    weights.flags.writeable = False
    return weights


def _group_means(values: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample: the model means over the resampled images (NaN skipped), then their mean over
    the group's models drawn with replacement. (R,)

    The models' deviations from their group mean are first scaled by sqrt(k / (k − 1)): the mean of
    k values drawn with replacement varies by (k − 1)/k · s²/k, a third too little with 3 models,
    and the interval would miss the true difference far more often than its level says."""
    present = ~np.isnan(values)
    if present.all():  # every resample holds n images
        model_means = values @ weights / weights.shape[0]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            model_means = (np.where(present, values, 0.0) @ weights) / (present.astype(np.float64) @ weights)
    k, n_resamples = values.shape[0], weights.shape[1]
    if k > 1:
        centre = np.nanmean(model_means, axis=0)
        model_means = centre + math.sqrt(k / (k - 1)) * (model_means - centre)
    picks = rng.integers(0, k, size=(n_resamples, k))
    return np.take_along_axis(model_means.T, picks, axis=1).mean(axis=1)


def model_level_table(
    metrics: pd.DataFrame,
    null_label: str = CONTROL,
    metrics_cols: Sequence[str] | None = None,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (augmentation, metric), augmentations other than the null models in table order:
    the augmentation's models against the null models (`null_label`) at the model level. Columns
    `MODEL_TEST_COLUMNS`: counts, the two groups' mean model summaries and their standard
    deviations (`sd`, `null_sd`), the effect (difference, in the metric's units) with its CI (level
    1 − alpha; the hull of the hierarchical bootstrap's and the clustered t-test's), the effect in
    standard deviations of the null models' summaries, the one-sided p-value (the augmentation's
    models further from the baseline than the null models: lower similarity, higher distance) —
    `p_value`, the larger of `p_permutation` and `p_clustered`, with `effective_models`, how many
    independent models the augmentation's seeds count as —, the design's smallest reachable p-value, the
    Benjamini–Hochberg adjusted p-value over the whole table, `significant` (p_adjusted < alpha),
    `direction` ("closer" / "further" from the baseline than the null models, from the metric's
    orientation) and `note` (why a row has no p-value: fewer than two models in a group, or a model
    summary that is not finite). `metrics` has one row per (model, test image)."""
    from augcam.analysis.names import higher_is_better  # loads the metric registry: only when tested

    metrics_cols = metric_columns(metrics) if metrics_cols is None else list(metrics_cols)
    metrics = metrics[metrics["augmentation"].astype(str) != BASELINE]
    # (models, images, metrics), NaN where a model has no value for an image.
    model_codes, model_ids = pd.factorize(metrics["model_id"])
    image_codes, images = pd.factorize(metrics["image_index"])
    cube = np.full((len(model_ids), len(images), len(metrics_cols)), np.nan)
    cube[model_codes, image_codes] = metrics[metrics_cols].to_numpy(np.float64)
    present = ~np.isnan(cube)
    with np.errstate(invalid="ignore"):
        summaries = np.where(present, cube, 0.0).sum(axis=1) / present.sum(axis=1)  # (models, metrics)
    labels = pd.Series(metrics["augmentation"].to_numpy(), index=model_codes).groupby(level=0).first()
    is_null = (labels.astype(str) == null_label).to_numpy()
    rows = []
    for augmentation in labels[~is_null].unique():
        in_group = (labels == augmentation).to_numpy()
        for j, col in enumerate(metrics_cols):
            row = _row(cube[in_group, :, j], cube[is_null, :, j], summaries[in_group, j], summaries[is_null, j])
            row.update(
                augmentation=augmentation, metric=col, direction=_direction(row["effect"], higher_is_better(col))
            )
            if not row["note"]:
                further = "less" if higher_is_better(col) else "greater"
                a, b = row.pop("_a"), row.pop("_b")
                clustered = clustered_t_test(a, b, alternative=further, confidence=1 - alpha)
                row["p_permutation"] = permutation_test(a, b, alternative=further, seed=seed)
                row["p_clustered"], row["effective_models"] = clustered["p_value"], clustered["effective_models"]
                row["p_value"] = max(row["p_permutation"], row["p_clustered"])
                low, high = hierarchical_bootstrap_ci(
                    row.pop("_values_a"), row.pop("_values_b"), 1 - alpha, n_resamples=n_resamples, seed=seed
                )
                row["effect_ci_low"] = min(low, clustered["ci_low"])
                row["effect_ci_high"] = max(high, clustered["ci_high"])
            rows.append(row)
    table = pd.DataFrame(rows, columns=MODEL_TEST_COLUMNS)
    table["p_adjusted"] = benjamini_hochberg(table["p_value"].to_numpy(np.float64)) if len(table) else []
    table["significant"] = table["p_adjusted"] < alpha
    return table


def _row(values_a: np.ndarray, values_b: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """A row before its test: counts, means, effect, spread; a `note` when no test is possible."""
    keep_a, keep_b = ~np.isnan(a), ~np.isnan(b)
    a, b = a[keep_a], b[keep_b]
    k, m = len(a), len(b)
    row = {
        "n_models": k,
        "n_null": m,
        "mean": float(np.mean(a)) if k else float("nan"),
        "null_mean": float(np.mean(b)) if m else float("nan"),
        "min_p": min_p_value(k, m),
        "sd": _spread(a),
        "null_sd": _spread(b),
        **dict.fromkeys(
            ["effect_ci_low", "effect_ci_high", "standardized_effect", "p_value", "p_permutation", "p_clustered"],
            float("nan"),
        ),
        "effective_models": float("nan"),
        "note": "",
    }
    with np.errstate(invalid="ignore"):
        row["effect"] = row["mean"] - row["null_mean"]
    if k < 2 or m < 2:
        row["note"] = f"fewer than 2 {'models' if k < 2 else 'null models'} with a value: no model-level test"
    elif not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        row["note"] = "a model's mean is not finite (an infinite per-image value): no model-level test"
    else:
        spread = row["null_sd"]
        row["standardized_effect"] = row["effect"] / spread if spread > 0 else float("nan")
        row.update(_a=a, _b=b, _values_a=values_a[keep_a], _values_b=values_b[keep_b])
    return row


def _spread(values: np.ndarray) -> float:
    """Sample standard deviation of finite model summaries; NaN for fewer than two or any infinite."""
    return float(np.std(values, ddof=1)) if len(values) > 1 and np.all(np.isfinite(values)) else float("nan")


def _direction(effect: float, higher_is_better: bool) -> str:
    if not np.isfinite(effect) or effect == 0:
        return ""
    return "closer" if (effect > 0) == higher_is_better else "further"
