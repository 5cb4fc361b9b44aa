"""Every table of the report, computed from a loaded run: `analyse(load_run(run_dir))`.

Pure: nothing is drawn or written here (`augcam.analysis.report.write_report` does that), so the
same `Analyses` can be inspected, tested, or written elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from augcam.analysis.design import design_limits
from augcam.analysis.impact_profiles import impact_clusters_table
from augcam.analysis.model_tests import model_level_table, model_summaries
from augcam.analysis.run_tables import BASELINE, CONTROL, RunTables, augmentation_order
from augcam.analysis.statistics import (
    noise_floor_summary,
    noise_verdicts,
    significance_vs_identity,
    significance_vs_noise,
)
from augcam.analysis.tables import (
    between_augmentation_medians,
    correlation_maps,
    extreme_images,
    pair_frequencies,
    performance_summary,
    sanity_verdicts,
    segment_counts,
    segment_medians,
    summary_table,
    training_histories,
)

__all__ = ["Analyses", "analyse", "DEFAULT_PAIRS", "DEFAULT_RESAMPLES"]

DEFAULT_PAIRS = 4
DEFAULT_RESAMPLES = 2000  # bootstrap resamples of every CI of the significance table
MIN_NULL_MODELS = 2  # the model-level test needs a spread of the null models


@dataclass
class Analyses:
    """Every table of the report, computed from a run's tables."""

    order: list[str]
    metrics: list[str]
    performance: pd.DataFrame
    histories: pd.DataFrame
    correlations: dict[str, pd.DataFrame]
    strongest: pd.DataFrame
    weakest: pd.DataFrame
    segment_counts: pd.DataFrame
    segment_medians: pd.DataFrame
    extremes: pd.DataFrame
    summary: pd.DataFrame
    clusters: pd.DataFrame
    # The model-level test: each augmentation's models against the null models (the identity
    # control's models); None when the run has fewer than MIN_NULL_MODELS of them.
    null_models: int = 0
    model_level: pd.DataFrame | None = None
    model_summaries: pd.DataFrame | None = None  # one row per model: its mean per-image value per metric
    design: dict | None = None  # design_limits(smallest models per augmentation, null models)
    # From the controls' tables; None when the run has no such table (controls off).
    noise_summary: pd.DataFrame | None = None
    significance: pd.DataFrame | None = None
    noise_verdicts: pd.DataFrame | None = None
    significance_identity: pd.DataFrame | None = None  # each augmentation vs the identity control
    between: pd.DataFrame | None = None
    sanity: pd.DataFrame | None = None
    sanity_verdicts: pd.DataFrame | None = None

    def csv_files(self) -> dict[str, str]:
        """File name under tables/ → CSV text."""
        files = {"performance_summary.csv": self.performance.to_csv(index=False)}
        for metric, corr in self.correlations.items():
            files[f"correlation_{metric}.csv"] = corr.to_csv()
        files.update(
            {
                "pairs_strongest.csv": self.strongest.to_csv(index=False),
                "pairs_weakest.csv": self.weakest.to_csv(index=False),
                "segment_counts.csv": self.segment_counts.to_csv(index=False),
                "segment_medians.csv": self.segment_medians.to_csv(index=False),
                "extreme_images.csv": self.extremes.to_csv(index=False),
                "summary.csv": self.summary.to_csv(index=False),
                "clusters.csv": self.clusters.to_csv(index=False),
            }
        )
        optional = {
            "model_tests.csv": self.model_level,
            "noise_floor_summary.csv": self.noise_summary,
            "significance.csv": self.significance,
            "significance_vs_identity.csv": self.significance_identity,
            "between_augmentations_median.csv": self.between,
            "sanity_verdict.csv": self.sanity_verdicts,
        }
        files.update({name: table.to_csv(index=False) for name, table in optional.items() if table is not None})
        return files


def analyse(tables: RunTables, pairs: int = DEFAULT_PAIRS, n_resamples: int = DEFAULT_RESAMPLES) -> Analyses:
    """All analyses of a loaded run (`augcam.analysis.load_run`); those of the controls only when
    the run has their tables."""
    order = augmentation_order(tables.performance)
    metrics = tables.metric_names
    correlations = correlation_maps(tables.aggregated, order)
    strongest, weakest = pair_frequencies(correlations, pairs)
    controls: dict[str, Any] = _model_level(tables, metrics, n_resamples)
    if tables.noise is not None:
        significance = significance_vs_noise(tables.aggregated, tables.noise, metrics, order, n_resamples=n_resamples)
        controls.update(
            noise_summary=noise_floor_summary(tables.noise, metrics),
            significance=significance,
            noise_verdicts=noise_verdicts(significance),
        )
    controls["significance_identity"] = significance_vs_identity(
        tables.aggregated, metrics, order, n_resamples=n_resamples
    )
    if tables.between is not None:
        controls["between"] = between_augmentation_medians(tables.between, metrics, order)
    if tables.sanity is not None:
        controls.update(sanity=tables.sanity, sanity_verdicts=sanity_verdicts(tables.sanity))
    return Analyses(
        order=order,
        metrics=metrics,
        performance=performance_summary(tables.performance),
        histories=training_histories(tables),
        correlations=correlations,
        strongest=strongest,
        weakest=weakest,
        segment_counts=segment_counts(tables.metrics, order),
        segment_medians=segment_medians(tables.metrics, order),
        extremes=extreme_images(tables.aggregated),
        summary=summary_table(tables.performance, tables.aggregated, tables.metrics),
        clusters=impact_clusters_table(tables.aggregated, metrics, order),
        **controls,
    )


def _model_level(tables: RunTables, metrics: list[str], n_resamples: int) -> dict[str, Any]:
    """The model-level test's fields of `Analyses`: the number of null models, the design limits
    (smallest number of models of an augmentation against the null models), and the table and the
    per-model summaries when there are at least MIN_NULL_MODELS null models."""
    per_augmentation = tables.metrics.groupby("augmentation", sort=False)["model_id"].nunique()
    null = int(per_augmentation.get(CONTROL, 0))
    others = per_augmentation.drop([CONTROL, BASELINE], errors="ignore")
    fields: dict[str, Any] = {"null_models": null}
    if len(others):
        fields["design"] = design_limits(int(others.min()), null, augmentations=len(others))
    if null >= MIN_NULL_MODELS:
        fields["model_level"] = model_level_table(
            tables.metrics, null_label=CONTROL, metrics_cols=metrics, n_resamples=n_resamples
        )
        fields["model_summaries"] = model_summaries(tables.metrics, metrics)
    return fields
