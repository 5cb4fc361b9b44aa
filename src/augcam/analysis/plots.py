"""The report's figures of the results: every one a function that returns a matplotlib `Figure`.

The controls' figures are in `augcam.analysis.control_plots`, the extreme-image CAM grids in
`augcam.analysis.cam_grid_figures`. Figures are built with `matplotlib.figure.Figure` directly,
never through pyplot: no global figure registry (nothing leaks when hundreds are made), no GUI
backend, and rendering is done by the Agg canvas whatever backend the caller's session uses.

The identity control (the null models) appears in the thesis's figures only as a reference, drawn
apart: last, after a dashed line, grey and hatched (`REFERENCE_STYLE`); the segmented results and
the correlation maps leave it out (`augcam.analysis.tables`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from augcam.analysis.names import display_name
from augcam.analysis.run_tables import BASELINE, CONTROL, PERFORMANCE_COLUMNS, augmentation_label
from augcam.analysis.tables import SEGMENTS, segment

__all__ = [
    "augmentation_colors",
    "performance_bars",
    "training_curves",
    "metric_boxplot",
    "correlation_heatmap",
    "segmented_boxplot",
]

SEGMENT_COLORS = ("#4daf4a", "#999999", "#e41a1c", "#377eb8")  # both ok, both wrong, base only, aug only


REFERENCE_STYLE = {"facecolor": (0.85, 0.85, 0.85), "hatch": "///", "edgecolor": (0.3, 0.3, 0.3)}


def augmentation_colors(augmentations: Sequence[str]) -> dict[str, tuple]:
    """One stable colour per augmentation, the baseline dark grey and the control light grey, in
    every figure (the control takes no colour from the studied augmentations)."""
    palette = colormaps["tab10"].colors
    others = [a for a in augmentations if a not in (BASELINE, CONTROL)]
    colors = {a: palette[i % len(palette)] for i, a in enumerate(others)}
    colors[BASELINE] = (0.35, 0.35, 0.35)
    colors[CONTROL] = REFERENCE_STYLE["facecolor"]
    return colors


def _reference_last(augs: Sequence[str]) -> list[str]:
    """`augs` with the control moved to the end, where it is drawn apart as a reference."""
    return [a for a in augs if a != CONTROL] + [a for a in augs if a == CONTROL]


def _mark_reference(ax, augs: Sequence[str], positions: Sequence[float], patches: Sequence) -> None:
    """Draw the control's boxes or bars (`patches`, one per augmentation of `augs`) in the reference
    style, behind a dashed line that sets them apart from the studied augmentations."""
    if CONTROL not in augs:
        return
    index = list(augs).index(CONTROL)
    for patch, aug in zip(patches, augs):
        if aug == CONTROL:
            patch.set_facecolor(REFERENCE_STYLE["facecolor"])
            patch.set_hatch(REFERENCE_STYLE["hatch"])
            patch.set_edgecolor(REFERENCE_STYLE["edgecolor"])
    if index:
        ax.axvline((positions[index - 1] + positions[index]) / 2, color="black", linestyle="--", linewidth=0.8)


def _present(order: Sequence[str], table: pd.DataFrame) -> list[str]:
    """The augmentations of `order` that have rows in `table`."""
    present = set(table["augmentation"].unique())
    return [a for a in order if a in present]


def _finite(values: np.ndarray) -> np.ndarray:
    # NaN (an undefined correlation; counted in the summary table) and +inf (Class-KLD where the
    # baseline gives a class probability of exactly 0) have no place on a box's axis.
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _boxplot(ax, data: list[np.ndarray], positions: Sequence[float], colors: Sequence, width: float) -> list:
    # Empty groups (a segment no image falls in) are drawn as nothing rather than failing.
    kept = [(d, p, c) for d, p, c in zip(data, positions, colors) if len(d)]
    if not kept:
        return []
    boxes = ax.boxplot(
        [d for d, _, _ in kept],
        positions=[p for _, p, _ in kept],
        widths=width,
        patch_artist=True,
        manage_ticks=False,
        medianprops={"color": "black", "linewidth": 1.2},
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4, "markeredgecolor": "none"},
    )
    for patch, (_, _, color) in zip(boxes["boxes"], kept):
        patch.set_facecolor(color)
        patch.set_alpha(0.75)
    for flier, (_, _, color) in zip(boxes["fliers"], kept):
        flier.set_markerfacecolor(color)
    return boxes["boxes"]


# --- 1. performance --------------------------------------------------------------------------


def performance_bars(performance: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Test accuracy, macro precision, recall and F1 per augmentation: bars are the mean over
    seeds, error bars one standard deviation, dots the individual seeds; baseline first, the
    control, if any, last and apart, as a reference."""
    finished = performance[performance["status"] == "complete"]
    augs = _reference_last(_present(order, finished))
    colors = augmentation_colors(augs)
    fig = Figure(figsize=(max(7.0, 0.9 * len(augs) + 2), 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    x = np.arange(len(augs))
    for ax, col in zip(axes.flat, PERFORMANCE_COLUMNS):
        groups = [finished.loc[finished["augmentation"] == a, col].dropna().to_numpy() for a in augs]
        means = np.array([g.mean() if len(g) else np.nan for g in groups])
        stds = np.array([g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups])
        bars = ax.bar(
            x, means, yerr=stds, color=[colors[a] for a in augs], alpha=0.8, capsize=3, error_kw={"linewidth": 1}
        )
        _mark_reference(ax, augs, x, bars.patches)
        for i, g in enumerate(groups):
            ax.plot(np.full(len(g), x[i]) + np.linspace(-0.15, 0.15, len(g)) * (len(g) > 1), g, "k.", markersize=4)
        finite = np.concatenate([g for g in groups if len(g)]) if any(len(g) for g in groups) else np.zeros(1)
        low, high = float(np.nanmin(finite)), float(np.nanmax(finite))
        pad = max(0.02, (high - low) * 0.6)
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad) if high <= 1 else high + pad)
        ax.set_title(display_name(col))
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xticks(x, [augmentation_label(a) for a in augs], rotation=35, ha="right")
    fig.suptitle(
        "Test performance per augmentation (bar: mean over seeds, error bar: ±1 std, dots: seeds)", fontsize=10
    )
    return fig


def training_curves(histories: pd.DataFrame, order: Sequence[str]) -> Figure:
    """Train and validation accuracy and loss per epoch, one line per model, coloured by
    augmentation (the baseline thick and grey)."""
    augs = _present(order, histories)
    colors = augmentation_colors(augs)
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    panels = [
        ("train_accuracy", "train accuracy"),
        ("val_accuracy", "validation accuracy"),
        ("train_loss", "train loss"),
        ("val_loss", "validation loss"),
    ]
    for ax, (col, title) in zip(axes.flat, panels):
        if col not in histories.columns:
            ax.set_title(f"{title}: not recorded")
            continue
        for (_, aug), rows in histories.groupby(["model_id", "augmentation"], sort=False):
            is_base = aug == BASELINE
            ax.plot(
                rows["epoch"],
                rows[col],
                marker="o",
                markersize=3,
                linestyle=":" if aug == CONTROL else "-",
                color=REFERENCE_STYLE["edgecolor"] if aug == CONTROL else colors[aug],
                linewidth=2.2 if is_base else 1.0,
                alpha=1.0 if is_base else 0.7,
                zorder=3 if is_base else 2,
            )
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(
        handles=[Patch(color=colors[a], label=augmentation_label(a)) for a in augs],
        loc="outside right center",
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Training curves (one line per model; seeds share their augmentation's colour)", fontsize=10)
    return fig


# --- 2. distributions ------------------------------------------------------------------------


def metric_boxplot(aggregated: pd.DataFrame, metric: str, order: Sequence[str]) -> Figure:
    """One box per augmentation of `metric`'s seed-averaged value over the test images; the
    control's, if any, last and apart, as a reference."""
    augs = _reference_last(_present(order, aggregated))
    colors = augmentation_colors(augs)
    data = [_finite(aggregated.loc[aggregated["augmentation"] == a, metric].to_numpy()) for a in augs]
    fig = Figure(figsize=(max(5.5, 0.8 * len(augs) + 1.5), 3.6), layout="constrained")
    ax = fig.subplots()
    boxes = _boxplot(ax, data, range(len(augs)), [colors[a] for a in augs], 0.6)
    drawn = [a for a, d in zip(augs, data) if len(d)]
    _mark_reference(ax, drawn, [i for i, d in enumerate(data) if len(d)], boxes)
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
            ax.text(
                j,
                i,
                "NaN" if np.isnan(v) else f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(v) > 0.6 else "black",
            )
    ax.set_xticks(range(n), [augmentation_label(a) for a in corr.columns], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), [augmentation_label(a) for a in corr.index], fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
    ax.set_title(f"Correlation of {display_name(metric)} between augmentations", fontsize=10)
    return fig


# --- 5. segmented results --------------------------------------------------------------------


def segmented_boxplot(
    metrics: pd.DataFrame, metric: str, order: Sequence[str], segments: pd.Series | None = None
) -> Figure:
    """`metric` per augmentation split into the four prediction-agreement segments (pooled over
    seeds: one value per (model, image)); the number under each box counts its rows."""
    augs = [a for a in _present(order, metrics) if a not in (BASELINE, CONTROL)]  # the studied ones
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
        ax.annotate(
            str(n),
            (pos, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90,
            color="#333",
        )
    centers = [i * (n_seg + 1) + (n_seg - 1) / 2 for i in range(len(augs))]
    ax.set_xticks(centers, [augmentation_label(a) for a in augs], rotation=30, ha="right")
    ax.set_xlim(-1, len(augs) * (n_seg + 1) - 1)
    low, high = ax.get_ylim()
    ax.set_ylim(low - 0.12 * (high - low), high)  # room for the counts at the bottom
    ax.set_ylabel(display_name(metric))
    ax.grid(axis="y", alpha=0.3)
    fig.legend(
        handles=[Patch(color=c, alpha=0.75, label=s) for s, c in zip(SEGMENTS, SEGMENT_COLORS)],
        loc="outside lower center",
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(
        f"{display_name(metric)} by prediction agreement with the baseline (numbers: model·image rows per box)",
        fontsize=10,
    )
    return fig
