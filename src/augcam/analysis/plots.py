"""Stage 5's figures: every one a function that returns a matplotlib `Figure`.

Figures are built with `matplotlib.figure.Figure` directly, never through pyplot: no global
figure registry (nothing leaks when hundreds are made), no GUI backend, and rendering is done by
the Agg canvas whatever backend the caller's session uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from augcam.analysis.tables import (BASELINE, CONTROL, DISTANCE_METRICS, PERFORMANCE_COLUMNS, SANITY_THRESHOLD,
                                    SEGMENTS, augmentation_label, between_matrix, display_name, method_name,
                                    segment)

__all__ = ["augmentation_colors", "performance_bars", "training_curves", "metric_boxplot",
           "correlation_heatmap", "segmented_boxplot", "CamPanel", "extreme_image_grid", "significance_forest",
           "cluster_dendrograms", "between_heatmaps", "sanity_curve"]

SEGMENT_COLORS = ("#4daf4a", "#999999", "#e41a1c", "#377eb8")  # both ok, both wrong, base only, aug only
CAM_COLORMAP = "jet"  # the colormap CAM overlays conventionally use (pytorch-grad-cam's default)


def augmentation_colors(augmentations: Sequence[str]) -> dict[str, tuple]:
    """One stable colour per augmentation, the baseline grey, in every figure."""
    palette = colormaps["tab10"].colors
    others = [a for a in augmentations if a != BASELINE]
    colors = {a: palette[i % len(palette)] for i, a in enumerate(others)}
    colors[BASELINE] = (0.35, 0.35, 0.35)
    return colors


def _present(order: Sequence[str], table: pd.DataFrame) -> list[str]:
    """The augmentations of `order` that have rows in `table`."""
    present = set(table["augmentation"].unique())
    return [a for a in order if a in present]


def _finite(values: np.ndarray) -> np.ndarray:
    # NaN (an undefined correlation; counted in the summary table) and +inf (Class-KLD where the
    # baseline gives a class probability of exactly 0) have no place on a box's axis.
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _boxplot(ax, data: list[np.ndarray], positions: Sequence[float], colors: Sequence, width: float) -> None:
    # Empty groups (a segment no image falls in) are drawn as nothing rather than failing.
    kept = [(d, p, c) for d, p, c in zip(data, positions, colors) if len(d)]
    if not kept:
        return
    boxes = ax.boxplot([d for d, _, _ in kept], positions=[p for _, p, _ in kept], widths=width,
                       patch_artist=True, manage_ticks=False,
                       medianprops={"color": "black", "linewidth": 1.2},
                       flierprops={"marker": ".", "markersize": 2, "alpha": 0.4, "markeredgecolor": "none"})
    for patch, (_, _, color) in zip(boxes["boxes"], kept):
        patch.set_facecolor(color)
        patch.set_alpha(0.75)
    for flier, (_, _, color) in zip(boxes["fliers"], kept):
        flier.set_markerfacecolor(color)


# --- 1. performance --------------------------------------------------------------------------


def performance_bars(performance: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Test accuracy, macro precision, recall and F1 per augmentation: bars are the mean over
    seeds, error bars one standard deviation, dots the individual seeds; baseline first."""
    finished = performance[performance["status"] == "complete"]
    augs = _present(order, finished)
    colors = augmentation_colors(augs)
    fig = Figure(figsize=(max(7.0, 0.9 * len(augs) + 2), 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    x = np.arange(len(augs))
    for ax, col in zip(axes.flat, PERFORMANCE_COLUMNS):
        groups = [finished.loc[finished["augmentation"] == a, col].dropna().to_numpy() for a in augs]
        means = np.array([g.mean() if len(g) else np.nan for g in groups])
        stds = np.array([g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups])
        ax.bar(x, means, yerr=stds, color=[colors[a] for a in augs], alpha=0.8, capsize=3,
               error_kw={"linewidth": 1})
        for i, g in enumerate(groups):
            ax.plot(np.full(len(g), x[i]) + np.linspace(-0.15, 0.15, len(g)) * (len(g) > 1), g, "k.",
                    markersize=4)
        finite = np.concatenate([g for g in groups if len(g)]) if any(len(g) for g in groups) else np.zeros(1)
        low, high = float(np.nanmin(finite)), float(np.nanmax(finite))
        pad = max(0.02, (high - low) * 0.6)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1 else high + pad)
        ax.set_title(display_name(col))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xticks(x, [augmentation_label(a) for a in augs], rotation=35, ha="right")
    fig.suptitle("Test performance per augmentation (bar: mean over seeds, error bar: ±1 std, dots: seeds)",
                 fontsize=10)
    return fig


def training_curves(histories: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Train and validation accuracy and loss per epoch, one line per model, coloured by
    augmentation (the baseline thick and grey)."""
    augs = _present(order, histories)
    colors = augmentation_colors(augs)
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    panels = [("train_accuracy", "train accuracy"), ("val_accuracy", "validation accuracy"),
              ("train_loss", "train loss"), ("val_loss", "validation loss")]
    for ax, (col, title) in zip(axes.flat, panels):
        if col not in histories.columns:
            ax.set_title(f"{title}: not recorded")
            continue
        for (model_id, aug), rows in histories.groupby(["model_id", "augmentation"], sort=False):
            is_base = aug == BASELINE
            ax.plot(rows["epoch"], rows[col], marker="o", markersize=3, color=colors[aug],
                    linewidth=2.2 if is_base else 1.0, alpha=1.0 if is_base else 0.7, zorder=3 if is_base else 2)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(handles=[Patch(color=colors[a], label=augmentation_label(a)) for a in augs],
               loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle("Training curves (one line per model; seeds share their augmentation's colour)", fontsize=10)
    return fig


# --- 2. distributions ------------------------------------------------------------------------


def metric_boxplot(aggregated: pd.DataFrame, metric: str, order: Sequence[str]) -> Figure:
    """One box per augmentation of `metric`'s seed-averaged value over the test images."""
    augs = _present(order, aggregated)
    colors = augmentation_colors(augs)
    data = [_finite(aggregated.loc[aggregated["augmentation"] == a, metric].to_numpy()) for a in augs]
    fig = Figure(figsize=(max(5.5, 0.8 * len(augs) + 1.5), 3.6), layout="constrained")
    ax = fig.subplots()
    _boxplot(ax, data, range(len(augs)), [colors[a] for a in augs], 0.6)
    ax.set_xticks(range(len(augs)), [augmentation_label(a) for a in augs], rotation=30, ha="right")
    ax.set_xlim(-0.6, len(augs) - 0.4)
    ax.set_ylabel(display_name(metric))
    ax.set_title(f"{display_name(metric)} vs baseline, seed-averaged, per test image", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


# --- 3. correlation maps ---------------------------------------------------------------------


def correlation_heatmap(corr: pd.DataFrame, metric: str) -> Figure:
    """The correlation matrix of one metric across augmentations, values written in the cells."""
    n = len(corr)
    fig = Figure(figsize=(max(4.5, 0.62 * n + 2.2), max(3.8, 0.55 * n + 1.6)), layout="constrained")
    ax = fig.subplots()
    values = corr.to_numpy(dtype=float)
    # aspect="auto": with square pixels forced, constrained layout would place the axes before the
    # aspect shrinks them and the long tick labels would be cut off; the figure size keeps cells square.
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            ax.text(j, i, "NaN" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 else "black")
    ax.set_xticks(range(n), [augmentation_label(a) for a in corr.columns], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), [augmentation_label(a) for a in corr.index], fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    ax.set_title(f"Correlation of {display_name(metric)} between augmentations", fontsize=10)
    return fig


# --- 5. segmented results --------------------------------------------------------------------


def segmented_boxplot(metrics: pd.DataFrame, metric: str, order: Sequence[str],
                      segments: pd.Series | None = None) -> Figure:
    """`metric` per augmentation split into the four prediction-agreement segments (pooled over
    seeds: one value per (model, image)); the number under each box counts its rows."""
    augs = _present(order, metrics)
    segments = segment(metrics) if segments is None else segments
    n_seg = len(SEGMENTS)
    # Row positions of every (augmentation, segment) group, found in one pass.
    groups = metrics.groupby([metrics["augmentation"].to_numpy(), segments.to_numpy()], sort=False).indices
    column = metrics[metric].to_numpy()
    data, positions, colors, counts = [], [], [], []
    for i, aug in enumerate(augs):
        for j, name in enumerate(SEGMENTS):
            values = column[groups.get((aug, name), np.zeros(0, dtype=np.int64))]
            counts.append(len(values))
            data.append(_finite(values))
            positions.append(i * (n_seg + 1) + j)
            colors.append(SEGMENT_COLORS[j])
    fig = Figure(figsize=(max(7.0, 1.25 * len(augs) + 1.5), 4.0), layout="constrained")
    ax = fig.subplots()
    _boxplot(ax, data, positions, colors, 0.8)
    for pos, n in zip(positions, counts):
        ax.annotate(str(n), (pos, 0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=6, rotation=90, color="#333")
    centers = [i * (n_seg + 1) + (n_seg - 1) / 2 for i in range(len(augs))]
    ax.set_xticks(centers, [augmentation_label(a) for a in augs], rotation=30, ha="right")
    ax.set_xlim(-1, len(augs) * (n_seg + 1) - 1)
    low, high = ax.get_ylim()
    ax.set_ylim(low - 0.12 * (high - low), high)  # room for the counts at the bottom
    ax.set_ylabel(display_name(metric))
    ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=[Patch(color=c, alpha=0.75, label=s) for s, c in zip(SEGMENTS, SEGMENT_COLORS)],
               loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    ax.set_title(f"{display_name(metric)} by prediction agreement with the baseline "
                 "(numbers: model·image rows per box)", fontsize=10)
    return fig


# --- 6. extreme images -----------------------------------------------------------------------


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


def extreme_image_grid(image: np.ndarray | None, image_title: str, baseline: CamPanel,
                       seed_panels: Sequence[CamPanel], mean_panels: Sequence[CamPanel], title: str) -> Figure:
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
            ax.imshow(rgb, extent=(left, left + panel, upper + panel, upper), interpolation="nearest",
                      aspect="auto")
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
    bar_axes = fig.add_axes(((width - bar + 0.1) / width, 0.15 / height, 0.12 / width,
                             (2 * panel + caption) / height))
    fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps[CAM_COLORMAP]), cax=bar_axes,
                 label="CAM (0 low – 1 high)")
    ax.text(width / 2, 0.1, title, ha="center", va="top", fontsize=9)
    return fig


# --- 8. is it more than noise? ---------------------------------------------------------------


def _fit(text: str, fig: Figure, fontsize: float = 10) -> str:
    """`text` wrapped to the figure's width (constrained layout makes room for lines, not for width)."""
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.62 * fontsize)) - 4)  # ~0.6 em per character
    return textwrap.fill(text, width=chars)


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols


def significance_forest(significance: pd.DataFrame, metrics: Sequence[str], order: Sequence[str]) -> Figure:
    """Per metric, one row per augmentation: the effect (median over test images of augmentation −
    noise floor) with its bootstrap 95% CI; 0 is the noise floor. Filled markers are significant
    after Holm's adjustment, hollow ones are not; the control (identity) is drawn in black."""
    augs = [a for a in order if a in set(significance["augmentation"])]
    colors = augmentation_colors(augs)
    rows, cols = _grid(len(metrics), 4)
    fig = Figure(figsize=(3.3 * cols + 1.2, max(2.0, 0.28 * len(augs) + 1.0) * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    table = significance.set_index(["augmentation", "metric"])
    y = np.arange(len(augs))[::-1]
    for ax, metric in zip(axes, metrics):
        for yi, aug in zip(y, augs):
            if (aug, metric) not in table.index:
                continue
            row = table.loc[(aug, metric)]
            color = "black" if aug == CONTROL else colors[aug]
            if np.isfinite(row["effect_ci_low"]) and np.isfinite(row["effect_ci_high"]):
                ax.plot([row["effect_ci_low"], row["effect_ci_high"]], [yi, yi], color=color, linewidth=1.6)
            significant = bool(row["significant"])
            ax.plot([row["effect"]], [yi], marker="o", markersize=6, linestyle="none", markeredgecolor=color,
                    markerfacecolor=color if significant else "white", markeredgewidth=1.4)
        ax.axvline(0, color="#666", linewidth=1, linestyle="--")
        noise = significance.loc[significance["metric"] == metric, "noise_floor_median"]
        floor = f"{noise.iloc[0]:.3g}" if len(noise) and pd.notna(noise.iloc[0]) else "n/a"
        # Where an augmentation that moves the CAMs more than randomness does lands.
        further = "further from baseline than noise →" if metric in DISTANCE_METRICS \
            else "← further from baseline than noise"
        ax.set_title(f"{display_name(metric)} (noise floor median {floor})\n{further}", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    axes[0].set_yticks(y, [augmentation_label(a) for a in augs])
    axes[0].set_ylim(-0.7, len(augs) - 0.3)
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    fig.legend(handles=[_legend_marker("significant (Holm, 0.05)", True), _legend_marker("not significant", False)],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    fig.suptitle(_fit("Effect vs the noise floor: median of (augmentation − noise floor) per test image, "
                      "with 95% bootstrap CI", fig), fontsize=10)
    return fig


def _legend_marker(label: str, filled: bool):
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="-", color="#333", markerfacecolor="#333" if filled else "white",
                  label=label)


# --- 9. impact profiles ----------------------------------------------------------------------


def cluster_dendrograms(aggregated: pd.DataFrame, metrics: Sequence[str], order: Sequence[str]) -> Figure:
    """Average-linkage dendrograms of the augmentations' impact profiles (`augcam.profiles`): all
    metrics combined first, then each metric alone. Links below the cut (dashed line, 0.7 × the
    largest merge distance, as in tables/clusters.csv) share a colour per cluster."""
    from scipy.cluster import hierarchy

    from augcam.profiles import impact_clusters

    augs = [a for a in order if a in set(aggregated["augmentation"])]
    rank = {a: i for i, a in enumerate(augs)}
    ordered = aggregated.assign(_r=aggregated["augmentation"].map(rank)).sort_values("_r", kind="stable")
    scopes = [("all metrics", list(metrics))] + [(display_name(m), [m]) for m in metrics]
    rows, cols = _grid(len(scopes), 3)
    fig = Figure(figsize=(4.0 * cols, max(2.2, 0.3 * len(augs) + 1.1) * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (title, scope) in zip(axes, scopes):
        result = impact_clusters(ordered, scope)
        labels = [augmentation_label(a) for a in result["labels"]]
        hierarchy.dendrogram(result["linkage"], ax=ax, labels=labels, orientation="left",
                             color_threshold=result["threshold"], above_threshold_color="#888",
                             leaf_font_size=8)
        ax.axvline(result["threshold"], color="#c00", linestyle="--", linewidth=0.9)
        n_clusters = len(set(result["clusters"]))
        ax.set_title(f"{title}: {n_clusters} cluster{'s' if n_clusters != 1 else ''}", fontsize=9)
        ax.set_xlabel("RMS distance of standardised profiles", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(scopes):]:
        ax.set_axis_off()
    fig.suptitle(_fit("Impact profiles: augmentations that change the CAMs of the same images alike join low "
                      "(dashed: cluster cut)", fig), fontsize=10)
    return fig


def between_heatmaps(medians: pd.DataFrame, metrics: Sequence[str], order: Sequence[str]) -> Figure:
    """Per metric, the symmetric matrix of medians over test images of the metric between the CAMs
    of two augmentations' models (same seed, mean over seeds); the diagonal is blank."""
    rows, cols = _grid(len(metrics), 4)
    matrices = [between_matrix(medians, m, list(order)) for m in metrics]
    n = len(matrices[0]) if matrices else 0
    side = max(2.8, 0.42 * n + 1.6)
    fig = Figure(figsize=(side * cols + 0.5, (side - 0.2) * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = colormaps["viridis"]
    for k, (ax, metric, matrix) in enumerate(zip(axes, metrics, matrices)):
        values = matrix.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5
        # Bright = alike whatever the metric: distances use the reversed map.
        colors = cmap.reversed() if metric in DISTANCE_METRICS else cmap
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, vmin=low, vmax=high, aspect="auto")
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if i != j and np.isfinite(v):
                    shade = (v - low) / (high - low)
                    dark = shade < 0.55 if metric not in DISTANCE_METRICS else shade > 0.45
                    ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6.5,
                            color="white" if dark else "black")
        labels = [augmentation_label(a) for a in matrix.columns]
        ax.set_xticks(range(n), labels, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels if k % cols == 0 else [""] * n, fontsize=7)
        direction = "lower" if metric in DISTANCE_METRICS else "higher"
        ax.set_title(f"{display_name(metric)} ({direction} = more alike)", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for ax in axes[len(metrics):]:
        ax.set_axis_off()
    fig.suptitle(_fit("Augmentation vs augmentation: median over test images of each metric between two "
                      "augmented models' CAMs (same seed, seed-averaged)", fig), fontsize=10)
    return fig


# --- 10. sanity check ------------------------------------------------------------------------


def sanity_curve(sanity: pd.DataFrame, threshold: float = SANITY_THRESHOLD) -> Figure:
    """Cascading randomisation: median Spearman (band: quartiles over images) between the trained
    model's CAMs and those after each step, layers randomised from the output down; the dashed line
    is the median |Spearman|. A data-randomisation row (model trained on permuted labels) is the
    diamond at the right. Dotted lines: ±`threshold`."""
    cascading = sanity[sanity["test"] == "cascading"].sort_values("step", kind="stable")
    data = sanity[sanity["test"] == "data"]
    methods = list(dict.fromkeys(sanity["method"]))
    palette = colormaps["tab10"].colors
    layers = list(dict.fromkeys(cascading["layer"]))
    n_steps = int(cascading["step"].max()) + 1 if len(cascading) else 0
    fig = Figure(figsize=(max(6.0, 0.45 * (n_steps + 1) + 2.5), 4.4), layout="constrained")
    ax = fig.subplots()
    for k, method in enumerate(methods):
        color = palette[k % len(palette)]
        rows = cascading[cascading["method"] == method]
        if len(rows):
            ax.fill_between(rows["step"], rows["spearman_q25"], rows["spearman_q75"], color=color, alpha=0.2,
                            linewidth=0)
            ax.plot(rows["step"], rows["spearman_median"], marker="o", markersize=4, color=color,
                    label=f"{method_name(method)}: median Spearman (band: quartiles)")
            ax.plot(rows["step"], rows["abs_spearman_median"], linestyle="--", linewidth=1, color=color,
                    label=f"{method_name(method)}: median |Spearman|")
        point = data[data["method"] == method]
        if len(point):
            row = point.iloc[0]
            ax.errorbar([n_steps], [row["spearman_median"]],
                        yerr=[[row["spearman_median"] - row["spearman_q25"]],
                              [row["spearman_q75"] - row["spearman_median"]]],
                        marker="D", markersize=6, color=color, capsize=3, linestyle="none",
                        label=f"{method_name(method)}: labels permuted (data randomisation)")
    for level in (threshold, -threshold):
        ax.axhline(level, color="#c00", linestyle=":", linewidth=1)
    ax.axhline(0, color="#888", linewidth=0.7)
    ticks = list(range(n_steps)) + ([n_steps] if len(data) else [])
    names = [cascading.loc[cascading["step"] == s, "layer"].iloc[0] if (cascading["step"] == s).any() else ""
             for s in range(n_steps)] + (["labels permuted"] if len(data) else [])
    ax.set_xticks(ticks, names, rotation=40, ha="right", fontsize=7)
    ax.set_xlim(-0.5, max(ticks, default=0) + 0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman vs trained model's CAMs")
    ax.set_xlabel("cumulative randomisation: layers re-initialised from the output down" if layers else "")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle(_fit(f"Sanity check: CAM similarity must collapse as the model is randomised "
                      f"(dotted: |Spearman| = {threshold:g})", fig), fontsize=10)
    return fig
