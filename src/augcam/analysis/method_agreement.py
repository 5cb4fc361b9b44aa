"""Do the CAM methods agree? (cam.extra_methods)

A conclusion such as "random_crop moves the CAMs most" should not depend on the CAM method. With
several methods in a study, every metric is computed once per method; for each metric, the
augmentations are ranked by their median (over test images, of the seed-averaged value) under each
method, and two methods agree when those rankings do: Spearman's rank correlation of the medians
(SciPy), one value per (metric, pair of methods).
"""

from __future__ import annotations

import itertools

import pandas as pd

from augcam.analysis.run_tables import metric_columns

__all__ = ["method_medians", "method_agreement"]


def method_medians(metrics: pd.DataFrame, method_metrics: pd.DataFrame, main_method: str) -> pd.DataFrame:
    """Long table (method, augmentation, metric, median): the main method's rows (metrics.parquet)
    and every extra method's (method_metrics.parquet), seed-averaged per image, then the median
    over images. Methods and augmentations keep the study's order."""
    columns = metric_columns(metrics)
    both = pd.concat([metrics.assign(method=main_method), method_metrics], ignore_index=True)
    per_image = both.groupby(["method", "augmentation", "image_index"], sort=False)[columns].mean()
    medians = per_image.groupby(level=["method", "augmentation"], sort=False).median()
    return medians.reset_index().melt(id_vars=["method", "augmentation"], var_name="metric", value_name="median")


def method_agreement(medians: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, method_a, method_b): Spearman's rho between the two methods' medians
    over the augmentations (`n_augmentations` of them). NaN when fewer than three augmentations or
    a constant ranking leave it undefined."""
    from scipy import stats

    rows = []
    methods = list(dict.fromkeys(medians["method"]))
    for metric, group in medians.groupby("metric", sort=False):
        wide = group.pivot(index="augmentation", columns="method", values="median").dropna()
        for a, b in itertools.combinations(methods, 2):
            rho = float("nan")
            if len(wide) >= 3 and wide[a].nunique() > 1 and wide[b].nunique() > 1:
                rho = float(stats.spearmanr(wide[a], wide[b]).statistic)
            rows.append({"metric": metric, "method_a": a, "method_b": b, "spearman": rho, "n_augmentations": len(wide)})
    return pd.DataFrame(rows, columns=["metric", "method_a", "method_b", "spearman", "n_augmentations"])
