"""The report's figures, drawn and rendered to PNG and SVG bytes in memory, with their captions.

Rendering is reproducible: the SVGs have a fixed hash salt and no date, so a rerun writes the same
bytes; nothing is written to disk here (`augcam.analysis.report` does that).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from augcam.analysis.analyses import Analyses
from augcam.analysis.cam_grid_figures import extreme_image_figures
from augcam.analysis.cam_grids import CamSets, TestImages
from augcam.analysis.control_plots import (
    between_heatmaps,
    cluster_dendrograms,
    model_summary_dots,
    sanity_curve,
    significance_forest,
)
from augcam.analysis.gallery_figure import gallery_figure
from augcam.analysis.names import display_name
from augcam.analysis.plots import (
    correlation_heatmap,
    metric_boxplot,
    performance_bars,
    segmented_boxplot,
    training_curves,
)
from augcam.analysis.run_tables import BASELINE, RunTables
from augcam.analysis.tables import SANITY_THRESHOLD, segment

if TYPE_CHECKING:
    from augcam.pipeline.gallery import AugmentationGallery

__all__ = ["FIGURE_DPI", "RenderedFigure", "build_figures", "render_figure"]

FIGURE_DPI = 150


@dataclass
class RenderedFigure:
    name: str  # file stem under figures/
    caption: str
    png: bytes
    svg: bytes

    @property
    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def render_figure(fig, name: str, caption: str) -> RenderedFigure:
    import matplotlib

    png, svg = io.BytesIO(), io.BytesIO()
    # A fixed hash salt and no date make the SVG the same bytes on every rerun. Text stays text
    # (fonttype "none"): editable in a vector editor, smaller, and faster to write than glyph paths.
    with matplotlib.rc_context({"svg.hashsalt": "augcam", "svg.fonttype": "none"}):
        fig.savefig(png, format="png", dpi=FIGURE_DPI)
        # The layout solved for the PNG holds for the SVG (positions are fractions of the figure,
        # text sizes are in points): solving it again would double the time spent on layout.
        fig.set_layout_engine("none")
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return RenderedFigure(name, caption, png.getvalue(), svg.getvalue())


def build_figures(
    tables: RunTables,
    result: Analyses,
    images: TestImages | None,
    cams: CamSets,
    gallery: AugmentationGallery | None = None,
) -> list[RenderedFigure]:
    """Every figure of the report, drawn and rendered in the report's order (the augmentation
    gallery first, when given)."""
    order, metrics = result.order, result.metrics
    rendered = []
    if gallery is not None:
        rendered.append(
            render_figure(
                gallery_figure(gallery),
                "gallery",
                "The same training images as each studied augmentation made them under each seed, through "
                "the training loop's code and random stream (top row: as loaded).",
            )
        )
    rendered += [
        render_figure(
            performance_bars(tables.performance, order),
            "performance",
            "Test accuracy, macro precision, recall and F1 per augmentation: bar = mean over seeds, "
            "error bar = ±1 standard deviation, dots = single seeds; compare each bar with the baseline's.",
        ),
        render_figure(
            training_curves(result.histories, order),
            "training_curves",
            "Train/validation accuracy and loss per epoch, one line per model: diverging train and "
            "validation curves mean over-fitting; the best-validation epoch is the model explained.",
        ),
    ]
    for m in metrics:
        rendered.append(
            render_figure(
                metric_boxplot(tables.aggregated, m, order),
                f"distribution_{m}",
                f"{display_name(m)} between each augmentation's CAM and the baseline's, one value "
                "per test image (mean over seeds); box = quartiles, line = median, dots = outliers.",
            )
        )
    for m in metrics:
        rendered.append(
            render_figure(
                correlation_heatmap(result.correlations[m], m),
                f"correlation_{m}",
                f"Pearson correlation over the test images of {display_name(m)} between two "
                "augmentations: high = the two change the CAMs of the same images in the same way.",
            )
        )
    # A dendrogram needs two augmentations with metrics (a diverged model has none).
    compared = set(tables.aggregated["augmentation"])
    if len([a for a in order if a != BASELINE and a in compared]) >= 2:
        rendered.append(
            render_figure(
                cluster_dendrograms(tables.aggregated, metrics, order),
                "clusters",
                "Average-linkage dendrograms of the augmentations' impact profiles (all metrics, "
                "then each metric): augmentations joined at a small distance change the CAMs of "
                "the same images alike; one colour per cluster below the dashed cut.",
            )
        )
    if result.between is not None and len(result.between):
        rendered.append(
            render_figure(
                between_heatmaps(result.between, metrics, order),
                "between_augmentations",
                "Median over the test images of each metric between two augmented models' CAMs "
                "(same seed, averaged over seeds); the brighter the cell, the more alike the two "
                "augmentations' CAMs (the colour scale is reversed for distances).",
            )
        )
    if result.model_level is not None and result.model_summaries is not None:
        rendered.append(
            render_figure(
                model_summary_dots(result.model_summaries, result.model_level, metrics, order),
                "model_summaries",
                "Each trained model's mean over the test images of each metric against the baseline: "
                "the null models grey (and their range as a grey band), each augmentation's models in "
                "its colour, its mean as a bar; filled = the model-level test finds a difference from "
                "the null models (Benjamini–Hochberg, 0.05), hollow = not distinguishable.",
            )
        )
    if result.significance is not None:
        rendered.append(
            render_figure(
                significance_forest(result.significance, metrics, order),
                "noise_effects",
                "Descriptive: median over the test images of the per-image difference between each "
                "augmentation's seed-averaged value and the replicas' noise floor (0, dashed), with its "
                "95% bootstrap CI over images; filled = per-image Wilcoxon p < 0.05 after Holm's "
                "adjustment. The test images are the only randomness here: not a verdict about the "
                "augmentation (see the model-level test).",
            )
        )
    if result.sanity is not None:
        rendered.append(
            render_figure(
                sanity_curve(result.sanity),
                "sanity",
                "Cascading randomisation of the baseline's layers (output first): Spearman between "
                "the trained model's CAMs and the randomised model's, median and quartile band; a "
                f"sound method falls inside the dotted ±{SANITY_THRESHOLD:g} lines by the last "
                "layer (diamond: model trained on permuted labels).",
            )
        )
    segments = segment(tables.metrics)
    for m in metrics:
        rendered.append(
            render_figure(
                segmented_boxplot(tables.metrics, m, order, segments),
                f"segmented_{m}",
                f"{display_name(m)} split by whether the baseline and the augmented model "
                "classify the image correctly (one value per model and image, seeds pooled); "
                "the small numbers count the values in each box.",
            )
        )
    grids = extreme_image_figures(tables, result.extremes, images, cams)
    for (m, criterion), fig in grids.items():
        what = "mean" if criterion == "highest mean" else "std"
        rendered.append(
            render_figure(
                fig,
                f"extreme_{m}_{what}",
                f"The test image whose {display_name(m)} has the {criterion} across "
                "augmentations: CAMs overlaid on the image (red = high); top row one seed, "
                "bottom row the mean of the seeds' maps; → = predicted class.",
            )
        )
    return rendered
