"""Stage 6, aggregate: each metric's mean over the seeds of an augmentation, per test image →
tables/aggregated.parquet (one row per (augmentation, test image))."""

from __future__ import annotations

from typing import Any

import pandas as pd

from augcam.analysis.run_tables import metric_columns
from augcam.atomic import write_parquet
from augcam.pipeline.context import StageContext
from augcam.pipeline.stages.base import Stage
from augcam.rundir import AGGREGATED_TABLE, METRICS_TABLE


def aggregate_over_seeds(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (augmentation, test image): each metric's mean over the seeds where it is
    defined (NaN only if it is undefined for every seed), and the number of models averaged."""
    if metrics.empty:
        return pd.DataFrame()
    columns = metric_columns(metrics)
    grouped = metrics.groupby(["augmentation", "image_index"], sort=False)
    aggregated = grouped[columns].mean()
    aggregated.insert(0, "n_models", grouped.size())
    aggregated.insert(0, "baseline_pred", grouped["baseline_pred"].first())
    aggregated.insert(0, "label", grouped["label"].first())
    return aggregated.reset_index()


class AggregateStage(Stage):
    name = "aggregate"
    reads = (f"tables/{METRICS_TABLE}",)
    writes = (f"tables/{AGGREGATED_TABLE}",)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        aggregated = aggregate_over_seeds(ctx.tables["metrics"])
        write_parquet(ctx.run_dir.table(AGGREGATED_TABLE), aggregated)
        ctx.tables["aggregated"] = aggregated
        return {"rows": len(aggregated)}
