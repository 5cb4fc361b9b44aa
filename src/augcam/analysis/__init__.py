"""Stage 5 of a study: analyses, figures and the HTML report of a finished run directory.

    from augcam.analysis import write_report
    write_report("runs/quick")           # tables/*.csv, figures/*.png|svg, report.html

    from augcam.analysis import load_run, correlation_maps, pair_frequencies
    run = load_run("runs/quick")
    maps = correlation_maps(run.aggregated)            # {metric: DataFrame augmentations × augmentations}
    strongest, weakest = pair_frequencies(maps, k=4)

Every analysis is a function returning a DataFrame (`tables`) or a matplotlib Figure (`plots`);
`write_report` runs them all and writes the results. The controls' analyses (noise floor and
significance, augmentation vs augmentation, sanity check) run when the run has their tables:

    significance_vs_noise(run.aggregated, run.noise)   # tables/significance.csv
    significance_vs_identity(run.aggregated)           # tables/significance_vs_identity.csv
    impact_clusters_table(run.aggregated)              # tables/clusters.csv
"""

from augcam.analysis.plots import (between_heatmaps, cluster_dendrograms, correlation_heatmap, extreme_image_grid,
                                   metric_boxplot, performance_bars, sanity_curve, segmented_boxplot,
                                   significance_forest, training_curves)
from augcam.analysis.report import Analyses, analyse, extreme_image_figures, write_report
from augcam.analysis.tables import (SEGMENTS, ReportError, RunTables, augmentation_label,
                                    between_augmentation_medians, between_matrix, correlation_maps, display_name,
                                    extreme_images, impact_clusters_table, load_run, metric_columns,
                                    noise_floor_summary, noise_verdicts, pair_frequencies, performance_summary,
                                    sanity_verdicts, segment, segment_counts, segment_medians,
                                    significance_vs_identity, significance_vs_noise, summary_table,
                                    training_histories)

__all__ = [
    "write_report", "analyse", "Analyses", "load_run", "RunTables", "ReportError", "metric_columns",
    "display_name", "performance_summary", "training_histories", "correlation_maps", "pair_frequencies",
    "SEGMENTS", "segment", "segment_counts", "segment_medians", "extreme_images", "summary_table",
    "performance_bars", "training_curves", "metric_boxplot", "correlation_heatmap", "segmented_boxplot",
    "extreme_image_grid", "extreme_image_figures", "augmentation_label", "noise_floor_summary",
    "significance_vs_noise", "significance_vs_identity", "noise_verdicts", "impact_clusters_table", "between_augmentation_medians",
    "between_matrix", "sanity_verdicts", "significance_forest", "cluster_dendrograms", "between_heatmaps",
    "sanity_curve",
]
