"""The report's figures of the controls: effects against the noise floor, impact-profile dendrograms,
augmentation-vs-augmentation heatmaps and the sanity check; each a function returning a matplotlib
`Figure` built without pyplot, as in `augcam.analysis.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from augcam.analysis.names import display_name, higher_is_better, method_name
from augcam.analysis.plots import augmentation_colors
from augcam.analysis.run_tables import CONTROL, augmentation_label
from augcam.analysis.tables import SANITY_THRESHOLD, between_matrix

__all__ = ["model_summary_dots", "significance_forest", "cluster_dendrograms", "between_heatmaps", "sanity_curve"]


# --- 8. is it more than noise? ---------------------------------------------------------------


def _fit(text: str, fig: Figure, fontsize: float = 10) -> str:
    """`text` wrapped to the figure's width (constrained layout makes room for lines, not for width)."""
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.62 * fontsize)) - 4)  # ~0.6 em per character
    return textwrap.fill(text, width=chars)


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols


def model_summary_dots(
    summaries: pd.DataFrame,
    model_level: pd.DataFrame,
    metrics: Sequence[str],
    order: Sequence[str],
    null_label: str = CONTROL,
) -> Figure:
    """Per metric, one row per augmentation: each model's summary (mean over the test images of its
    per-image value against the baseline) as a dot, the null models grey in every row's background
    band and in their own row, and the augmentation's mean as a bar; the model-level test compares
    the coloured dots with the grey ones. Filled dots: the test finds a difference (BH-adjusted)."""
    augs = [a for a in order if a in set(summaries["augmentation"]) and a != null_label]
    colors = augmentation_colors(augs)
    rows, cols = _grid(len(metrics), 4)
    fig = Figure(figsize=(3.3 * cols + 1.2, max(2.0, 0.3 * (len(augs) + 1) + 1.0) * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    verdict = model_level.set_index(["augmentation", "metric"])["significant"].astype(bool).to_dict()
    null = summaries[summaries["augmentation"] == null_label]
    labels = [*augs, null_label]
    y = np.arange(len(labels))[::-1]
    for ax, metric in zip(axes, metrics):
        null_values = null[metric].dropna().to_numpy(np.float64)
        if len(null_values):
            ax.axvspan(null_values.min(), null_values.max(), color="#bbb", alpha=0.35, linewidth=0)
        for yi, aug in zip(y, labels):
            values = summaries.loc[summaries["augmentation"] == aug, metric].dropna().to_numpy(np.float64)
            if not len(values):
                continue
            color = "#777" if aug == null_label else colors[aug]
            filled = aug == null_label or verdict.get((aug, metric), False)
            ax.plot(
                values,
                np.full(len(values), yi),
                marker="o",
                markersize=5,
                linestyle="none",
                markeredgecolor=color,
                markerfacecolor=color if filled else "white",
                alpha=0.9,
            )
            ax.plot([values.mean()] * 2, [yi - 0.3, yi + 0.3], color=color, linewidth=1.6)
        closer = "closer to baseline →" if higher_is_better(metric) else "← closer to baseline"
        ax.set_title(f"{display_name(metric)}: model means\n{closer}", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    return _finish_rows(
        fig,
        axes,
        len(metrics),
        y,
        [f"{a} (null models)" if a == null_label else augmentation_label(a) for a in labels],
        ("differs from retraining noise (BH, 0.05)", "not distinguishable"),
        "One dot per trained model: its mean over the test images; grey band = the null models' range",
    )


def significance_forest(significance: pd.DataFrame, metrics: Sequence[str], order: Sequence[str]) -> Figure:
    """Per metric, one row per augmentation: the effect (median over test images of augmentation −
    noise floor) with its bootstrap 95% CI; 0 is the noise floor. Filled markers: per-image Wilcoxon
    p < 0.05 after Holm's adjustment, hollow ones not — a description of these models' test images,
    not a verdict about the augmentation; the control (identity) is drawn in black."""
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
            shifted = bool(row["significant"])
            ax.plot(
                [row["effect"]],
                [yi],
                marker="o",
                markersize=6,
                linestyle="none",
                markeredgecolor=color,
                markerfacecolor=color if shifted else "white",
                markeredgewidth=1.4,
            )
        ax.axvline(0, color="#666", linewidth=1, linestyle="--")
        noise = significance.loc[significance["metric"] == metric, "noise_floor_median"]
        floor = f"{noise.iloc[0]:.3g}" if len(noise) and pd.notna(noise.iloc[0]) else "n/a"
        # Where an augmentation that moves the CAMs more than randomness does lands.
        further = (
            "further from baseline than noise →"
            if not higher_is_better(metric)
            else "← further from baseline than noise"
        )
        ax.set_title(f"{display_name(metric)} (noise floor median {floor})\n{further}", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    return _finish_rows(
        fig,
        axes,
        len(metrics),
        y,
        [augmentation_label(a) for a in augs],
        ("per-image Wilcoxon p_adj < 0.05 (Holm)", "p_adj ≥ 0.05"),
        "Per-image shift vs the replicas' noise floor (descriptive): median of (augmentation − noise floor) "
        "per test image, with 95% bootstrap CI",
    )


def _finish_rows(
    fig: Figure,
    axes: np.ndarray,
    used: int,
    y: np.ndarray,
    tick_labels: list[str],
    legend: tuple[str, str],
    title: str,
) -> Figure:
    """The ending of a figure with one row per augmentation in each metric's panel (rows from the
    top at `y`): unused panels off, the row labels on the first panel, a legend for filled and
    hollow markers (`legend`) and the title."""
    for ax in axes[used:]:
        ax.set_axis_off()
    axes[0].set_yticks(y, tick_labels)
    axes[0].set_ylim(-0.7, len(tick_labels) - 0.3)
    for ax in axes:
        ax.tick_params(axis="y", labelsize=8)
    fig.legend(
        handles=[_legend_marker(legend[0], True), _legend_marker(legend[1], False)],
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(_fit(title, fig), fontsize=10)
    return fig


def _legend_marker(label: str, filled: bool):
    from matplotlib.lines import Line2D

    return Line2D(
        [], [], marker="o", linestyle="-", color="#333", markerfacecolor="#333" if filled else "white", label=label
    )


# --- 9. impact profiles ----------------------------------------------------------------------


def cluster_dendrograms(aggregated: pd.DataFrame, metrics: Sequence[str], order: Sequence[str]) -> Figure:
    """Average-linkage dendrograms of the augmentations' impact profiles
    (`augcam.analysis.impact_profiles`): all metrics combined first, then each metric alone. Links
    below the cut (dashed line, 0.7 × the largest merge distance, as in tables/clusters.csv) share a
    colour per cluster."""
    from scipy.cluster import hierarchy

    from augcam.analysis.impact_profiles import impact_clusters

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
        hierarchy.dendrogram(
            result["linkage"],
            ax=ax,
            labels=labels,
            orientation="left",
            color_threshold=result["threshold"],
            above_threshold_color="#888",
            leaf_font_size=8,
        )
        ax.axvline(result["threshold"], color="#c00", linestyle="--", linewidth=0.9)
        n_clusters = len(set(result["clusters"]))
        ax.set_title(f"{title}: {n_clusters} cluster{'s' if n_clusters != 1 else ''}", fontsize=9)
        ax.set_xlabel("RMS distance of standardised profiles", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(scopes) :]:
        ax.set_axis_off()
    fig.suptitle(
        _fit(
            "Impact profiles: augmentations that change the CAMs of the same images alike join low "
            "(dashed: cluster cut)",
            fig,
        ),
        fontsize=10,
    )
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
        colors = cmap.reversed() if not higher_is_better(metric) else cmap
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, vmin=low, vmax=high, aspect="auto")
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if i != j and np.isfinite(v):
                    shade = (v - low) / (high - low)
                    dark = shade < 0.55 if higher_is_better(metric) else shade > 0.45
                    ax.text(
                        j, i, f"{v:.2g}", ha="center", va="center", fontsize=6.5, color="white" if dark else "black"
                    )
        labels = [augmentation_label(a) for a in matrix.columns]
        ax.set_xticks(range(n), labels, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels if k % cols == 0 else [""] * n, fontsize=7)
        direction = "lower" if not higher_is_better(metric) else "higher"
        ax.set_title(f"{display_name(metric)} ({direction} = more alike)", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    fig.suptitle(
        _fit(
            "Augmentation vs augmentation: median over test images of each metric between two "
            "augmented models' CAMs (same seed, seed-averaged)",
            fig,
        ),
        fontsize=10,
    )
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
            ax.fill_between(
                rows["step"], rows["spearman_q25"], rows["spearman_q75"], color=color, alpha=0.2, linewidth=0
            )
            ax.plot(
                rows["step"],
                rows["spearman_median"],
                marker="o",
                markersize=4,
                color=color,
                label=f"{method_name(method)}: median Spearman (band: quartiles)",
            )
            ax.plot(
                rows["step"],
                rows["abs_spearman_median"],
                linestyle="--",
                linewidth=1,
                color=color,
                label=f"{method_name(method)}: median |Spearman|",
            )
        point = data[data["method"] == method]
        if len(point):
            row = point.iloc[0]
            ax.errorbar(
                [n_steps],
                [row["spearman_median"]],
                yerr=[[row["spearman_median"] - row["spearman_q25"]], [row["spearman_q75"] - row["spearman_median"]]],
                marker="D",
                markersize=6,
                color=color,
                capsize=3,
                linestyle="none",
                label=f"{method_name(method)}: labels permuted (data randomisation)",
            )
    for level in (threshold, -threshold):
        ax.axhline(level, color="#c00", linestyle=":", linewidth=1)
    ax.axhline(0, color="#888", linewidth=0.7)
    ticks = list(range(n_steps)) + ([n_steps] if len(data) else [])
    names = [
        cascading.loc[cascading["step"] == s, "layer"].iloc[0] if (cascading["step"] == s).any() else ""
        for s in range(n_steps)
    ] + (["labels permuted"] if len(data) else [])
    ax.set_xticks(ticks, names, rotation=40, ha="right", fontsize=7)
    ax.set_xlim(-0.5, max(ticks, default=0) + 0.5)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman vs trained model's CAMs")
    ax.set_xlabel("cumulative randomisation: layers re-initialised from the output down" if layers else "")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle(
        _fit(
            f"Sanity check: CAM similarity must collapse as the model is randomised "
            f"(dotted: |Spearman| = {threshold:g})",
            fig,
        ),
        fontsize=10,
    )
    return fig
