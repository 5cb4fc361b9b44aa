"""The report's controls sections: is an augmentation's effect more than retraining noise (the
model-level test, with the per-image tables as description), do the impact profiles cluster, does
the CAM method pass the sanity checks — as tables and sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd

from augcam.analysis.names import display_name, method_name
from augcam.analysis.run_tables import CONTROL, RunTables, augmentation_label, ordered_like


def noise_summary_display(summary: pd.DataFrame, metrics: list[str]) -> dict:
    columns = ["replica"] + [display_name(m) for m in metrics]
    rows = []
    for replica, group in summary.groupby("replica", sort=False):
        by_metric = group.set_index("metric")
        name = "all (mean of the replicas per image)" if replica == "all" else f"baseline {replica}"
        rows.append(
            [name]
            + [
                f"{by_metric.loc[m, 'median']:.4f} [{by_metric.loc[m, 'iqr']:.4f}]"
                if m in by_metric.index and pd.notna(by_metric.loc[m, "median"])
                else ""
                for m in metrics
            ]
        )
    return {"columns": columns, "rows": rows}


def _signed(value: float) -> str:
    return f"{value:+.3g}"


def model_level_display(table: pd.DataFrame, metrics: list[str], order: list[str]) -> dict:
    """The model-level test as a table: one row per augmentation, per metric the effect (mean of
    its models' summaries − mean of the null models') and the BH-adjusted p, marked * where the
    test finds a difference."""
    columns = ["augmentation", "models vs null models"] + [display_name(m) for m in metrics] + ["differs in"]
    rows = []
    for aug in ordered_like(table["augmentation"], order):
        group = table[table["augmentation"] == aug].set_index("metric")
        first = group.iloc[0]
        cells = [augmentation_label(aug), f"{int(first['n_models'])} vs {int(first['n_null'])}"]
        for m in metrics:
            if m not in group.index or pd.isna(group.loc[m, "effect"]):
                cells.append("")
                continue
            row = group.loc[m]
            p = "" if pd.isna(row["p_adjusted"]) else f" (p_adj {row['p_adjusted']:.2g})"
            cells.append(f"{row['effect']:+.4f}{p}" + (" *" if bool(row["significant"]) else ""))
        tested = group["p_value"].notna()
        cells.append(f"{int(group['significant'].astype(bool).sum())} of {int(tested.sum())}")
        rows.append(cells)
    return {"columns": columns, "rows": rows}


def model_level_sentences(table: pd.DataFrame, order: list[str]) -> list[str]:
    """Per augmentation, what the model-level test says: in which metrics it differs from
    retraining noise (effect with its CI, in null-model SDs, direction, adjusted p), or that it is
    not distinguishable from it with this many models."""
    sentences = []
    for aug in ordered_like(table["augmentation"], order):
        group = table[table["augmentation"] == aug]
        label = augmentation_label(aug)
        k, m = int(group["n_models"].iloc[0]), int(group["n_null"].iloc[0])
        if group["p_value"].isna().all():
            notes = [n for n in group.get("note", pd.Series(dtype=object)).dropna().unique() if n]
            sentences.append(f"{label}: not tested ({'; '.join(notes) or 'no p-value'}).")
            continue
        differ = group[group["significant"].astype(bool)]
        if not len(differ):
            sentences.append(
                f"{label} is not distinguishable from retraining noise with {k} model{'s' * (k != 1)} "
                f"against {m} null models."
            )
            continue
        parts = []
        for row in differ.itertuples(index=False):
            sd = (
                ""
                if not np.isfinite(row.standardized_effect)
                else f", {abs(row.standardized_effect):.1f} null-model SDs"
            )
            parts.append(
                f"{display_name(row.metric)} (effect {_signed(row.effect)} "
                f"[95% CI {_signed(row.effect_ci_low)}, {_signed(row.effect_ci_high)}]{sd}, {row.direction} "
                f"from the baseline than the null models, p_adj {row.p_adjusted:.2g})"
            )
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        sentences.append(f"{label} differs from retraining noise in {listed}.")
    return sentences


# An augmentation whose models vary this many times more than the null models may differ from them
# by its spread alone: with 3 models, all on one side of tight null models is then likely.
SPREAD_RATIO_CAVEAT = 3.0


def spread_caveats(table: pd.DataFrame) -> list[str]:
    """For each augmentation found to differ, the metrics where its models' summaries vary more
    than `SPREAD_RATIO_CAVEAT` times the null models' (`sd` against `null_sd` of the model-level
    table): there the test may reflect the wider spread of its seeds rather than a shift of where
    the models look (docs/trustworthy.md compares the spreads). And the metrics where they vary less
    than `NARROW_SPREAD_CAVEAT` times as much: there its seeds trained (nearly) one model, and the
    note says how many independent models the test counted them as (`effective_models`)."""
    sentences = []
    for aug, group in table[table["significant"].astype(bool)].groupby("augmentation", sort=False):
        wide = [
            f"{display_name(row.metric)} ({'∞' if row.null_sd == 0 else f'{row.sd / row.null_sd:.0f}'}×)"
            for row in group.itertuples(index=False)
            if np.isfinite(row.sd) and np.isfinite(row.null_sd) and row.sd > SPREAD_RATIO_CAVEAT * row.null_sd
        ]
        if wide:
            sentences.append(
                f"Caveat for {augmentation_label(aug)}: its models vary more than the null models in "
                f"{', '.join(wide)}; there the difference may come from the wider spread of its seeds, "
                "not from a shift of where the models look."
            )
        narrow = [
            display_name(row.metric)
            for row in group.itertuples(index=False)
            if np.isfinite(row.sd) and np.isfinite(row.null_sd) and row.sd < NARROW_SPREAD_CAVEAT * row.null_sd
        ]
        if narrow:
            sentences.append(
                f"Note on {augmentation_label(aug)}: its models vary less than half as much as the null "
                f"models in {', '.join(narrow)}, so its seeds trained (nearly) one model; the test counted "
                f"them as {_effective(group, narrow)} independent models, not {int(group['n_models'].iloc[0])}, "
                "so its evidence is that of about one model against the null models."
            )
    return sentences


def _effective(group: pd.DataFrame, metrics: list[str]) -> str:
    """The range of `effective_models` over the named metrics' rows, e.g. "1.0" or "1.0–1.4"."""
    named = group[group["metric"].map(display_name).isin(metrics)]
    counts = named["effective_models"].dropna() if "effective_models" in named else pd.Series(dtype=float)
    if counts.empty:
        return "fewer"
    low, high = float(counts.min()), float(counts.max())
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"


# An augmentation whose models vary less than this share of the null models' spread trained
# (nearly) one model: a deterministic augmentation's seeds give the same model (docs/trustworthy.md).
NARROW_SPREAD_CAVEAT = 0.5


# A null augmentation with another imperceptible perturbation than the null models' sat up to 1.5
# null-model SDs from them in calibration (docs/trustworthy.md): shifts below this are that size.
SMALL_EFFECT_CAVEAT = 2.0


def small_effect_caveats(table: pd.DataFrame) -> list[str]:
    """For each augmentation found to differ, the metrics where the effect is under
    `SMALL_EFFECT_CAVEAT` null-model standard deviations: a null augmentation (noise of another
    size than the null models') sat up to 1.5 SDs from them in calibration, so shifts that small
    say "unlike these null models", not "looks elsewhere"."""
    sentences = []
    for aug, group in table[table["significant"].astype(bool)].groupby("augmentation", sort=False):
        small = [
            f"{display_name(row.metric)} ({abs(row.standardized_effect):.1f} SDs)"
            for row in group.itertuples(index=False)
            if np.isfinite(row.standardized_effect) and abs(row.standardized_effect) < SMALL_EFFECT_CAVEAT
        ]
        if small:
            sentences.append(
                f"Caveat for {augmentation_label(aug)}: in {', '.join(small)} the shift is under "
                f"{SMALL_EFFECT_CAVEAT:g} null-model standard deviations, the size by which a null augmentation "
                "with another imperceptible perturbation than the null models' can differ from them; read it "
                "as unlike these null models, not as evidence that the models look elsewhere."
            )
    return sentences


def no_model_level_note(null_models: int) -> str:
    """Why the run has no model-level test."""
    have = "no null models" if null_models == 0 else f"only {null_models} null model"
    return (
        f"This run has {have} (controls.identity, controls.null_models), so whether an augmentation's "
        "effect is more than retraining noise is not tested: the model-level test needs at least 2 "
        "null models to know how much models differ from each other when nothing but the random "
        "stream changes. The per-image tables below describe these particular models only."
    )


def significance_display(significance: pd.DataFrame, metrics: list[str]) -> dict:
    """A per-image table (descriptive): per metric the median per-image difference, marked † where
    the Holm-adjusted per-image Wilcoxon p is below 0.05."""
    columns = ["augmentation"] + [display_name(m) for m in metrics] + ["images shifted in"]
    rows = []
    for aug, group in significance.groupby("augmentation", sort=False):
        by_metric = group.set_index("metric")
        cells = [augmentation_label(aug)]
        for m in metrics:
            if m not in by_metric.index or pd.isna(by_metric.loc[m, "effect"]):
                cells.append("")
                continue
            mark = " †" if bool(by_metric.loc[m, "significant"]) else ""
            cells.append(f"{by_metric.loc[m, 'effect']:+.4f}{mark}")
        cells.append(f"{int(group['significant'].astype(bool).sum())} of {len(group)} metrics")
        rows.append(cells)
    return {"columns": columns, "rows": rows}


def verdict_sentences(verdicts: pd.DataFrame, differ: str, same: str) -> list[str]:
    """ "<differ>: a (k of n metrics), …." and "<same>: b, …." from `noise_verdicts(...)` rows."""
    differing = verdicts[verdicts["significant"] > 0]
    alike = verdicts[verdicts["significant"] == 0]
    sentences = []
    if len(differing):
        listed = ", ".join(
            f"{augmentation_label(r.augmentation)} ({r.significant} of {r.metrics} metrics)"
            for r in differing.itertuples(index=False)
        )
        sentences.append(f"{differ}: {listed}.")
    if len(alike):
        sentences.append(f"{same}: {', '.join(augmentation_label(a) for a in alike['augmentation'])}.")
    return sentences


def identity_sentences(verdicts: pd.DataFrame) -> list[str]:
    """Descriptive: whose per-image values moved away from the null models' seed-averaged values."""
    return verdict_sentences(
        verdicts,
        f"Per image, these models' CAMs moved away from the {CONTROL} control's (†)",
        f"Per image, these models' CAMs did not move away from the {CONTROL} control's in any metric",
    )


def noise_sentences(verdicts: pd.DataFrame) -> list[str]:
    """Descriptive: whose per-image values moved beyond the baseline replicas' noise floor."""
    return verdict_sentences(
        verdicts,
        "Per image, these models' CAMs moved beyond the replicas' noise floor (†)",
        "Per image, these models' CAMs stayed within the replicas' noise floor in every metric",
    )


def clusters_display(clusters: pd.DataFrame) -> dict:
    rows = clusters[clusters["scope"] == "all"].sort_values("leaf_order", kind="stable")
    members: dict[int, list[str]] = {}
    for row in rows.itertuples(index=False):
        members.setdefault(int(row.cluster), []).append(augmentation_label(row.augmentation))
    return {
        "columns": ["cluster", "augmentations (dendrogram order)"],
        "rows": [[str(c), ", ".join(members[c])] for c in sorted(members)],
    }


def sanity_sentences(verdicts: pd.DataFrame) -> list[str]:
    sentences = []
    for row in verdicts.itertuples(index=False):
        outcome = "passes" if row.passes else "fails"
        if row.test == "cascading":
            sentences.append(
                f"{method_name(row.method)} {outcome} the cascading randomisation check (median "
                f"|Spearman| after randomising every layer: {row.final_median:.2f}, threshold "
                f"{row.threshold:g})."
            )
        elif row.test == "data":
            sentences.append(
                f"{method_name(row.method)} {outcome} the data randomisation check (median "
                f"|Spearman| between the baseline's CAMs and those of a model trained on permuted "
                f"labels: {row.final_median:.2f}, threshold {row.threshold:g})."
            )
    return sentences


def controls_note(tables: RunTables) -> str | None:
    """One line naming the controls this run did not make, whose sections the report leaves out."""
    missing = []
    if tables.noise is None:
        missing.append(
            "no baseline replicas (controls.baseline_replicas: 0), so no measure of how much the "
            "baseline depends on its init seed and data order"
        )
    if tables.noise is None and CONTROL not in set(tables.metrics["augmentation"]):
        missing.append("no null models (controls.identity: false), so no “Is it more than noise?” section")
    if tables.between is None:
        missing.append("no augmentation-vs-augmentation comparison")
    if tables.sanity is None:
        missing.append("no sanity check (controls.sanity_images: 0), so no “Sanity check” section")
    if not missing:
        return None
    return "Controls were off for this run: " + "; ".join(missing) + ". See docs/trustworthy.md for what they add."
