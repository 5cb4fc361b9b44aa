"""The report's controls sections: is an augmentation's effect more than noise, do the impact
profiles cluster, does the CAM method pass the sanity checks — as tables and sentences."""

from __future__ import annotations

import pandas as pd

from augcam.analysis.names import display_name, method_name
from augcam.analysis.run_tables import CONTROL, RunTables, augmentation_label


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


def significance_display(significance: pd.DataFrame, metrics: list[str]) -> dict:
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
    """Which augmentations' CAMs differ from the identity control's, i.e. where the transformation,
    not the extra training steps, moves the CAMs."""
    return verdict_sentences(
        verdicts,
        f"Differ from the {CONTROL} control (the transformation itself moves the CAMs)",
        f"Not distinguishable from the {CONTROL} control in any metric (what they change is "
        "explained by the extra training steps)",
    )


def noise_sentences(verdicts: pd.DataFrame, augmentations: list[str]) -> list[str]:
    """Which augmentations differ from the noise floor in at least one metric, which do not, and
    what the identity control says."""
    sentences = verdict_sentences(
        verdicts,
        "Differ from the noise floor in at least one metric (Holm-adjusted p < 0.05)",
        "Not distinguishable from the noise floor in any metric",
    )
    differ = verdicts[verdicts["significant"] > 0]
    if CONTROL not in augmentations:
        sentences.append(
            f"This run has no {CONTROL} control (controls.identity: false), so the effect of the "
            "augmented models' extra training steps is not separated from the transformations'."
        )
    elif CONTROL in set(differ["augmentation"]):
        sentences.append(
            f"The {CONTROL} control itself differs from the noise floor: the extra training steps "
            f"alone move the CAMs, so read each augmentation's effect against {CONTROL}'s as well "
            "as against 0."
        )
    else:
        sentences.append(
            f"As a control should, {CONTROL} does not: the extra training steps alone do not move "
            "the CAMs beyond randomness."
        )
    return sentences


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
            "no baseline replicas (controls.baseline_replicas: 0), so no noise floor and no "
            "“Is it more than noise?” section"
        )
    if tables.between is None:
        missing.append("no augmentation-vs-augmentation comparison")
    if tables.sanity is None:
        missing.append("no sanity check (controls.sanity_images: 0), so no “Sanity check” section")
    if not missing:
        return None
    return "Controls were off for this run: " + "; ".join(missing) + ". See docs/trustworthy.md for what they add."
