"""The extreme-image CAM grids: a test image with the baseline's and every augmented model's CAM
over it, as a matplotlib `Figure` built without pyplot (as in `augcam.analysis.plots`).

`extreme_image_figures` draws one grid per row of the extreme-images table from the stored CAMs
and the test images (`augcam.analysis.cam_grids`); `extreme_image_grid` lays out given panels.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from augcam.analysis.cam_grids import CamSets, TestImages
from augcam.analysis.names import display_name
from augcam.analysis.run_tables import BASELINE, RunTables, augmentation_order, studied_rows

__all__ = ["CAM_COLORMAP", "CamPanel", "extreme_image_grid", "extreme_image_figures"]

CAM_COLORMAP = "jet"  # the colormap CAM overlays conventionally use (pytorch-grad-cam's default)


@dataclass
class CamPanel:
    """One map of an extreme-image grid: an input-sized CAM in [0, 1] and its caption."""

    title: str
    cam: np.ndarray  # (H, W)


def _overlay(image: np.ndarray | None, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB of the colour-mapped CAM blended over the image (or the CAM alone without an image)."""
    heat = colormaps[CAM_COLORMAP](np.clip(cam, 0, 1))[..., :3]
    if image is None:
        return heat
    return (1 - alpha) * image + alpha * heat


def extreme_image_grid(
    image: np.ndarray | None,
    image_title: str,
    baseline: CamPanel,
    seed_panels: Sequence[CamPanel],
    mean_panels: Sequence[CamPanel],
    title: str,
) -> Figure:
    """The image, the baseline CAM and every augmented model's CAM overlaid on the image: the top
    row one seed per augmentation, the bottom row the mean over seeds of the (input-sized) maps.

    `image` is (H, W, 3) float in [0, 1], or None when the test images are not available (the
    CAMs are then drawn alone)."""
    cols = len(seed_panels) + 2
    # Every panel is an image placed in ONE axes whose data coordinates are inches from the top
    # left corner: a grid of ~20 separate axes made this figure the slowest of the report (each
    # axes lays out ticks and titles even when hidden).
    panel, gap, top, caption, bar = 1.25, 0.2, 0.45, 0.52, 0.9  # inches; captions hold 3 lines
    width = cols * panel + (cols + 1) * gap + bar
    height = top + 2 * (caption + panel) + 0.15
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)

    def place(row: int, col: int, rgb: np.ndarray | None, text: str, centre_text: str = "") -> None:
        left = gap + col * (panel + gap)
        upper = top + row * (caption + panel) + caption
        if rgb is not None:
            ax.imshow(rgb, extent=(left, left + panel, upper + panel, upper), interpolation="nearest", aspect="auto")
        if text:
            ax.text(left + panel / 2, upper - 0.04, text, ha="center", va="bottom", fontsize=7)
        if centre_text:
            ax.text(left + panel / 2, upper + panel / 2, centre_text, ha="center", va="center", fontsize=7)

    place(0, 0, image, image_title, "" if image is not None else "test image\nnot available")
    place(0, 1, _overlay(image, baseline.cam), baseline.title)
    for k, (upper_panel, lower_panel) in enumerate(zip(seed_panels, mean_panels)):
        place(0, k + 2, _overlay(image, upper_panel.cam), upper_panel.title)
        place(1, k + 2, _overlay(image, lower_panel.cam), lower_panel.title)
    place(1, 0, None, "", "top: one seed\nbottom: mean of\nthe seeds' maps")
    ax.set_xlim(0, width)  # imshow resets the limits to the images' extent
    ax.set_ylim(height, 0)
    bar_axes = fig.add_axes(((width - bar + 0.1) / width, 0.15 / height, 0.12 / width, (2 * panel + caption) / height))
    fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[CAM_COLORMAP]), cax=bar_axes, label="CAM (0 low – 1 high)")
    ax.text(width / 2, 0.1, title, ha="center", va="top", fontsize=9)
    return fig


def _class_name(classes: tuple[str, ...] | None, index: int) -> str:
    return classes[index] if classes and 0 <= index < len(classes) else str(index)


def extreme_image_figures(
    tables: RunTables, extremes: pd.DataFrame, images: TestImages | None, cams: CamSets | None = None
) -> dict[tuple[str, str], Any]:
    """One grid per row of `extremes` ((metric, criterion) → Figure): the test image, the baseline
    CAM and, per studied augmentation (not the control), one seed's CAM (the study's first seed)
    and the mean of its seeds' input-sized CAMs, all overlaid on the image. Without `images` (data
    not on this machine) the CAMs are drawn alone, at 4× the layer's resolution when the input
    size is unknown."""
    perf = tables.performance[tables.performance["status"] == "complete"]
    base_id = str(perf.loc[perf["augmentation"] == BASELINE, "model_id"].iloc[0])
    cams = cams or CamSets(tables.root)
    classes = images.classes if images is not None else None
    if images is not None:
        size = images.input_size
    else:
        image_size = (tables.study.get("data") or {}).get("image_size")
        h, w = cams.raw_size(base_id)
        size = (image_size, image_size) if image_size else (4 * h, 4 * w)
    by_aug = {
        aug: rows.sort_values("seed", kind="stable")
        for aug, rows in studied_rows(perf).groupby("augmentation", sort=False)
    }
    augs = [a for a in augmentation_order(tables.performance) if a in by_aug]
    figures = {}
    for row in extremes.itertuples(index=False):
        image_index = int(row.image_index)
        seed_panels, mean_panels = [], []
        for aug in augs:
            models = by_aug[aug]
            maps = [cams.cam(mid, image_index, size) for mid in models["model_id"]]
            preds = [_class_name(classes, cams.prediction(mid, image_index)) for mid in models["model_id"]]
            first_seed = models["seed"].iloc[0]
            seed_panels.append(CamPanel(f"{aug} s{first_seed}\n→ {preds[0]}", maps[0]))
            # Class names may hold "/" (Fashion-MNIST's "T-shirt/top"), so seeds' predictions are
            # counted rather than joined.
            votes = pd.Series(preds).value_counts(sort=True)
            pred_text = (
                votes.index[0]
                if len(votes) == 1
                else textwrap.fill(", ".join(f"{c} ×{n}" for c, n in votes.items()), width=24)
            )
            mean_panels.append(CamPanel(f"{aug} mean of {len(maps)}\n→ {pred_text}", np.mean(np.stack(maps), axis=0)))
        baseline = CamPanel(
            f"baseline\n→ {_class_name(classes, cams.prediction(base_id, image_index))}",
            cams.cam(base_id, image_index, size),
        )
        image = images.rgb(image_index) if images is not None else None
        title = (
            f"{display_name(row.metric)}: test image with the {row.criterion} across augmentations ({row.value:.4g})"
        )
        figures[(row.metric, row.criterion)] = extreme_image_grid(
            image,
            f"test image {image_index}\nlabel: {_class_name(classes, int(row.label))}",
            baseline,
            seed_panels,
            mean_panels,
            title,
        )
    return figures
