"""The mask-guided section of the report (Viviano et al.): generalisation against localisation.

A pure function of the run's tables: `performance.parquet` (test accuracy and ROC AUC per model),
`localisation.parquet` (per model and test image, the CAM against the image's ROI mask) and
`aggregated.parquet` (the CAM comparison metrics vs the baseline, seed-averaged per image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from augcam.analysis.run_tables import BASELINE, augmentation_order, metric_columns
from augcam.rundir import LOCALISATION_TABLE, RunDir

__all__ = ["generalisation_vs_localisation", "auc_localisation_correlation", "load_localisation"]

ID_COLUMNS = ("model_id", "augmentation", "seed", "image_index", "label", "model_pred")


def _localisation_metrics(localisation: pd.DataFrame) -> list[str]:
    return [c for c in localisation.columns if c not in ID_COLUMNS]


def _per_model(performance: pd.DataFrame, localisation: pd.DataFrame) -> pd.DataFrame:
    """One row per complete model: test accuracy, ROC AUC and the mean of each localisation metric
    over the test images where it is defined."""
    metrics = _localisation_metrics(localisation)
    means = localisation.groupby("model_id", sort=False)[metrics].mean()
    perf = performance[performance["status"] == "complete"].set_index("model_id")
    return perf[["augmentation", "test_accuracy", "roc_auc"]].join(means, how="inner").reset_index()


def generalisation_vs_localisation(
    performance: pd.DataFrame, localisation: pd.DataFrame, aggregated: pd.DataFrame
) -> pd.DataFrame:
    """Per method (baseline first, then the study's order): models, mean and std over seeds of
    test accuracy, ROC AUC and each localisation metric's per-model mean; then the median over test
    images of each seed-averaged CAM metric vs the baseline (NaN for the baseline itself)."""
    per_model = _per_model(performance, localisation)
    values = ["test_accuracy", "roc_auc", *_localisation_metrics(localisation)]
    cam_metrics = metric_columns(aggregated) if not aggregated.empty else []
    medians = aggregated.groupby("augmentation", sort=False)[cam_metrics].median() if cam_metrics else None
    rows = []
    for method in [a for a in augmentation_order(performance) if a in set(per_model["augmentation"])]:
        group = per_model[per_model["augmentation"] == method]
        row: dict = {"augmentation": method, "models": len(group)}
        for column in values:
            row[f"{column}_mean"] = group[column].mean()
            row[f"{column}_std"] = group[column].std(ddof=1) if len(group) > 1 else np.nan
        for column in cam_metrics:
            row[f"{column}_vs_baseline"] = (
                medians.loc[method, column] if method != BASELINE and method in medians.index else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


def auc_localisation_correlation(performance: pd.DataFrame, localisation: pd.DataFrame) -> pd.DataFrame:
    """Across every model of the study, Spearman's rank correlation between test ROC AUC and each
    localisation metric's per-model mean: does saliency–mask agreement track generalisation?"""
    per_model = _per_model(performance, localisation)
    rows = []
    for metric in _localisation_metrics(localisation):
        pair = per_model[["roc_auc", metric]].dropna()
        rho = stats.spearmanr(pair["roc_auc"], pair[metric]).statistic if len(pair) > 2 else np.nan
        rows.append({"metric": metric, "models": len(pair), "spearman_with_auc": float(rho)})
    return pd.DataFrame(rows)


def load_localisation(root: Path) -> pd.DataFrame | None:
    """tables/localisation.parquet, or None when the study made none (a dataset without masks)."""
    path = RunDir(root).table(LOCALISATION_TABLE)
    return pd.read_parquet(path) if path.exists() else None
