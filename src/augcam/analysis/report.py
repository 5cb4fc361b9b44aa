"""Stage 5: every analysis of a finished run, written as CSV tables, PNG and SVG figures, and one
self-contained `report.html`.

`write_report(run_dir)` reads only the run directory (tables, training histories, stored CAMs,
study.yaml, manifest.json) plus the test images for the CAM grids, so it reruns in seconds on any
machine. Everything is computed and rendered in memory first and written at the end, each file
atomically (temporary file, then rename): an error leaves the previous outputs as they were.
"""

from __future__ import annotations

import base64
import io
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from rich.console import Console

from augcam import __version__
from augcam.analysis import plots
from augcam.analysis.cams import CamSets, TestImages, load_test_images
from augcam.analysis.tables import (BASELINE, CONTROL, PERFORMANCE_COLUMNS, SANITY_THRESHOLD, SEGMENTS, RunTables,
                                    augmentation_label, augmentation_order, between_augmentation_medians,
                                    correlation_maps, display_name, extreme_images, impact_clusters_table,
                                    load_run, method_name, noise_floor_summary, noise_verdicts, pair_frequencies,
                                    performance_summary, sanity_verdicts, segment, segment_counts,
                                    segment_medians, significance_vs_identity, significance_vs_noise, summary_table, training_histories)
from augcam.errors import AugcamError
from augcam.store import atomic_path, write_text

__all__ = ["Analyses", "analyse", "extreme_image_figures", "write_report", "DEFAULT_PAIRS"]

DEFAULT_PAIRS = 4
DEFAULT_RESAMPLES = 2000  # bootstrap resamples of every CI of the significance table
FIGURE_DPI = 150
PIPELINE_STAGES = ("train", "explain", "compare", "performance", "aggregate", "controls", "sanity")
# Written only when the run has what they need (the controls' tables, two augmentations or more).
OPTIONAL_TABLES = ("noise_floor_summary.csv", "significance.csv", "significance_vs_identity.csv",
                   "between_augmentations_median.csv", "sanity_verdict.csv", "mask_guided.csv",
                   "mask_guided_correlation.csv", "published_comparison.csv", "faithfulness_summary.csv")
OPTIONAL_FIGURES = ("clusters", "between_augmentations", "noise_effects", "sanity")
QUESTION = "How does a data augmentation change where an image classifier looks?"


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
        files.update({"pairs_strongest.csv": self.strongest.to_csv(index=False),
                      "pairs_weakest.csv": self.weakest.to_csv(index=False),
                      "segment_counts.csv": self.segment_counts.to_csv(index=False),
                      "segment_medians.csv": self.segment_medians.to_csv(index=False),
                      "extreme_images.csv": self.extremes.to_csv(index=False),
                      "summary.csv": self.summary.to_csv(index=False),
                      "clusters.csv": self.clusters.to_csv(index=False)})
        optional = {"noise_floor_summary.csv": self.noise_summary, "significance.csv": self.significance,
                    "significance_vs_identity.csv": self.significance_identity,
                    "between_augmentations_median.csv": self.between, "sanity_verdict.csv": self.sanity_verdicts}
        files.update({name: table.to_csv(index=False) for name, table in optional.items() if table is not None})
        return files


def analyse(tables: RunTables, pairs: int = DEFAULT_PAIRS, n_resamples: int = DEFAULT_RESAMPLES) -> Analyses:
    """All analyses of a loaded run (`augcam.analysis.load_run`); those of the controls only when
    the run has their tables."""
    order = augmentation_order(tables.performance)
    metrics = tables.metric_names
    correlations = correlation_maps(tables.aggregated, order)
    strongest, weakest = pair_frequencies(correlations, pairs)
    controls: dict[str, Any] = {}
    if tables.noise is not None:
        significance = significance_vs_noise(tables.aggregated, tables.noise, metrics, order, n_resamples=n_resamples)
        controls.update(noise_summary=noise_floor_summary(tables.noise, metrics), significance=significance,
                        noise_verdicts=noise_verdicts(significance))
    controls["significance_identity"] = significance_vs_identity(tables.aggregated, metrics, order,
                                                                 n_resamples=n_resamples)
    if tables.between is not None:
        controls["between"] = between_augmentation_medians(tables.between, metrics, order)
    if tables.sanity is not None:
        controls.update(sanity=tables.sanity, sanity_verdicts=sanity_verdicts(tables.sanity))
    return Analyses(order=order, metrics=metrics,
                    performance=performance_summary(tables.performance),
                    histories=training_histories(tables),
                    correlations=correlations, strongest=strongest, weakest=weakest,
                    segment_counts=segment_counts(tables.metrics, order),
                    segment_medians=segment_medians(tables.metrics, order),
                    extremes=extreme_images(tables.aggregated),
                    summary=summary_table(tables.performance, tables.aggregated, tables.metrics),
                    clusters=impact_clusters_table(tables.aggregated, metrics, order), **controls)


# --- extreme-image grids ---------------------------------------------------------------------


def _class_name(classes: tuple[str, ...] | None, index: int) -> str:
    return classes[index] if classes and 0 <= index < len(classes) else str(index)


def extreme_image_figures(tables: RunTables, extremes: pd.DataFrame, images: TestImages | None,
                          cams: CamSets | None = None) -> dict[tuple[str, str], Any]:
    """One grid per row of `extremes` ((metric, criterion) → Figure): the test image, the baseline
    CAM and, per augmentation, one seed's CAM (the study's first seed) and the mean of its seeds'
    input-sized CAMs, all overlaid on the image. Without `images` (data not on this machine) the
    CAMs are drawn alone, at 4× the layer's resolution when the input size is unknown."""
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
    by_aug = {aug: rows.sort_values("seed", kind="stable")
              for aug, rows in perf[perf["augmentation"] != BASELINE].groupby("augmentation", sort=False)}
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
            seed_panels.append(plots.CamPanel(f"{aug} s{first_seed}\n→ {preds[0]}", maps[0]))
            # Class names may hold "/" (Fashion-MNIST's "T-shirt/top"), so seeds' predictions are
            # counted rather than joined.
            votes = pd.Series(preds).value_counts(sort=True)
            pred_text = votes.index[0] if len(votes) == 1 else textwrap.fill(
                ", ".join(f"{c} ×{n}" for c, n in votes.items()), width=24)
            mean_panels.append(plots.CamPanel(f"{aug} mean of {len(maps)}\n→ {pred_text}",
                                              np.mean(np.stack(maps), axis=0)))
        baseline = plots.CamPanel(f"baseline\n→ {_class_name(classes, cams.prediction(base_id, image_index))}",
                                  cams.cam(base_id, image_index, size))
        image = images.rgb(image_index) if images is not None else None
        title = (f"{display_name(row.metric)}: test image with the {row.criterion} across augmentations "
                 f"({row.value:.4g})")
        figures[(row.metric, row.criterion)] = plots.extreme_image_grid(
            image, f"test image {image_index}\nlabel: {_class_name(classes, int(row.label))}", baseline,
            seed_panels, mean_panels, title)
    return figures


# --- rendering -------------------------------------------------------------------------------


@dataclass
class RenderedFigure:
    name: str  # file stem under figures/
    caption: str
    png: bytes
    svg: bytes

    @property
    def png_base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def _render(fig, name: str, caption: str) -> RenderedFigure:
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


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def _html_table(frame: pd.DataFrame, digits: int = 4) -> dict:
    return {"columns": [str(c) for c in frame.columns],
            "rows": [[_fmt(v, digits) for v in row] for row in frame.itertuples(index=False)]}


def _summary_display(summary: pd.DataFrame, metrics: list[str]) -> dict:
    columns = ["augmentation", "models", "test accuracy"] + [display_name(m) for m in metrics]
    rows = []
    for row in summary.to_dict("records"):
        acc = _fmt(row["test_accuracy_mean"])
        if not pd.isna(row["test_accuracy_std"]):
            acc += f" ± {row['test_accuracy_std']:.4f}"
        cells = [row["augmentation"], _fmt(row["n_models"]), acc]
        for m in metrics:
            if pd.isna(row[f"{m}_median"]):
                cells.append("")
                continue
            nan = row[f"{m}_nan"]
            cells.append(f"{row[f'{m}_median']:.4f} [{row[f'{m}_iqr']:.4f}]"
                         + (f" ({int(nan)} NaN)" if not pd.isna(nan) and nan else ""))
        rows.append(cells)
    return {"columns": columns, "rows": rows}


_LOCALISATION_NAMES = {"roc_auc": "ROC AUC", "iou": "IoU", "intersection_over_prediction": "IoP",
                       "intersection_over_target": "IoT", "pointing_game": "pointing game",
                       "energy_pointing_game": "energy pointing game"}


def _mask_guided_section(tables: RunTables) -> tuple[dict | None, dict[str, str]]:
    """The mask-guided section's context and its CSVs, when the run has tables/localisation.parquet."""
    from augcam.analysis.localisation import (auc_localisation_correlation, generalisation_vs_localisation,
                                              load_localisation)

    localisation = load_localisation(tables.root)
    if localisation is None or "roc_auc" not in tables.performance.columns:
        return None, {}
    table = generalisation_vs_localisation(tables.performance, localisation, tables.aggregated)
    correlation = auc_localisation_correlation(tables.performance, localisation)
    shown = pd.DataFrame({"method": table["augmentation"], "models": table["models"]})
    for column in [c[:-5] for c in table.columns if c.endswith("_mean")]:
        name = _LOCALISATION_NAMES.get(column, display_name(column))
        shown[name] = [_fmt(m, 3) + (f" ± {_fmt(sd, 3)}" if not np.isnan(sd) else "")
                       for m, sd in zip(table[f"{column}_mean"], table[f"{column}_std"])]
    for column in [c for c in table.columns if c.endswith("_vs_baseline")]:
        shown[f"{display_name(column[:-12])} vs baseline"] = [_fmt(v, 3) for v in table[column]]
    corr = correlation.assign(metric=correlation["metric"].map(lambda m: _LOCALISATION_NAMES.get(m, m)))
    context = {"table": _html_table(shown), "correlation": _html_table(corr, 3)}
    return context, {"mask_guided.csv": table.to_csv(index=False),
                     "mask_guided_correlation.csv": correlation.to_csv(index=False)}


def _labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the control marked in its augmentation column (for display only)."""
    return frame.assign(augmentation=frame["augmentation"].map(augmentation_label))


def _noise_summary_display(summary: pd.DataFrame, metrics: list[str]) -> dict:
    columns = ["replica"] + [display_name(m) for m in metrics]
    rows = []
    for replica, group in summary.groupby("replica", sort=False):
        by_metric = group.set_index("metric")
        name = "all (mean of the replicas per image)" if replica == "all" else f"baseline {replica}"
        rows.append([name] + [f"{by_metric.loc[m, 'median']:.4f} [{by_metric.loc[m, 'iqr']:.4f}]"
                              if m in by_metric.index and pd.notna(by_metric.loc[m, "median"]) else ""
                              for m in metrics])
    return {"columns": columns, "rows": rows}


def _significance_display(significance: pd.DataFrame, metrics: list[str]) -> dict:
    columns = ["augmentation"] + [display_name(m) for m in metrics] + ["differs in"]
    rows = []
    for aug, group in significance.groupby("augmentation", sort=False):
        by_metric = group.set_index("metric")
        cells = [augmentation_label(aug)]
        for m in metrics:
            if m not in by_metric.index or pd.isna(by_metric.loc[m, "effect"]):
                cells.append("")
                continue
            mark = " *" if bool(by_metric.loc[m, "significant"]) else ""
            cells.append(f"{by_metric.loc[m, 'effect']:+.4f}{mark}")
        cells.append(f"{int(group['significant'].astype(bool).sum())} of {len(group)}")
        rows.append(cells)
    return {"columns": columns, "rows": rows}


def _verdict_sentences(verdicts: pd.DataFrame, differ: str, same: str) -> list[str]:
    """"<differ>: a (k of n metrics), …." and "<same>: b, …." from `noise_verdicts(...)` rows."""
    differing = verdicts[verdicts["significant"] > 0]
    alike = verdicts[verdicts["significant"] == 0]
    sentences = []
    if len(differing):
        listed = ", ".join(f"{augmentation_label(r.augmentation)} ({r.significant} of {r.metrics} metrics)"
                           for r in differing.itertuples(index=False))
        sentences.append(f"{differ}: {listed}.")
    if len(alike):
        sentences.append(f"{same}: {', '.join(augmentation_label(a) for a in alike['augmentation'])}.")
    return sentences


def _identity_sentences(verdicts: pd.DataFrame) -> list[str]:
    """Which augmentations' CAMs differ from the identity control's, i.e. where the transformation,
    not the extra training steps, moves the CAMs."""
    return _verdict_sentences(verdicts, f"Differ from the {CONTROL} control (the transformation itself moves the CAMs)",
                              f"Not distinguishable from the {CONTROL} control in any metric (what they change is "
                              "explained by the extra training steps)")


def _noise_sentences(verdicts: pd.DataFrame, augmentations: list[str]) -> list[str]:
    """Which augmentations differ from the noise floor in at least one metric, which do not, and
    what the identity control says."""
    sentences = _verdict_sentences(verdicts, "Differ from the noise floor in at least one metric (Holm-adjusted "
                                   "p < 0.05)", "Not distinguishable from the noise floor in any metric")
    differ = verdicts[verdicts["significant"] > 0]
    if CONTROL not in augmentations:
        sentences.append(f"This run has no {CONTROL} control (controls.identity: false), so the effect of the "
                         "augmented models' extra training steps is not separated from the transformations'.")
    elif CONTROL in set(differ["augmentation"]):
        sentences.append(f"The {CONTROL} control itself differs from the noise floor: the extra training steps "
                         f"alone move the CAMs, so read each augmentation's effect against {CONTROL}'s as well "
                         "as against 0.")
    else:
        sentences.append(f"As a control should, {CONTROL} does not: the extra training steps alone do not move "
                         "the CAMs beyond randomness.")
    return sentences


def _clusters_display(clusters: pd.DataFrame) -> dict:
    rows = clusters[clusters["scope"] == "all"].sort_values("leaf_order", kind="stable")
    members: dict[int, list[str]] = {}
    for row in rows.itertuples(index=False):
        members.setdefault(int(row.cluster), []).append(augmentation_label(row.augmentation))
    return {"columns": ["cluster", "augmentations (dendrogram order)"],
            "rows": [[str(c), ", ".join(members[c])] for c in sorted(members)]}


def _sanity_sentences(verdicts: pd.DataFrame) -> list[str]:
    sentences = []
    for row in verdicts.itertuples(index=False):
        outcome = "passes" if row.passes else "fails"
        if row.test == "cascading":
            sentences.append(f"{method_name(row.method)} {outcome} the cascading randomisation check (median "
                             f"|Spearman| after randomising every layer: {row.final_median:.2f}, threshold "
                             f"{row.threshold:g}).")
        elif row.test == "data":
            sentences.append(f"{method_name(row.method)} {outcome} the data randomisation check (median "
                             f"|Spearman| between the baseline's CAMs and those of a model trained on permuted "
                             f"labels: {row.final_median:.2f}, threshold {row.threshold:g}).")
    return sentences


def _controls_note(tables: RunTables) -> str | None:
    """One line naming the controls this run did not make, whose sections the report leaves out."""
    missing = []
    if tables.noise is None:
        missing.append("no baseline replicas (controls.baseline_replicas: 0), so no noise floor and no "
                       "“Is it more than noise?” section")
    if tables.between is None:
        missing.append("no augmentation-vs-augmentation comparison")
    if tables.sanity is None:
        missing.append("no sanity check (controls.sanity_images: 0), so no “Sanity check” section")
    if not missing:
        return None
    return ("Controls were off for this run: " + "; ".join(missing)
            + ". See docs/trustworthy.md for what they add.")


def _described_augmentations(entries: list[dict] | None) -> list[str]:
    """`label (name): params` for each augmentation entry of a resolved config."""
    described = []
    for entry in entries or []:
        params = ", ".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
        label, name = entry.get("label") or entry.get("name"), entry.get("name")
        text = f"{label} ({name})" if label != name else str(label)
        described.append(f"{text}: {params}" if params else text)
    return described


def _config_summary(study: dict, tables: RunTables) -> list[tuple[str, str]]:
    data, model = study.get("data") or {}, study.get("model") or {}
    training, cam = study.get("training") or {}, study.get("cam") or {}
    sizes = "/".join(str(data.get(k) if data.get(k) is not None else "all")
                     for k in ("train_size", "val_size", "test_size"))
    n_images = int(tables.aggregated["image_index"].nunique())
    base = _described_augmentations(training.get("base_augmentations"))
    return [
        ("study", f"{study.get('name')}: {study.get('description') or ''}".strip(": ")),
        ("data", f"{data.get('dataset')}, train/val/test = {sizes} images, split seed {data.get('split_seed')}, "
                 f"val fraction {data.get('val_fraction')}"
                 + (f", resized to {data['image_size']}×{data['image_size']}" if data.get("image_size") else "")),
        ("model", f"{model.get('name')}, CAM target layer {model.get('target_layer') or 'default (last conv stage)'}"),
        ("training", ", ".join(f"{k} {training[k]}" for k in ("epochs", "batch_size", "lr", "weight_decay",
                                                                 "init_seed", "ordering_seed", "copies")
                               if k in training)),
        ("augmentations", "; ".join(_described_augmentations(study.get("augmentations")))),
        *([("base augmentations", "; ".join(base) + " (every model, the baseline included)")] if base else []),
        ("seeds", ", ".join(str(s) for s in study.get("seeds") or [])),
        ("CAM", f"{cam.get('method')}, target = {cam.get('target')} class; {n_images} test images compared"),
        ("metrics", ", ".join(display_name(m) for m in tables.metric_names)),
        ("controls", _controls_summary(study, tables)),
    ]


def _controls_summary(study: dict, tables: RunTables) -> str:
    recorded = tables.controls or (study.get("controls") or {})
    parts = [f"identity control {'on' if CONTROL in set(tables.aggregated['augmentation']) else 'off'}"]
    if tables.noise is not None:
        replicas = list(dict.fromkeys(tables.noise["replica"].astype(str)))
        parts.append(f"{len(replicas)} baseline replica(s) ({', '.join(replicas)})")
    else:
        parts.append("no baseline replicas")
    if tables.sanity is not None:
        images = recorded.get("sanity_images")
        parts.append("sanity check" + (f" on {images} test images" if images else ""))
        parts.append("data randomisation " + ("on" if (tables.sanity["test"] == "data").any() else "off"))
    else:
        parts.append("no sanity check")
    return ", ".join(parts)


def _provenance(manifest: dict, report_seconds: float) -> dict:
    import jinja2
    import matplotlib

    versions = dict(manifest.get("versions") or {})
    versions.setdefault("matplotlib", matplotlib.__version__)
    versions.setdefault("jinja2", jinja2.__version__)
    recorded = manifest.get("stages") or {}
    # manifest.json is written with sorted keys; show the stages in the order they run.
    order = [s for s in PIPELINE_STAGES if s in recorded] + sorted(set(recorded) - set(PIPELINE_STAGES))
    stages = [(name, recorded[name].get("seconds"), recorded[name].get("status")) for name in order]
    stages.append(("report (this file)", round(report_seconds, 3), "complete"))
    return {"augcam_version": manifest.get("augcam_version"), "config_hash": manifest.get("config_hash"),
            "device": manifest.get("device"), "device_name": manifest.get("device_name"),
            "started": manifest.get("started"), "finished": manifest.get("finished"),
            "total_seconds": manifest.get("seconds"), "versions": sorted(versions.items()), "stages": stages,
            "report_augcam_version": __version__,
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _template():
    import jinja2

    text = resources.files("augcam.analysis").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    return env.from_string(text)


# --- the stage -------------------------------------------------------------------------------


def write_report(run_dir: str | Path, console: Console | None = None, *, pairs: int = DEFAULT_PAIRS,
                 n_resamples: int = DEFAULT_RESAMPLES) -> Path:
    """Analyse a finished run directory: CSVs under tables/, PNG + SVG under figures/, and
    report.html; returns the report's path. Raises an `AugcamError` subclass naming the file when
    the directory is not a finished run; writes nothing then."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = step()
        timings[name] = time.perf_counter() - t0
        return value

    tables = timed("load", lambda: load_run(run_dir))
    cams = CamSets(tables.root)
    finished = tables.performance.loc[tables.performance["status"] == "complete", "model_id"]
    timed("CAMs", lambda: cams.load([str(m) for m in finished]))
    result = timed("analyses", lambda: analyse(tables, pairs, n_resamples))
    order, metrics = result.order, result.metrics

    image_note = None
    try:
        unique = tables.aggregated.drop_duplicates("image_index")
        images = timed("test images", lambda: load_test_images(
            tables.study, result.extremes["image_index"].to_numpy(),
            unique.set_index("image_index").loc[result.extremes["image_index"], "label"].to_numpy()))
    except AugcamError as err:
        # The report is still worth having without the images under the CAMs; the reader is told why.
        images = None
        image_note = f"The test images could not be loaded, so the CAMs are drawn without them: {err}"
        console.print(f"[yellow]report[/]: {image_note}", highlight=False)

    def build_figures() -> list[RenderedFigure]:
        rendered = [
            _render(plots.performance_bars(tables.performance, order), "performance",
                    "Test accuracy, macro precision, recall and F1 per augmentation: bar = mean over seeds, "
                    "error bar = ±1 standard deviation, dots = single seeds; compare each bar with the baseline's."),
            _render(plots.training_curves(result.histories, order), "training_curves",
                    "Train/validation accuracy and loss per epoch, one line per model: diverging train and "
                    "validation curves mean over-fitting; the best-validation epoch is the model explained."),
        ]
        for m in metrics:
            rendered.append(_render(plots.metric_boxplot(tables.aggregated, m, order), f"distribution_{m}",
                                    f"{display_name(m)} between each augmentation's CAM and the baseline's, one value "
                                    "per test image (mean over seeds); box = quartiles, line = median, dots = outliers."))
        for m in metrics:
            rendered.append(_render(plots.correlation_heatmap(result.correlations[m], m), f"correlation_{m}",
                                    f"Pearson correlation over the test images of {display_name(m)} between two "
                                    "augmentations: high = the two change the CAMs of the same images in the same way."))
        # A dendrogram needs two augmentations with metrics (a diverged model has none).
        compared = set(tables.aggregated["augmentation"])
        if len([a for a in order if a != BASELINE and a in compared]) >= 2:
            rendered.append(_render(plots.cluster_dendrograms(tables.aggregated, metrics, order), "clusters",
                                    "Average-linkage dendrograms of the augmentations' impact profiles (all metrics, "
                                    "then each metric): augmentations joined at a small distance change the CAMs of "
                                    "the same images alike; one colour per cluster below the dashed cut."))
        if result.between is not None and len(result.between):
            rendered.append(_render(plots.between_heatmaps(result.between, metrics, order), "between_augmentations",
                                    "Median over the test images of each metric between two augmented models' CAMs "
                                    "(same seed, averaged over seeds); the brighter the cell, the more alike the two "
                                    "augmentations' CAMs (the colour scale is reversed for distances)."))
        if result.significance is not None:
            rendered.append(_render(plots.significance_forest(result.significance, metrics, order), "noise_effects",
                                    "Effect of each augmentation beyond randomness: median per-image difference from "
                                    "the noise floor (0, dashed) with its 95% bootstrap CI; filled = significant after "
                                    "Holm's adjustment, hollow = not distinguishable from retraining noise."))
        if result.sanity is not None:
            rendered.append(_render(plots.sanity_curve(result.sanity), "sanity",
                                    "Cascading randomisation of the baseline's layers (output first): Spearman between "
                                    "the trained model's CAMs and the randomised model's, median and quartile band; a "
                                    f"sound method falls inside the dotted ±{SANITY_THRESHOLD:g} lines by the last "
                                    "layer (diamond: model trained on permuted labels)."))
        segments = segment(tables.metrics)
        for m in metrics:
            rendered.append(_render(plots.segmented_boxplot(tables.metrics, m, order, segments), f"segmented_{m}",
                                    f"{display_name(m)} split by whether the baseline and the augmented model "
                                    "classify the image correctly (one value per model and image, seeds pooled); "
                                    "the small numbers count the values in each box."))
        grids = extreme_image_figures(tables, result.extremes, images, cams)
        for (m, criterion), fig in grids.items():
            what = "mean" if criterion == "highest mean" else "std"
            rendered.append(_render(fig, f"extreme_{m}_{what}",
                                    f"The test image whose {display_name(m)} has the {criterion} across "
                                    "augmentations: CAMs overlaid on the image (red = high); top row one seed, "
                                    "bottom row the mean of the seeds' maps; → = predicted class."))
        return rendered

    figures = timed("figures", build_figures)
    from augcam.analysis.related import related_report

    related_files, related_context = timed("related methodologies", lambda: related_report(tables))
    by_name = {f.name: f for f in figures}
    segment_table = result.segment_counts.rename(columns={s.replace(" ", "_"): s for s in SEGMENTS})
    perf_table = result.performance.rename(columns={f"{c}_{s}": f"{display_name(c)} {s}" for c in PERFORMANCE_COLUMNS
                                                    for s in ("mean", "std")})
    augmentations = [a for a in order if a != BASELINE]
    context = {
        "question": QUESTION, "study": tables.study, "config": _config_summary(tables.study, tables),
        "base_augmentations": [entry.get("name") for entry in
                               (tables.study.get("training") or {}).get("base_augmentations") or []],
        "augmentations": [augmentation_label(a) for a in augmentations], "metrics": metrics,
        "display": display_name, "figure": by_name, "pairs": pairs,
        "performance_table": _html_table(_labelled(perf_table)),
        "failed": tables.performance.loc[tables.performance["status"] != "complete", ["model_id", "status"]]
        .to_dict("records"),
        "strongest": _html_table(result.strongest), "weakest": _html_table(result.weakest),
        "segment_table": _html_table(_labelled(segment_table)),
        "extremes": result.extremes.to_dict("records"), "image_note": image_note,
        "summary_table": _summary_display(_labelled(result.summary), metrics),
        "clusters_table": _clusters_display(result.clusters), "control": augmentation_label(CONTROL),
        "has_between": result.between is not None and len(result.between) > 0,
        "noise": None if result.significance is None else {
            "summary": _noise_summary_display(result.noise_summary, metrics),
            "significance": _significance_display(result.significance, metrics),
            "sentences": _noise_sentences(result.noise_verdicts, augmentations),
            "identity": None if result.significance_identity is None else {
                "significance": _significance_display(result.significance_identity, metrics),
                "sentences": _identity_sentences(noise_verdicts(result.significance_identity))},
            "replicas": int(result.noise_summary["replica"].nunique() - 1),
            "resamples": n_resamples},
        "sanity": None if result.sanity is None else {"sentences": _sanity_sentences(result.sanity_verdicts),
                                                      "threshold": SANITY_THRESHOLD},
        "controls_note": _controls_note(tables),
        "cam_method": method_name(tables.study.get("cam", {}).get("method", "gradcam")),
        **related_context,  # published, faithfulness (issue 7): None when the study has no such section
    }
    # Sections in order, (id, title); those of the controls only when the run has their tables.
    sections = [("performance", "Performance"), ("distributions", "Metric distributions"),
                ("correlations", "Correlation maps between augmentations"), ("pairs", "Strongest and weakest pairs"),
                ("profiles", "Impact profiles"), ("segments", "Results by prediction agreement"),
                ("extremes", "Extreme images"), ("summary", "Summary table")]
    sections += [("noise", "Is it more than noise?")] * (context["noise"] is not None)
    sections += [("sanity", "Sanity check")] * (context["sanity"] is not None)
    sections += [("published", "Comparison with the published study")] * (context["published"] is not None)
    sections += [("faithfulness", "Faithfulness and occlusion robustness")] * (context["faithfulness"] is not None)
    context["mask_guided"], mask_guided_csvs = _mask_guided_section(tables)
    sections += [("mask_guided", "Mask-guided training: generalisation vs localisation")] * (
        context["mask_guided"] is not None)
    context.update(sections=sections, number={sid: i for i, (sid, _) in enumerate(sections, start=1)})
    html = timed("html", lambda: _template().render(
        **context, provenance=_provenance(tables.manifest, time.perf_counter() - started)))

    root = tables.root
    t0 = time.perf_counter()
    csv_files = {**result.csv_files(), **related_files, **mask_guided_csvs}
    for name, text in csv_files.items():
        write_text(root / "tables" / name, text)
    for fig in figures:
        for suffix, payload in (("png", fig.png), ("svg", fig.svg)):
            with atomic_path(root / "figures" / f"{fig.name}.{suffix}") as tmp:
                tmp.write_bytes(payload)
    # Outputs of the controls' analyses that this run no longer has (its controls were turned off
    # since the last report) would contradict the report: remove them.
    for name in set(OPTIONAL_TABLES) - set(csv_files):
        (root / "tables" / name).unlink(missing_ok=True)
    for stem in set(OPTIONAL_FIGURES) - set(by_name):
        for suffix in ("png", "svg"):
            (root / "figures" / f"{stem}.{suffix}").unlink(missing_ok=True)
    report = root / "report.html"
    write_text(report, html)  # last: its presence means every table and figure above is written
    timings["write"] = time.perf_counter() - t0
    total = time.perf_counter() - started
    console.print(f"[bold]report[/]: {len(csv_files)} tables, {len(figures)} figures (PNG + SVG), "
                  f"{report} in {total:.1f} s ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ")", highlight=False)
    return report
