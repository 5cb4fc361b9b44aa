"""Statistics that turn per-image metric values into conclusions that hold up.

Randomness alone moves CAMs: models that differ only in seed or data order disagree on a sizeable
share of their explanations (Watson et al., WACV 2022), and Grad-CAM maps move with the
initialisation (Woerl et al., CVPR 2023). So an augmentation's effect is tested against the
*noise floor* — the same metric between the baseline and baselines retrained with another
ordering or init seed — on the same test images, not against zero:

    significance_table(aggregated, noise, metrics)   # one row per (augmentation, metric)

Each row has the median of the metric with a bootstrap 95% CI over test images, the median of the
noise floor, the effect (median of the per-image paired difference, with its CI), the Wilcoxon
signed-rank p-value of that paired difference and the Holm-adjusted p-value over every
(augmentation, metric) row of the table. The heavy lifting is SciPy's (`scipy.stats.bootstrap`,
`scipy.stats.wilcoxon`); Holm's step-down adjustment is a few lines and is tested on textbook
inputs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["bootstrap_ci", "holm", "paired_test", "significance_table", "noise_floor"]

SIGNIFICANCE_COLUMNS = ["augmentation", "metric", "n_images", "median", "ci_low", "ci_high",
                        "noise_floor_median", "effect", "effect_ci_low", "effect_ci_high", "p_value",
                        "p_adjusted", "significant"]


def bootstrap_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the median of `values` (NaNs dropped); (nan, nan) if fewer than
    two values. Percentile rather than BCa: BCa's jackknife is unstable for medians of data with
    many ties, which CAM metrics (overlap rates) have."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):  # a constant sample: every resample has the same median
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.median, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_test(values: np.ndarray, reference: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of `values - reference`, pairs with a NaN dropped.

    Zero differences are dropped (Wilcoxon's original treatment); all-zero differences give p = 1
    (no evidence of any difference) and fewer than two usable pairs give NaN."""
    from scipy import stats

    values, reference = np.asarray(values, np.float64), np.asarray(reference, np.float64)
    if values.shape != reference.shape:
        raise ValueError(f"paired samples must have the same shape, got {values.shape} and {reference.shape}")
    difference = values - reference
    difference = difference[~np.isnan(difference)]
    if len(difference) < 2:
        return float("nan")
    if not np.any(difference):
        return 1.0
    return float(stats.wilcoxon(difference, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (controls the family-wise error rate). NaN p-values stay NaN
    and do not count in the family size."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    m = len(defined)
    if m == 0:
        return adjusted
    order = defined[np.argsort(p[defined], kind="stable")]
    # (m - rank) · p_(rank), made monotone so a smaller raw p never gets a larger adjusted one.
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def noise_floor(replica_metrics: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per test image, the mean of each metric over the baseline replicas (rows of the per-model
    metric table whose model is a replica of the baseline): the similarity expected from
    randomness alone. Indexed by `image_index`."""
    if replica_metrics.empty:
        raise ValueError("the noise floor needs the metric rows of at least one baseline replica")
    return replica_metrics.groupby("image_index")[list(metrics)].mean()


def significance_table(aggregated: pd.DataFrame, noise: pd.DataFrame, metrics: Sequence[str],
                       alpha: float = 0.05, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (augmentation, metric): the metric's median with a bootstrap CI over test images,
    the noise floor's median, the effect (median paired difference augmentation − noise floor,
    with a CI), the Wilcoxon p-value and the Holm-adjusted p-value across every row.

    `aggregated` is the seed-averaged table (augmentation, image_index, metrics…); `noise` is
    `noise_floor(...)`, indexed by image_index. Images are paired by `image_index`."""
    rows = []
    for augmentation, group in aggregated.groupby("augmentation", sort=False):
        group = group.set_index("image_index")
        missing = group.index.difference(noise.index)
        if len(missing):
            raise ValueError(f"the noise floor lacks {len(missing)} of augmentation {augmentation!r}'s "
                             f"test images (e.g. image {missing[0]})")
        paired_noise = noise.loc[group.index]
        for metric in metrics:
            values = group[metric].to_numpy(np.float64)
            reference = paired_noise[metric].to_numpy(np.float64)
            difference = values - reference
            low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
            effect_low, effect_high = bootstrap_ci(difference, n_resamples=n_resamples, seed=seed)
            rows.append({
                "augmentation": augmentation, "metric": metric,
                "n_images": int(np.sum(~np.isnan(difference))),
                "median": float(np.nanmedian(values)) if np.any(~np.isnan(values)) else float("nan"),
                "ci_low": low, "ci_high": high,
                "noise_floor_median": float(np.nanmedian(reference)) if np.any(~np.isnan(reference))
                else float("nan"),
                "effect": float(np.nanmedian(difference)) if np.any(~np.isnan(difference)) else float("nan"),
                "effect_ci_low": effect_low, "effect_ci_high": effect_high,
                "p_value": paired_test(values, reference),
            })
    table = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS[:-2])
    table["p_adjusted"] = holm(table["p_value"].to_numpy()) if len(table) else []
    table["significant"] = table["p_adjusted"] < alpha
    return table
