"""The report's numbers: every analysis of a finished run as a pandas DataFrame.

Everything here is a pure function of the run's tables (`augcam.analysis.run_tables.load_run`)
and the per-model training histories, so the analyses can be recomputed on any machine, without
the models' device, and give the same CSVs every time. The controls' tests against the noise floor
are in `augcam.analysis.statistics`, the impact profiles in `augcam.analysis.impact_profiles`.

Conventions shared by every function (besides those of `run_tables`): spreads over seeds or
augmentations are sample standard deviations (ddof = 1), NaN when there is a single value. The
thesis's analyses (correlation maps, pairs, segmented results, extreme images) take the studied
augmentations' rows only (`studied_rows`): the identity control is a reference, not one of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from augcam.analysis.run_tables import (
    PERFORMANCE_COLUMNS,
    ReportError,
    RunTables,
    augmentation_order,
    metric_columns,
    ordered_like,
    studied_rows,
)

__all__ = [
    "performance_summary",
    "training_histories",
    "correlation_maps",
    "pair_frequencies",
    "SEGMENTS",
    "segment",
    "segment_counts",
    "segment_medians",
    "extreme_images",
    "summary_table",
    "between_augmentation_medians",
    "between_matrix",
    "sanity_verdicts",
    "SANITY_THRESHOLD",
]

SANITY_THRESHOLD = 0.5  # median |Spearman| below which a CAM method passes a randomisation check


# --- 1. performance --------------------------------------------------------------------------


def performance_summary(performance: pd.DataFrame) -> pd.DataFrame:
    """Per augmentation (baseline first): the number of finished models and the mean and standard
    deviation over seeds of test accuracy, macro precision, recall and F1."""
    finished = performance[performance["status"] == "complete"]
    order = ordered_like(finished["augmentation"], augmentation_order(performance))
    grouped = finished.groupby("augmentation", sort=False)[list(PERFORMANCE_COLUMNS)]
    means, stds = grouped.mean(), grouped.std(ddof=1)
    summary = pd.DataFrame({"augmentation": order, "n_models": grouped.size().reindex(order).to_numpy()})
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
            raise ReportError(
                f"{path}: missing; the training history of finished model {row.model_id} "
                "is needed for the training curves"
            )
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
    where either value is NaN are left out of that pair); the studied augmentations only."""
    aggregated = studied_rows(aggregated)
    augs = ordered_like(aggregated["augmentation"], order or [])
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
    rows = [(a, b, corr.loc[a, b]) for i, a in enumerate(augs) for b in augs[i + 1 :]]
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
        rows = [
            {"pair": f"{a} – {b}", "count": len(metrics), "metrics": ", ".join(metrics), "_position": position[(a, b)]}
            for (a, b), metrics in found.items()
        ]
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
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(SEGMENTS)), index=metrics.index, name="segment")


def segment_counts(metrics: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Images per segment for every model of a studied augmentation: one row per (augmentation,
    seed), one count column per segment, and `images` (their sum, the number of test images)."""
    metrics = studied_rows(metrics)
    frame = metrics[["augmentation", "seed"]].assign(segment=segment(metrics))
    counts = frame.groupby(["augmentation", "seed", "segment"], observed=False, sort=False).size()
    wide = counts.unstack("segment").reindex(columns=list(SEGMENTS)).fillna(0).astype("int64")
    wide.columns = [s.replace(" ", "_") for s in SEGMENTS]
    wide = wide.reset_index()
    # `observed=False` also makes (augmentation, seed) combinations that do not exist; drop them.
    present = metrics.groupby(["augmentation", "seed"], sort=False).size()
    wide = wide.set_index(["augmentation", "seed"]).loc[present.index].reset_index()
    wide["images"] = wide[[s.replace(" ", "_") for s in SEGMENTS]].sum(axis=1)
    augs = ordered_like(wide["augmentation"], order or [])
    wide["_rank"] = wide["augmentation"].map({a: i for i, a in enumerate(augs)})
    wide = wide.sort_values(["_rank", "seed"], kind="stable").drop(columns="_rank")
    wide["seed"] = wide["seed"].astype("Int64")
    return wide.reset_index(drop=True)


def segment_medians(metrics: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per (studied augmentation, segment), pooled over seeds: the number of (model, image) rows
    and the median of every metric."""
    metrics = studied_rows(metrics)
    columns = metric_columns(metrics)
    frame = metrics[["augmentation", *columns]].assign(segment=segment(metrics))
    grouped = frame.groupby(["augmentation", "segment"], observed=True, sort=False)
    medians = grouped[columns].median()
    medians.insert(0, "rows", grouped.size())
    medians = medians.reset_index()
    augs = ordered_like(medians["augmentation"], order or [])
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
    Across the studied augmentations only: a control's values choose no image.
    """
    aggregated = studied_rows(aggregated)
    rows = []
    labels = aggregated.groupby("image_index")[["label", "baseline_pred"]].first()
    for metric in metric_columns(aggregated):
        wide = aggregated.pivot(index="image_index", columns="augmentation", values=metric).sort_index()
        for criterion, values in (("highest mean", wide.mean(axis=1)), ("highest std", wide.std(axis=1, ddof=1))):
            if values.notna().any():
                image = int(values.idxmax())
                rows.append(
                    {
                        "metric": metric,
                        "criterion": criterion,
                        "image_index": image,
                        "label": int(labels.loc[image, "label"]),
                        "baseline_pred": int(labels.loc[image, "baseline_pred"]),
                        "value": float(values.loc[image]),
                    }
                )
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


# --- 9. augmentation vs augmentation (controls) ----------------------------------------------


def between_augmentation_medians(
    between: pd.DataFrame, metrics: list[str] | None = None, order: list[str] | None = None
) -> pd.DataFrame:
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
    augs = ordered_like(pd.concat([medians["augmentation_a"], medians["augmentation_b"]]), order or [])
    rank = {a: i for i, a in enumerate(augs)}
    medians = medians.assign(_a=medians["augmentation_a"].map(rank), _b=medians["augmentation_b"].map(rank))
    medians = medians.sort_values(["_a", "_b"], kind="stable").drop(columns=["_a", "_b"])
    return medians.reset_index(drop=True)


def between_matrix(medians: pd.DataFrame, metric: str, order: list[str] | None = None) -> pd.DataFrame:
    """One metric of `between_augmentation_medians` as a symmetric augmentations × augmentations
    matrix (study order), NaN on the diagonal and for pairs that were not compared."""
    augs = ordered_like(pd.concat([medians["augmentation_a"], medians["augmentation_b"]]), order or [])
    matrix = pd.DataFrame(np.nan, index=pd.Index(augs, name="augmentation"), columns=augs)
    for a, b, value in zip(medians["augmentation_a"], medians["augmentation_b"], medians[metric]):
        matrix.loc[a, b] = matrix.loc[b, a] = value
    return matrix


# --- 10. sanity check ------------------------------------------------------------------------


def sanity_verdicts(sanity: pd.DataFrame, threshold: float = SANITY_THRESHOLD) -> pd.DataFrame:
    """`augcam.cams.sanity.sanity_verdict` per (test, CAM method) of sanity.csv: for "cascading" the
    median |Spearman| to the trained model's maps after every layer is randomised, for "data" the
    one between the baseline and the model trained on permuted labels; a method passes when it is
    below `threshold`."""
    from augcam.cams.sanity import sanity_verdict

    rows = []
    for (test, method), group in sanity.groupby(["test", "method"], sort=False):
        verdict = sanity_verdict(group.sort_values("step", kind="stable"), threshold)
        rows.append({"test": test, "method": method, **verdict})
    return pd.DataFrame(rows, columns=["test", "method", "passes", "final_median", "threshold", "steps"])
