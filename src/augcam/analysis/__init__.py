"""Stage 10 (report) of a study: analyses, figures and the HTML report of a finished run directory.

    from augcam.analysis import write_report
    write_report("runs/quick")           # tables/*.csv, figures/*.png|svg, report.html

    from augcam.analysis import load_run, correlation_maps, pair_frequencies
    run = load_run("runs/quick")
    maps = correlation_maps(run.aggregated)            # {metric: DataFrame augmentations × augmentations}
    strongest, weakest = pair_frequencies(maps, k=4)

Every analysis is a function returning a DataFrame (`tables`, `statistics`, `impact_profiles`)
or a matplotlib Figure (`plots`, `control_plots`, `cam_grid_figures`); `write_report` runs them
all and writes the results (`render_report` when the caller already holds the run's lock). The
controls' analyses (noise floor and significance, augmentation vs augmentation, sanity check) run
when the run has their tables:

    significance_vs_noise(run.aggregated, run.noise)   # tables/significance.csv
    significance_vs_identity(run.aggregated)           # tables/significance_vs_identity.csv
    impact_clusters_table(run.aggregated)              # tables/clusters.csv
"""

# Imported lazily (module → names), so that a light module of the package (`published`, which the
# config's validation reads, or `statistics`) does not load matplotlib and every analysis with it.
_EXPORTS = {
    "augcam.analysis.report": ("write_report", "render_report"),
    "augcam.analysis.analyses": ("analyse", "Analyses"),
    "augcam.analysis.run_tables": ("load_run", "RunTables", "ReportError", "metric_columns", "augmentation_label"),
    "augcam.analysis.names": ("display_name",),
    "augcam.analysis.tables": (
        "performance_summary",
        "training_histories",
        "correlation_maps",
        "pair_frequencies",
        "SEGMENTS",
        "segment",
        "segment_counts",
        "segment_medians",
        "extreme_images",
        "summary_table",
        "between_augmentation_medians",
        "between_matrix",
        "sanity_verdicts",
    ),
    "augcam.analysis.statistics": (
        "noise_floor_summary",
        "significance_vs_noise",
        "significance_vs_identity",
        "noise_verdicts",
    ),
    "augcam.analysis.model_tests": (
        "model_level_table",
        "model_summaries",
        "permutation_test",
        "hierarchical_bootstrap_ci",
    ),
    "augcam.analysis.design": ("design_limits", "min_p_value"),
    "augcam.analysis.impact_profiles": ("impact_clusters_table",),
    "augcam.analysis.plots": (
        "performance_bars",
        "training_curves",
        "metric_boxplot",
        "correlation_heatmap",
        "segmented_boxplot",
    ),
    "augcam.analysis.cam_grid_figures": ("extreme_image_grid", "extreme_image_figures"),
    "augcam.analysis.control_plots": ("significance_forest", "cluster_dendrograms", "between_heatmaps", "sanity_curve"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        import importlib

        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'augcam.analysis' has no attribute {name!r}")
