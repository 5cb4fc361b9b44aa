"""What the analyses read from a finished run directory, loaded and checked once.

`load_run(run_dir)` reads the study's tables (`performance.parquet`, `metrics.parquet`,
`aggregated.parquet`, and the controls' `noise_floor.parquet`, `between_augmentations.parquet` and
`sanity.csv` when the study made them), `study.yaml` and `manifest.json`; every problem is a
`ReportError` naming the file. Paths come from `augcam.rundir.RunDir`, the one description of a
run directory's layout.

Conventions shared by every analysis:

- augmentations appear in the study's order (the order of `performance.parquet`: the baseline
  first, then the plan's order; `augmentation_order`);
- the thesis's figures and tables (correlation maps, strongest/weakest pairs, extreme images,
  segmented results) are computed over the studied augmentations only (`studied`,
  `studied_rows`): the identity control's null models have their own sections, and in the
  thesis's other figures (boxplots, performance bars) they are drawn apart, as a reference;
- metric columns are whatever numeric columns the comparison wrote, in table order
  (`metric_columns`), so a metric added to `augcam.metrics` shows up here without edits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from augcam.atomic import DamagedFileError, unseal
from augcam.errors import AugcamError
from augcam.rundir import (
    AGGREGATED_TABLE,
    BASELINE,
    BETWEEN_TABLE,
    IDENTITY,
    METRICS_TABLE,
    NOISE_FLOOR_TABLE,
    PERFORMANCE_TABLE,
    SANITY_TABLE,
    RunDir,
)

__all__ = [
    "BASELINE",
    "CONTROL",
    "ID_COLUMNS",
    "PERFORMANCE_COLUMNS",
    "ReportError",
    "RunTables",
    "load_run",
    "metric_columns",
    "augmentation_order",
    "augmentation_label",
    "ordered_like",
    "studied",
    "studied_rows",
]

CONTROL = IDENTITY  # the control augmentation: an unchanged copy of each image (docs/trustworthy.md)
# Columns of the metric tables (metrics.parquet, aggregated.parquet, noise_floor.parquet,
# between_augmentations.parquet) that identify a row or describe predictions; every other numeric
# column is a metric.
ID_COLUMNS = frozenset(
    {
        "model_id",
        "augmentation",
        "seed",
        "image_index",
        "label",
        "baseline_pred",
        "model_pred",
        "n_models",
        "replica",
        "augmentation_a",
        "augmentation_b",
    }
)
PERFORMANCE_COLUMNS = ("test_accuracy", "precision", "recall", "f1")


class ReportError(AugcamError):
    """A run directory cannot be analysed: it is missing, not a run, or its tables are incomplete."""


def augmentation_label(name: str) -> str:
    """How figures and the report name an augmentation: the control is marked as one."""
    return f"{name} (control)" if name == CONTROL else name


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a metrics or aggregated table, in table order."""
    return [col for col in table.columns if col not in ID_COLUMNS and pd.api.types.is_numeric_dtype(table[col])]


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
    def run_dir(self) -> RunDir:
        return RunDir(self.root)

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
        return self.run_dir.history_file(model_id)

    def cams_file(self, model_id: str) -> Path:
        return self.run_dir.cams_file(model_id)


_REQUIRED = {
    PERFORMANCE_TABLE: {"model_id", "augmentation", "seed", "status", *PERFORMANCE_COLUMNS},
    METRICS_TABLE: {"model_id", "augmentation", "seed", "image_index", "label", "baseline_pred", "model_pred"},
    AGGREGATED_TABLE: {"augmentation", "image_index", "label", "baseline_pred"},
    NOISE_FLOOR_TABLE: {"replica", "image_index"},
    BETWEEN_TABLE: {"augmentation_a", "augmentation_b", "seed", "image_index"},
    SANITY_TABLE: {
        "test",
        "method",
        "step",
        "layer",
        "spearman_median",
        "spearman_q25",
        "spearman_q75",
        "abs_spearman_median",
        "n_images",
        "n_undefined",
    },
}


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ReportError(
            f"{path}: missing; the study has not finished its compare and aggregate stages "
            f"(run `augcam run` on this directory first)"
        )
    try:
        table = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the table ({err})") from None
    missing = sorted(_REQUIRED[path.name] - set(table.columns))
    if missing:
        raise ReportError(
            f"{path}: lacks the column(s) {', '.join(missing)}; it was not written by this version of augcam"
        )
    return table


def _read_yaml_or_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ReportError(
            f"{path}: missing, so {path.parent} is not a finished augcam run directory "
            f"(a run has study.yaml, manifest.json and tables/); {what}"
        )
    try:
        value = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise ReportError(f"{path}: cannot read it ({err})") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: expected a mapping, found {type(value).__name__}")
    return value


def load_run(run_dir: str | Path) -> RunTables:
    """Read and check what the analyses need; every problem is a `ReportError` naming the file."""
    paths = RunDir(run_dir)
    root = paths.root
    if not root.is_dir():
        raise ReportError(f"{root}: no such run directory")
    study = _read_yaml_or_json(paths.study_file, "it holds the resolved study config")
    manifest = _read_yaml_or_json(paths.manifest_file, "it holds versions and timings")
    try:
        manifest, _ = unseal(manifest, paths.manifest_file)
    except DamagedFileError as err:
        raise ReportError(
            f"{err.path}: damaged ({err.why}); rerun `augcam run` on this directory to rewrite it"
        ) from None
    performance = _read_table(paths.table(PERFORMANCE_TABLE))
    metrics = _read_table(paths.table(METRICS_TABLE))
    aggregated = _read_table(paths.table(AGGREGATED_TABLE))
    if not (performance["augmentation"] == BASELINE).any():
        raise ReportError(f"{paths.table(PERFORMANCE_TABLE)}: has no baseline row")
    if metrics.empty or aggregated.empty:
        raise ReportError(
            f"{paths.tables}: {METRICS_TABLE} or {AGGREGATED_TABLE} has no rows; "
            "a study needs at least one augmented model that finished training"
        )
    if metric_columns(aggregated) != metric_columns(metrics):
        raise ReportError(
            f"{paths.tables}: {AGGREGATED_TABLE} and {METRICS_TABLE} have different metric "
            f"columns ({metric_columns(aggregated)} vs {metric_columns(metrics)}); rerun the study"
        )
    noise = _read_control(paths.table(NOISE_FLOOR_TABLE), aggregated)
    between = _read_control(paths.table(BETWEEN_TABLE), aggregated)
    sanity = _read_control(paths.table(SANITY_TABLE), aggregated)
    if noise is not None:
        missing = np.setdiff1d(aggregated["image_index"].unique(), noise["image_index"].unique())
        if len(missing):
            raise ReportError(
                f"{paths.table(NOISE_FLOOR_TABLE)}: lacks {len(missing)} of the test images "
                f"of {AGGREGATED_TABLE} (e.g. image {missing[0]}); rerun the study"
            )
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
        raise ReportError(
            f"{path}: its metric columns ({metric_columns(table)}) are not those of "
            f"{AGGREGATED_TABLE} ({expected}); rerun the study"
        )
    return table


def studied(order: list[str]) -> list[str]:
    """The augmentations the study is about, in `order`: neither the baseline nor the control."""
    return [a for a in order if a not in (BASELINE, CONTROL)]


def studied_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a per-augmentation table that belong to the studied augmentations (`studied`)."""
    return table[~table["augmentation"].isin([BASELINE, CONTROL])]


def augmentation_order(performance: pd.DataFrame) -> list[str]:
    """Baseline first, then the augmentations in the order the study lists them."""
    seen = list(dict.fromkeys(performance["augmentation"].astype(str)))
    return [BASELINE] * (BASELINE in seen) + [a for a in seen if a != BASELINE]


def ordered_like(values: pd.Series | pd.Index, order: list[str]) -> list[str]:
    """The distinct `values` in `order`, then those `order` lacks, sorted."""
    present = set(values)
    return [a for a in order if a in present] + sorted(present - set(order))
