"""Stage 5's numbers: every analysis of a finished run as a pandas DataFrame.

Everything here is a pure function of the run's tables (`performance.parquet`, `metrics.parquet`,
`aggregated.parquet`, and the controls' `noise_floor.parquet`, `between_augmentations.parquet` and
`sanity.csv` when the study made them) and the per-model training histories, so the analyses can be
recomputed on any machine, without the models' device, and give the same CSVs every time.

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

from augcam.config import IDENTITY
from augcam.errors import AugcamError
from augcam.profiles import cluster_table
from augcam.statistics import noise_floor, significance_table

__all__ = [
    "ReportError", "RunTables", "load_run", "metric_columns", "display_name", "augmentation_order",
    "augmentation_label", "method_name", "performance_summary", "training_histories", "correlation_maps",
    "pair_frequencies",
    "SEGMENTS", "segment", "segment_counts", "segment_medians", "extreme_images", "summary_table",
    "noise_floor_summary", "significance_vs_noise", "significance_vs_identity", "noise_verdicts", "impact_clusters_table",
    "between_augmentation_medians", "between_matrix", "sanity_verdicts", "SANITY_THRESHOLD",
]

BASELINE = "baseline"
CONTROL = IDENTITY  # the control augmentation: an unchanged copy of each image (docs/trustworthy.md)
# Columns of the metric tables (metrics.parquet, aggregated.parquet, noise_floor.parquet,
# between_augmentations.parquet) that identify a row or describe predictions; every other numeric
# column is a metric.
ID_COLUMNS = frozenset({"model_id", "augmentation", "seed", "image_index", "label", "baseline_pred",
                        "model_pred", "n_models", "replica", "augmentation_a", "augmentation_b"})
SANITY_THRESHOLD = 0.5  # median |Spearman| below which a CAM method passes a randomisation check
# Metrics for which a lower value means a CAM closer to the other one; the rest are similarities.
DISTANCE_METRICS = frozenset({"mad", "msd", "class_kld", "kl", "max_abs_diff"})
PERFORMANCE_COLUMNS = ("test_accuracy", "precision", "recall", "f1")

_DISPLAY_NAMES = {"mad": "MAD", "msd": "MSD", "pearson": "Pearson", "spearman": "Spearman",
                  "class_kld": "Class-KLD", "test_accuracy": "test accuracy", "precision": "macro precision",
                  "recall": "macro recall", "f1": "macro F1",
                  # Tang et al.'s saliency metrics (metrics.saliency)
                  "cc": "CC", "kl": "KL", "entropy": "entropy (model)", "entropy_base": "entropy (baseline)"}


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


_METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM",
                 "layercam": "LayerCAM", "scorecam": "Score-CAM", "eigencam": "EigenCAM", "saliency": "Saliency"}


def method_name(method: str) -> str:
    """A CAM method's name as the literature writes it: `gradcam` → `Grad-CAM`."""
    return _METHOD_NAMES.get(str(method), str(method))


def augmentation_label(name: str) -> str:
    """How figures and the report name an augmentation: the control is marked as one."""
    return f"{name} (control)" if name == CONTROL else name


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
    # The controls' tables (None when the study did not make them: controls off, or an older run).
    noise: pd.DataFrame | None = None  # noise_floor.parquet: baseline replicas vs the baseline
    between: pd.DataFrame | None = None  # between_augmentations.parquet: model (a, seed) vs (b, seed)
    sanity: pd.DataFrame | None = None  # sanity.csv: randomisation checks of the CAM method

    @property
    def controls(self) -> dict:
        """manifest.json's record of the controls the study ran ({} for a run made without it)."""
        value = self.manifest.get("controls")
        return value if isinstance(value, dict) else {}

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
    "noise_floor.parquet": {"replica", "image_index"},
    "between_augmentations.parquet": {"augmentation_a", "augmentation_b", "seed", "image_index"},
    "sanity.csv": {"test", "method", "step", "layer", "spearman_median", "spearman_q25", "spearman_q75",
                   "abs_spearman_median", "n_images", "n_undefined"},
}


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ReportError(f"{path}: missing; the study has not finished its compare and aggregate stages "
                          f"(run `augcam run` on this directory first)")
    try:
        table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
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
    noise = _read_control(root / "tables" / "noise_floor.parquet", aggregated)
    between = _read_control(root / "tables" / "between_augmentations.parquet", aggregated)
    sanity = _read_control(root / "tables" / "sanity.csv", aggregated)
    if noise is not None:
        missing = np.setdiff1d(aggregated["image_index"].unique(), noise["image_index"].unique())
        if len(missing):
            raise ReportError(f"{root / 'tables' / 'noise_floor.parquet'}: lacks {len(missing)} of the test images "
                              f"of aggregated.parquet (e.g. image {missing[0]}); rerun the study")
    return RunTables(root, study, manifest, performance, metrics, aggregated, noise, between, sanity)


def _read_control(path: Path, aggregated: pd.DataFrame) -> pd.DataFrame | None:
    """A control table, or None when the study did not write it (controls off)."""
    if not path.exists():
        return None
    table = _read_table(path)
    if path.suffix == ".csv":
        table["layer"] = table["layer"].astype(str)
        return table
    expected = metric_columns(aggregated)
    if metric_columns(table) != expected:
        raise ReportError(f"{path}: its metric columns ({metric_columns(table)}) are not those of "
                          f"aggregated.parquet ({expected}); rerun the study")
    return table


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


# --- 8. is it more than noise? (controls) ----------------------------------------------------


def noise_floor_summary(noise: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """The noise floor per metric: one row per (metric, replica) with the number of images and the
    median, quartiles and interquartile range over the test images of the metric between that
    baseline replica's CAMs and the baseline's, then a row `replica` = "all" for the per-image mean
    over the replicas — the noise floor every augmentation is tested against."""
    metrics = metric_columns(noise) if metrics is None else list(metrics)
    replicas = list(dict.fromkeys(noise["replica"].astype(str)))
    floor = noise_floor(noise, metrics)
    rows = []
    for metric in metrics:
        samples = [(r, noise.loc[noise["replica"].astype(str) == r, metric]) for r in replicas]
        for replica, values in samples + [("all", floor[metric])]:
            q25, q50, q75 = values.quantile([0.25, 0.5, 0.75]).to_numpy()
            rows.append({"metric": metric, "replica": replica, "n_images": int(values.notna().sum()),
                         "median": q50, "q25": q25, "q75": q75, "iqr": q75 - q25})
    return pd.DataFrame(rows, columns=["metric", "replica", "n_images", "median", "q25", "q75", "iqr"])


def significance_vs_noise(aggregated: pd.DataFrame, noise: pd.DataFrame, metrics: list[str] | None = None,
                          order: list[str] | None = None, *, n_resamples: int = 2000,
                          seed: int = 0) -> pd.DataFrame:
    """`augcam.statistics.significance_table` of every (augmentation, metric) against the noise
    floor of the baseline replicas (`noise` = noise_floor.parquet's rows), in study order then
    metric order. Holm's adjustment runs over the whole table."""
    metrics = metric_columns(aggregated) if metrics is None else list(metrics)
    table = significance_table(aggregated, noise_floor(noise, metrics), metrics, n_resamples=n_resamples,
                               seed=seed)
    return _in_study_order(table, metrics, order)


def significance_vs_identity(aggregated: pd.DataFrame, metrics: list[str] | None = None,
                             order: list[str] | None = None, *, n_resamples: int = 2000,
                             seed: int = 0) -> pd.DataFrame | None:
    """The same test with the identity control in place of the noise floor: every other
    augmentation against `identity` on the same test images (seed-averaged values), so the effect of
    the transformation is separated from that of the extra training steps both share. Columns as in
    `significance_vs_noise`, with `identity_median` for `noise_floor_median`; Holm over this table.
    None when the run has no identity control."""
    metrics = metric_columns(aggregated) if metrics is None else list(metrics)
    is_control = aggregated["augmentation"] == CONTROL
    if not is_control.any() or is_control.all():
        return None
    identity = aggregated[is_control].set_index("image_index")[metrics]
    table = significance_table(aggregated[~is_control], identity, metrics, n_resamples=n_resamples, seed=seed,
                               reference=f"the {CONTROL} control")
    return _in_study_order(table, metrics, order).rename(columns={"noise_floor_median": "identity_median"})


def _in_study_order(table: pd.DataFrame, metrics: list[str], order: list[str] | None) -> pd.DataFrame:
    augs = _ordered(table["augmentation"], order or [])
    rank = table["augmentation"].map({a: i for i, a in enumerate(augs)})
    metric_rank = table["metric"].map({m: i for i, m in enumerate(metrics)})
    table = table.assign(_a=rank, _m=metric_rank).sort_values(["_a", "_m"], kind="stable")
    return table.drop(columns=["_a", "_m"]).reset_index(drop=True)


def noise_verdicts(significance: pd.DataFrame) -> pd.DataFrame:
    """Per augmentation (table order): in how many metrics it differs significantly from the noise
    floor (Holm-adjusted) and which."""
    rows = []
    for aug, group in significance.groupby("augmentation", sort=False):
        differ = group.loc[group["significant"].astype(bool), "metric"].tolist()
        rows.append({"augmentation": aug, "metrics": len(group), "significant": len(differ),
                     "significant_metrics": ", ".join(differ)})
    return pd.DataFrame(rows, columns=["augmentation", "metrics", "significant", "significant_metrics"])


# --- 9. impact profiles ----------------------------------------------------------------------


def impact_clusters_table(aggregated: pd.DataFrame, metrics: list[str] | None = None,
                          order: list[str] | None = None) -> pd.DataFrame:
    """`augcam.profiles.cluster_table` with the augmentations in study order: per scope (all metrics
    combined, then each metric alone) each augmentation's cluster, dendrogram leaf position and the
    distance the dendrogram is cut at."""
    metrics = metric_columns(aggregated) if metrics is None else list(metrics)
    augs = _ordered(aggregated["augmentation"], order or [])
    rank = aggregated["augmentation"].map({a: i for i, a in enumerate(augs)})
    ordered = aggregated.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
    return cluster_table(ordered, metrics)


def between_augmentation_medians(between: pd.DataFrame, metrics: list[str] | None = None,
                                 order: list[str] | None = None) -> pd.DataFrame:
    """From between_augmentations.parquet (model (a, seed) vs model (b, seed), per test image): the
    mean over seeds per (a, b, image), then per pair (a, b) the median over images of every metric.
    One row per pair (pairs in study order): `augmentation_a`, `augmentation_b`, `n_seeds`,
    `n_images`, then one column per metric."""
    metrics = metric_columns(between) if metrics is None else list(metrics)
    keys = ["augmentation_a", "augmentation_b"]
    per_image = between.groupby([*keys, "image_index"], sort=False)[metrics].mean()
    grouped = per_image.groupby(level=keys, sort=False)
    medians = grouped.median()
    medians.insert(0, "n_images", grouped.size())
    medians.insert(0, "n_seeds", between.groupby(keys, sort=False)["seed"].nunique())
    medians = medians.reset_index()
    augs = _ordered(pd.concat([medians["augmentation_a"], medians["augmentation_b"]]), order or [])
    rank = {a: i for i, a in enumerate(augs)}
    medians = medians.assign(_a=medians["augmentation_a"].map(rank), _b=medians["augmentation_b"].map(rank))
    medians = medians.sort_values(["_a", "_b"], kind="stable").drop(columns=["_a", "_b"])
    return medians.reset_index(drop=True)


def between_matrix(medians: pd.DataFrame, metric: str, order: list[str] | None = None) -> pd.DataFrame:
    """One metric of `between_augmentation_medians` as a symmetric augmentations × augmentations
    matrix (study order), NaN on the diagonal and for pairs that were not compared."""
    augs = _ordered(pd.concat([medians["augmentation_a"], medians["augmentation_b"]]), order or [])
    matrix = pd.DataFrame(np.nan, index=pd.Index(augs, name="augmentation"), columns=augs)
    for a, b, value in zip(medians["augmentation_a"], medians["augmentation_b"], medians[metric]):
        matrix.loc[a, b] = matrix.loc[b, a] = value
    return matrix


# --- 10. sanity check ------------------------------------------------------------------------


def sanity_verdicts(sanity: pd.DataFrame, threshold: float = SANITY_THRESHOLD) -> pd.DataFrame:
    """`augcam.sanity.sanity_verdict` per (test, CAM method) of sanity.csv: for "cascading" the
    median |Spearman| to the trained model's maps after every layer is randomised, for "data" the
    one between the baseline and the model trained on permuted labels; a method passes when it is
    below `threshold`."""
    from augcam.sanity import sanity_verdict

    rows = []
    for (test, method), group in sanity.groupby(["test", "method"], sort=False):
        verdict = sanity_verdict(group.sort_values("step", kind="stable"), threshold)
        rows.append({"test": test, "method": method, **verdict})
    return pd.DataFrame(rows, columns=["test", "method", "passes", "final_median", "threshold", "steps"])
