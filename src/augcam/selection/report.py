"""An architecture selection's figures — the reference study's Figs 5.1–5.4 (each test score per
epoch, one curve per candidate) and Fig 5.5 (training time per candidate) — and its report.html,
in the study report's style (shared stylesheet and provenance footer). Every number shown comes
from the selection's tables; nothing here computes a new one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from augcam.analysis.names import display_name
from augcam.analysis.report_figures import RenderedFigure, render_figure
from augcam.analysis.report_html import provenance, template
from augcam.analysis.report_text import fmt, html_table
from augcam.selection.tables import SCORES

__all__ = ["selection_figures", "selection_html", "score_curves", "time_bars"]

STAGE_ORDER = ("candidates", "tables", "report")
SCORE_NAMES = {"accuracy": "accuracy", "precision": "macro precision", "recall": "macro recall", "f1": "macro F1"}


def _colors(order: Sequence[str]) -> dict[str, tuple]:
    palette = colormaps["tab10"].colors
    return {label: palette[i % len(palette)] for i, label in enumerate(order)}


def score_curves(epochs: pd.DataFrame, summary: pd.DataFrame, score: str) -> Figure:
    """Test `score` per epoch, one curve per candidate (mean over seeds; the band spans the seeds'
    lowest and highest), the candidate's best-validation epoch marked."""
    order = list(summary["candidate"])
    colors = _colors(order)
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    column = f"test_{score}"
    for label in order:
        mine = epochs[epochs["candidate"] == label]
        if mine.empty:
            continue
        by_epoch = mine.groupby("epoch")[column].agg(["mean", "min", "max"])
        ax.plot(by_epoch.index, by_epoch["mean"], marker="o", markersize=3, color=colors[label], label=label)
        if mine["seed"].nunique() > 1:
            ax.fill_between(by_epoch.index, by_epoch["min"], by_epoch["max"], color=colors[label], alpha=0.15)
        best = summary.set_index("candidate").loc[label, "best_epoch"]
        if not np.isnan(best):
            epoch = round(best)
            if epoch in by_epoch.index:
                ax.plot([epoch], [by_epoch.loc[epoch, "mean"]], marker="*", markersize=12, color=colors[label])
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"test {SCORE_NAMES[score]}")
    ax.set_title(f"Test {SCORE_NAMES[score]} per epoch (★: best validation accuracy; not used to choose)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def time_bars(summary: pd.DataFrame, epochs: pd.DataFrame) -> Figure:
    """Training time per candidate (training and validation passes of every epoch): bar = mean over
    seeds, dots = single seeds."""
    order = list(summary["candidate"])
    colors = _colors(order)
    fig = Figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    totals = epochs.groupby(["candidate", "model_id"])["seconds"].sum() if len(epochs) else pd.Series(dtype=float)
    for x, label in enumerate(order):
        mean = summary.set_index("candidate").loc[label, "train_seconds"]
        if np.isnan(mean):
            continue
        ax.bar(x, mean, color=colors[label], alpha=0.8)
        seeds = totals.loc[label].to_numpy() if label in totals.index.get_level_values(0) else []
        ax.plot([x] * len(seeds), seeds, "o", color="black", markersize=3)
        ax.annotate(f"{mean:.1f} s", (x, mean), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(order)), order)
    ax.set_ylabel("training time (s)")
    ax.set_title("Training time per candidate, all epochs")
    ax.grid(axis="y", alpha=0.3)
    return fig


def selection_figures(epochs: pd.DataFrame, summary: pd.DataFrame) -> list[RenderedFigure]:
    """Figs 5.1–5.4 (`selection_test_<score>`) and 5.5 (`selection_time`), rendered."""
    figures = [
        render_figure(
            score_curves(epochs, summary, score),
            f"selection_test_{score}",
            f"Test {SCORE_NAMES[score]} of each candidate after every epoch (the reference study's Fig. "
            f"5.{i}); mean over seeds, band = the seeds' range. Shown, not used to choose.",
        )
        for i, score in enumerate(SCORES, start=1)
    ]
    figures.append(
        render_figure(
            time_bars(summary, epochs),
            "selection_time",
            "Training time of each candidate over all its epochs (Fig. 5.5): training and validation "
            "passes, the monitoring test pass excluded; bar = mean over seeds, dots = seeds.",
        )
    )
    return figures


def _summary_display(summary: pd.DataFrame) -> dict:
    columns = {
        "candidate": "candidate",
        "model": "model",
        "image_size": "input",
        "parameters": "parameters",
        "target_layer": "CAM layer",
        "layer": "CAM layer size",
        "seeds": "seeds",
        "val_accuracy": "validation accuracy (best epoch)",
        "best_epoch": "best epoch",
        "train_seconds": "training s",
        "seconds_per_epoch": "s / epoch",
        **{f"test_{s}": f"test {SCORE_NAMES[s]}" for s in SCORES},
        "rank": "rank",
        "verdict": "verdict",
    }
    frame = summary.assign(
        layer=[f"{h}×{w}" for h, w in zip(summary["layer_height"], summary["layer_width"])],
        parameters=[f"{int(n):,}" for n in summary["parameters"]],
        verdict=[
            "chosen" if c else ("tied, slower" if t else "")
            for c, t in zip(summary["chosen"], summary["tied_with_best"])
        ],
        val_accuracy=[
            fmt(v) + (f" ± {s:.4f}" if not np.isnan(s) else "")
            for v, s in zip(summary["val_accuracy"], summary["val_accuracy_std"])
        ],
        train_seconds=[fmt(v, 1) for v in summary["train_seconds"]],
        seconds_per_epoch=[fmt(v, 2) for v in summary["seconds_per_epoch"]],
        best_epoch=[fmt(v, 1) for v in summary["best_epoch"]],
    )
    return html_table(frame[list(columns)].rename(columns=columns))


def selection_html(ctx, figures: list[RenderedFigure], report_seconds: float) -> str:
    """report.html of the selection in `ctx` (augcam.selection.runner.SelectionContext)."""
    config, summary = ctx.config, ctx.tables["summary"]
    study = config.study
    chosen = summary.set_index("candidate").loc[ctx.chosen]
    prepared = ctx.candidates[0].prepared
    settings = [
        ("study", f"{study.name} (chosen.yaml: this study with the chosen model)"),
        (
            "data",
            f"{study.data.dataset}: {len(prepared.split.train)} train / {len(prepared.split.val)} validation / "
            f"{len(prepared.split.test)} test images, split seed {study.data.split_seed}",
        ),
        (
            "recipe",
            f"{study.training.epochs} epochs, batch {study.training.batch_size}, {study.training.optimizer} "
            f"lr {study.training.lr:g}, weight decay {study.training.weight_decay:g}, no augmentation",
        ),
        (
            "seeds",
            f"{', '.join(map(str, config.seeds))} (seed s: init and ordering seeds "
            f"{study.training.init_seed} + s and {study.training.ordering_seed} + s)",
        ),
        ("tie tolerance", f"{config.tie_tolerance:g}"),
    ]
    context = {
        "selection": config,
        "settings": settings,
        "chosen": ctx.chosen,
        "chosen_model": chosen["model"],
        "chosen_val": fmt(chosen["val_accuracy"]),
        "tied": list(summary.loc[summary["tied_with_best"] & ~summary["chosen"], "candidate"]),
        "summary_table": _summary_display(summary),
        "figure": {f.name: f for f in figures},
        "scores": SCORES,
        "display": display_name,
    }
    return template("selection.html.j2").render(
        **context, provenance=provenance(ctx.manifest, report_seconds, STAGE_ORDER)
    )
