"""The summary `augcam run` prints at the end of a study: test performance per augmentation and
each metric's median over the test images (with the noise floor's, when the study has one)."""

from __future__ import annotations

import pandas as pd
from rich.table import Table

from augcam.analysis.run_tables import metric_columns
from augcam.analysis.statistics import noise_floor
from augcam.pipeline.runner import StudyResult
from augcam.rundir import NOISE_FLOOR_TABLE, RunDir


def summary_tables(result: StudyResult) -> list[Table]:
    """Performance per augmentation (mean over seeds) and the median of each metric."""
    perf = result.performance[result.performance["status"] == "complete"]
    by_aug = perf.groupby("augmentation", sort=False)[["test_accuracy", "f1", "best_val_accuracy"]]
    perf_table = Table(title="Test performance (mean over seeds)")
    for col in ("augmentation", "models", "test accuracy", "macro F1", "best val acc"):
        perf_table.add_column(col, justify="left" if col == "augmentation" else "right")
    means, counts = by_aug.mean(), by_aug.size()
    for aug, row in means.iterrows():
        perf_table.add_row(
            str(aug), str(counts[aug]), f"{row.test_accuracy:.4f}", f"{row.f1:.4f}", f"{row.best_val_accuracy:.4f}"
        )
    tables = [perf_table]
    if not result.aggregated.empty:
        columns = metric_columns(result.metrics)
        medians = result.aggregated.groupby("augmentation", sort=False)[columns].median()
        metric_table = Table(title="Median over test images of the seed-averaged metric (vs baseline)")
        metric_table.add_column("augmentation")
        for col in columns:
            metric_table.add_column(col, justify="right")
        for aug, row in medians.iterrows():
            metric_table.add_row(str(aug), *(f"{row[col]:.4f}" for col in columns))
        noise_path = RunDir(result.out).table(NOISE_FLOOR_TABLE)
        if noise_path.exists():
            noise = noise_floor(pd.read_parquet(noise_path), columns).median()
            metric_table.add_row(
                "[italic]noise floor (baseline replicas)[/]",
                *(f"{noise[col]:.4f}" for col in columns),
                end_section=False,
            )
        tables.append(metric_table)
    return tables
