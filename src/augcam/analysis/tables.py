"""Stage 5's numbers: every analysis of a finished run as a pandas DataFrame.

Everything here is a pure function of the run's tables (`performance.parquet`, `metrics.parquet`,
`aggregated.parquet`) and the per-model training histories, so the analyses can be recomputed on
any machine, without the models' device, and give the same CSVs every time.

Conventions shared by every function:

- augmentations appear in the study's order (the order of `performance.parquet`: the baseline
  first, then the plan's order);
- metric columns are whatever numeric columns the comparison wrote, in table order
  (`metric_columns`), so a metric added to `augcam.metrics` shows up here without edits;
- spreads over seeds or augmentations are sample standard deviations (ddof = 1), NaN when there
  is a single value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from augcam.errors import AugcamError

__all__ = [
    "ReportError", "RunTables", "load_run", "metric_columns", "display_name", "augmentation_order",
    "performance_summary", "training_histories", "correlation_maps", "pair_frequencies",
    "SEGMENTS", "segment", "segment_counts", "segment_medians", "extreme_images", "summary_table",
]

BASELINE = "baseline"
# Columns of metrics.parquet / aggregated.parquet that identify a row or describe predictions; every
# other numeric column is a metric.
ID_COLUMNS = frozenset({"model_id", "augmentation", "seed", "image_index", "label", "baseline_pred",
                        "model_pred", "n_models"})
PERFORMANCE_COLUMNS = ("test_accuracy", "precision", "recall", "f1")

_DISPLAY_NAMES = {"mad": "MAD", "msd": "MSD", "pearson": "Pearson", "spearman": "Spearman",
                  "class_kld": "Class-KLD", "test_accuracy": "test accuracy", "precision": "macro precision",
                  "recall": "macro recall", "f1": "macro F1"}


class ReportError(AugcamError):
    """A run directory cannot be analysed: it is missing, not a run, or its tables are incomplete."""


def display_name(column: str) -> str:
    """The name a reader knows a metric by: `overlap_20` → `Overlap Rate@20%`, `mad` → `MAD`."""
    if column in _DISPLAY_NAMES:
        return _DISPLAY_NAMES[column]
    overlap = re.fullmatch(r"overlap_(\d+(?:\.\d+)?)", column)
    if overlap:
        return f"Overlap Rate@{overlap.group(1)}%"
    return column


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a metrics or aggregated table, in table order."""
    return [col for col in table.columns
            if col not in ID_COLUMNS and pd.api.types.is_numeric_dtype(table[col])]


# --- loading ---------------------------------------------------------------------------------


@dataclass
class RunTables:
    """What the analyses read from a run directory."""

    root: Path
    study: dict
    manifest: dict
    performance: pd.DataFrame
    metrics: pd.DataFrame
    aggregated: pd.DataFrame

    @property
    def augmentations(self) -> list[str]:
        """Augmented models' labels in study order (no baseline)."""
        return [a for a in augmentation_order(self.performance) if a != BASELINE]

    @property
    def metric_names(self) -> list[str]:
        return metric_columns(self.aggregated)

    def history_file(self, model_id: str) -> Path:
        return self.root / "models" / model_id / "history.parquet"

    def cams_file(self, model_id: str) -> Path:
        return self.root / "cams" / f"{model_id}.safetensors"


_REQUIRED = {
    "performance.parquet": {"model_id", "augmentation", "seed", "status", *PERFORMANCE_COLUMNS},
    "metrics.parquet": {"model_id", "augmentation", "seed", "image_index", "label", "baseline_pred", "model_pred"},
    "aggregated.parquet": {"augmentation", "image_index", "label", "baseline_pred"},
}


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ReportError(f"{path}: missing; the study has not finished its compare and aggregate stages "
                          f"(run `augcam run` on this directory first)")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the table ({err})") from None
    missing = sorted(_REQUIRED[path.name] - set(table.columns))
    if missing:
        raise ReportError(f"{path}: lacks the column(s) {', '.join(missing)}; it was not written by this "
                          "version of augcam")
    return table


def _read_yaml_or_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ReportError(f"{path}: missing, so {path.parent} is not a finished augcam run directory "
                          f"(a run has study.yaml, manifest.json and tables/); {what}")
    try:
        value = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ReportError(f"{path}: cannot read it ({err})") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: expected a mapping, found {type(value).__name__}")
    return value


def load_run(run_dir: str | Path) -> RunTables:
    """Read and check what stage 5 needs; every problem is a `ReportError` naming the file."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such run directory")
    study = _read_yaml_or_json(root / "study.yaml", "it holds the resolved study config")
    manifest = _read_yaml_or_json(root / "manifest.json", "it holds versions and timings")
    performance = _read_table(root / "tables" / "performance.parquet")
    metrics = _read_table(root / "tables" / "metrics.parquet")
    aggregated = _read_table(root / "tables" / "aggregated.parquet")
    if not (performance["augmentation"] == BASELINE).any():
        raise ReportError(f"{root / 'tables' / 'performance.parquet'}: has no baseline row")
    if metrics.empty or aggregated.empty:
        raise ReportError(f"{root / 'tables'}: metrics.parquet or aggregated.parquet has no rows; "
                          "a study needs at least one augmented model that finished training")
    if metric_columns(aggregated) != metric_columns(metrics):
        raise ReportError(f"{root / 'tables'}: aggregated.parquet and metrics.parquet have different metric "
                          f"columns ({metric_columns(aggregated)} vs {metric_columns(metrics)}); rerun the study")
    return RunTables(root, study, manifest, performance, metrics, aggregated)


def augmentation_order(performance: pd.DataFrame) -> list[str]:
    """Baseline first, then the augmentations in the order the study lists them."""
    seen = list(dict.fromkeys(performance["augmentation"].astype(str)))
    return [BASELINE] * (BASELINE in seen) + [a for a in seen if a != BASELINE]


def _ordered(values: pd.Series | pd.Index, order: list[str]) -> list[str]:
    present = set(values)
    return [a for a in order if a in present] + sorted(present - set(order))


# --- 1. performance --------------------------------------------------------------------------


def performance_summary(performance: pd.DataFrame) -> pd.DataFrame:
    """Per augmentation (baseline first): the number of finished models and the mean and standard
    deviation over seeds of test accuracy, macro precision, recall and F1."""
    finished = performance[performance["status"] == "complete"]
    order = _ordered(finished["augmentation"], augmentation_order(performance))
    grouped = finished.groupby("augmentation", sort=False)[list(PERFORMANCE_COLUMNS)]
    means, stds = grouped.mean(), grouped.std(ddof=1)
    summary = pd.DataFrame({"augmentation": order,
                            "n_models": grouped.size().reindex(order).to_numpy()})
    for col in PERFORMANCE_COLUMNS:
        summary[f"{col}_mean"] = means[col].reindex(order).to_numpy()
        summary[f"{col}_std"] = stds[col].reindex(order).to_numpy()
    return summary


def training_histories(tables: RunTables) -> pd.DataFrame:
    """Every finished model's per-epoch history, one row per (model, epoch), with its
    augmentation and seed."""
    frames = []
    finished = tables.performance[tables.performance["status"] == "complete"]
    for row in finished.itertuples(index=False):
        path = tables.history_file(row.model_id)
        if not path.exists():
            raise ReportError(f"{path}: missing; the training history of finished model {row.model_id} "
                              "is needed for the training curves")
        try:
            history = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise ReportError(f"{path}: cannot read the table ({err})") from None
        history.insert(0, "seed", pd.array([row.seed] * len(history), dtype="Int64"))
        history.insert(0, "augmentation", row.augmentation)
        history.insert(0, "model_id", row.model_id)
        frames.append(history)
    return pd.concat(frames, ignore_index=True)


# --- 3. correlation maps ---------------------------------------------------------------------


def correlation_maps(aggregated: pd.DataFrame, order: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """For each metric, the Pearson correlation between augmentations of that metric's
    seed-averaged value over the test images (an augmentations × augmentations matrix; images
    where either value is NaN are left out of that pair)."""
    augs = _ordered(aggregated["augmentation"], order or [])
    maps = {}
    for metric in metric_columns(aggregated):
        wide = aggregated.pivot(index="image_index", columns="augmentation", values=metric)
        corr = wide.reindex(columns=augs).corr(method="pearson")
        corr.index.name, corr.columns.name = "augmentation", None
        maps[metric] = corr
    return maps


def _pairs(corr: pd.DataFrame) -> pd.DataFrame:
    """Unordered pairs (upper triangle, study order) with their correlation; undefined ones left out."""
    augs = list(corr.columns)
    rows = [(a, b, corr.loc[a, b]) for i, a in enumerate(augs) for b in augs[i + 1:]]
    pairs = pd.DataFrame(rows, columns=["a", "b", "r"])
    pairs["position"] = range(len(pairs))
    return pairs.dropna(subset=["r"])


def pair_frequencies(maps: dict[str, pd.DataFrame], k: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(strongest, weakest): for each metric's correlation map take the k pairs of augmentations
    with the highest (resp. lowest) correlation, then count per pair in how many maps it was taken.

    Each table has one row per pair that was taken at least once: `pair` ("a – b", study order),
    `count`, and `metrics` (the metrics whose map it was taken from, comma-separated), sorted by
    count (descending), ties in study order. Ties in correlation are broken by study order too.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    chosen: dict[str, dict[tuple[str, str], list[str]]] = {"strongest": {}, "weakest": {}}
    position: dict[tuple[str, str], int] = {}
    for metric, corr in maps.items():
        pairs = _pairs(corr)
        for _, row in pairs.iterrows():
            position[(row.a, row.b)] = int(row.position)
        # A stable sort on the correlation alone keeps study order among equal values.
        strongest = pairs.sort_values("r", ascending=False, kind="stable").head(k)
        weakest = pairs.sort_values("r", ascending=True, kind="stable").head(k)
        for which, taken in (("strongest", strongest), ("weakest", weakest)):
            for a, b in zip(taken.a, taken.b):
                chosen[which].setdefault((a, b), []).append(metric)

    def table(found: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
        rows = [{"pair": f"{a} – {b}", "count": len(metrics), "metrics": ", ".join(metrics),
                 "_position": position[(a, b)]} for (a, b), metrics in found.items()]
        frame = pd.DataFrame(rows, columns=["pair", "count", "metrics", "_position"])
        frame = frame.sort_values(["count", "_position"], ascending=[False, True], kind="stable")
        return frame.drop(columns="_position").reset_index(drop=True)

    return table(chosen["strongest"]), table(chosen["weakest"])


# --- 5. segmented results --------------------------------------------------------------------

SEGMENTS = ("both correct", "both wrong", "only baseline correct", "only augmented correct")


def segment(metrics: pd.DataFrame) -> pd.Series:
    """Each (model, image) row's prediction agreement with the baseline, as a categorical."""
    base_ok = (metrics["baseline_pred"] == metrics["label"]).to_numpy()
    model_ok = (metrics["model_pred"] == metrics["label"]).to_numpy()
    codes = np.select([base_ok & model_ok, ~base_ok & ~model_ok, base_ok & ~model_ok], [0, 1, 2], default=3)
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(SEGMENTS)), index=metrics.index,
                     name="segment")


def segment_counts(metrics: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Images per segment for every augmented model: one row per (augmentation, seed), one count
    column per segment, and `images` (their sum, the number of test images)."""
    frame = metrics[["augmentation", "seed"]].assign(segment=segment(metrics))
    counts = frame.groupby(["augmentation", "seed", "segment"], observed=False, sort=False).size()
    wide = counts.unstack("segment").reindex(columns=list(SEGMENTS)).fillna(0).astype("int64")
    wide.columns = [s.replace(" ", "_") for s in SEGMENTS]
    wide = wide.reset_index()
    # `observed=False` also makes (augmentation, seed) combinations that do not exist; drop them.
    present = metrics.groupby(["augmentation", "seed"], sort=False).size()
    wide = wide.set_index(["augmentation", "seed"]).loc[present.index].reset_index()
    wide["images"] = wide[[s.replace(" ", "_") for s in SEGMENTS]].sum(axis=1)
    augs = _ordered(wide["augmentation"], order or [])
    wide["_rank"] = wide["augmentation"].map({a: i for i, a in enumerate(augs)})
    wide = wide.sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank")
    wide["seed"] = wide["seed"].astype("Int64")
    return wide.reset_index(drop=True)


def segment_medians(metrics: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per (augmentation, segment), pooled over seeds: the number of (model, image) rows and the
    median of every metric."""
    columns = metric_columns(metrics)
    frame = metrics[["augmentation", *columns]].assign(segment=segment(metrics))
    grouped = frame.groupby(["augmentation", "segment"], observed=True, sort=False)
    medians = grouped[columns].median()
    medians.insert(0, "rows", grouped.size())
    medians = medians.reset_index()
    augs = _ordered(medians["augmentation"], order or [])
    rank = medians["augmentation"].map({a: i for i, a in enumerate(augs)})
    medians = medians.assign(_rank=rank, _seg=medians["segment"].cat.codes)
    medians = medians.sort_values(["_rank", "_seg"], kind="stable").drop(columns=["_rank", "_seg"])
    medians["segment"] = medians["segment"].astype(str)
    return medians.reset_index(drop=True)


# --- 6. extreme images -----------------------------------------------------------------------


def extreme_images(aggregated: pd.DataFrame) -> pd.DataFrame:
    """For each metric, the test image whose seed-averaged value has the highest mean across
    augmentations and the one with the highest standard deviation across augmentations.

    One row per (metric, criterion): `image_index` (the index in the official test set), `label`,
    `baseline_pred`, `value` (that mean or standard deviation). Ties go to the lower image index.
    """
    rows = []
    labels = aggregated.groupby("image_index")[["label", "baseline_pred"]].first()
    for metric in metric_columns(aggregated):
        wide = aggregated.pivot(index="image_index", columns="augmentation", values=metric).sort_index()
        for criterion, values in (("highest mean", wide.mean(axis=1)), ("highest std", wide.std(axis=1, ddof=1))):
            if values.notna().any():
                image = int(values.idxmax())
                rows.append({"metric": metric, "criterion": criterion, "image_index": image,
                             "label": int(labels.loc[image, "label"]),
                             "baseline_pred": int(labels.loc[image, "baseline_pred"]),
                             "value": float(values.loc[image])})
    return pd.DataFrame(rows, columns=["metric", "criterion", "image_index", "label", "baseline_pred", "value"])


# --- 7. summary ------------------------------------------------------------------------------


def summary_table(performance: pd.DataFrame, aggregated: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per augmentation (baseline first): finished models, test accuracy mean and std over seeds,
    then for every metric the median and interquartile range (Q3 − Q1, linear interpolation)
    over the test images of the seed-averaged value, and the number of NaN values of that metric
    in the per-model table (undefined comparisons, e.g. a constant map's correlation)."""
    perf = performance_summary(performance)[["augmentation", "n_models", "test_accuracy_mean", "test_accuracy_std"]]
    columns = metric_columns(aggregated)
    grouped = aggregated.groupby("augmentation", sort=False)
    stats = {}
    for col in columns:
        stats[f"{col}_median"] = grouped[col].median()
        stats[f"{col}_iqr"] = grouped[col].quantile(0.75) - grouped[col].quantile(0.25)
        stats[f"{col}_nan"] = metrics[col].isna().groupby(metrics["augmentation"], sort=False).sum().astype("Int64")
    per_metric = pd.DataFrame(stats)
    per_metric.index.name = "augmentation"
    summary = perf.merge(per_metric.reset_index(), on="augmentation", how="left")
    return summary
