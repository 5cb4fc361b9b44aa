"""The report's tables for the related methodologies (docs/related-methods.md), from a run
directory alone.

- `published_comparison`: best validation / test accuracy per training set, mean ± std over the
  models of the set, next to a paper's published figures (config `published:`,
  augcam.analysis.published).
  The baseline's row ("original") pools the baseline and its retrained replicas when the study
  has them (controls.baseline_replicas), since the baseline itself has no augmentation seed.
- `faithfulness_summary`: the faithfulness stage's per-model means (tables/faithfulness_models.parquet)
  per augmentation and fill, mean ± std over seeds, next to each model set's test accuracy and
  its accuracy under random occlusion (its occlusion robustness).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from augcam.analysis.published import PUBLISHED_RESULTS, PublishedResults
from augcam.analysis.run_tables import BASELINE, ReportError, RunTables, augmentation_order
from augcam.atomic import DamagedFileError, read_sealed_json
from augcam.rundir import FAITHFULNESS_MODELS_TABLE

__all__ = ["published_comparison", "faithfulness_summary", "faithfulness_models", "mean_std"]


def mean_std(values: pd.Series) -> tuple[float, float]:
    """(mean, sample std) of the finite values; std NaN for fewer than two."""
    finite = values.astype(float).dropna()
    return float(finite.mean()) if len(finite) else np.nan, float(finite.std(ddof=1)) if len(finite) > 1 else np.nan


def _replica_accuracies(tables: RunTables) -> pd.DataFrame:
    """model_id, best_val_accuracy, test_accuracy of the baseline replicas (empty without them)."""
    if tables.noise is None or "model_id" not in tables.noise.columns:
        return pd.DataFrame(columns=["model_id", "best_val_accuracy", "test_accuracy"])
    rows = []
    for model_id, part in tables.noise.groupby("model_id", sort=False):
        meta_path = tables.run_dir.meta_file(str(model_id))
        try:
            meta, _ = read_sealed_json(meta_path)
        except DamagedFileError as err:
            raise ReportError(f"{meta_path}: cannot read the replica's meta.json ({err.why})") from None
        rows.append(
            {
                "model_id": model_id,
                "best_val_accuracy": meta.get("best_val_accuracy", np.nan),
                "test_accuracy": float((part["model_pred"] == part["label"]).mean()),
            }
        )
    return pd.DataFrame(rows)


def published_comparison(tables: RunTables, published: PublishedResults | str) -> pd.DataFrame:
    """One row per training set, in the paper's order: augcam's label, the paper's name, the number
    of models, best-val and test accuracy mean and std, and the published pair."""
    entry = PUBLISHED_RESULTS.lookup(published, "published") if isinstance(published, str) else published
    perf = tables.performance[tables.performance["status"] == "complete"]
    replicas = _replica_accuracies(tables)
    by_paper = {paper: label for label, paper in entry.rows.items()}
    rows = []
    for paper_name, (published_val, published_test) in entry.accuracies.items():
        label = by_paper.get(paper_name)
        models = perf[perf["augmentation"] == label] if label is not None else perf.iloc[:0]
        if label == BASELINE and len(replicas):
            models = pd.concat(
                [models[["model_id", "best_val_accuracy", "test_accuracy"]], replicas], ignore_index=True
            )
        val_mean, val_std = mean_std(models["best_val_accuracy"]) if len(models) else (np.nan, np.nan)
        test_mean, test_std = mean_std(models["test_accuracy"]) if len(models) else (np.nan, np.nan)
        rows.append(
            {
                "training_set": paper_name,
                "augmentation": label,
                "n_models": len(models),
                "best_val_accuracy_mean": val_mean,
                "best_val_accuracy_std": val_std,
                "test_accuracy_mean": test_mean,
                "test_accuracy_std": test_std,
                "published_best_val_accuracy": published_val,
                "published_test_accuracy": published_test,
            }
        )
    return pd.DataFrame(rows)


def faithfulness_models(tables: RunTables) -> pd.DataFrame | None:
    """tables/faithfulness_models.parquet, or None when the study did not run the stage."""
    path = tables.run_dir.table(FAITHFULNESS_MODELS_TABLE)
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: cannot read the table ({err})") from None


def _faithfulness_order(columns: list[str]) -> list[str]:
    def number(col: str) -> float:
        match = re.search(r"_(\d+(?:\.\d+)?)$", col)
        return float(match.group(1)) if match else 0.0

    faith = sorted((c for c in columns if c.startswith("faithfulness_")), key=number)
    occlusion = sorted((c for c in columns if c.startswith("occlusion_accuracy_")), key=number)
    auc = [c for c in ("deletion_auc", "insertion_auc") if c in columns]
    return faith + auc + occlusion


def faithfulness_summary(tables: RunTables, models: pd.DataFrame) -> pd.DataFrame:
    """Per (augmentation, fill), in study order: models, test accuracy, and each faithfulness
    column (faithfulness_q, deletion/insertion AUC, occlusion_accuracy_q) as mean and std over
    the models (seeds) of the augmentation."""
    perf = tables.performance.set_index("model_id")
    models = models.assign(test_accuracy=models["model_id"].map(perf["test_accuracy"]))
    columns = ["test_accuracy", *_faithfulness_order(list(models.columns))]
    order = augmentation_order(tables.performance)
    rows = []
    for fill in dict.fromkeys(models["fill"]):
        for aug in order:
            part = models[(models["fill"] == fill) & (models["augmentation"] == aug)]
            if part.empty:
                continue
            row = {"augmentation": aug, "fill": fill, "n_models": len(part)}
            for col in columns:
                row[f"{col}_mean"], row[f"{col}_std"] = mean_std(part[col])
            rows.append(row)
    return pd.DataFrame(rows)


# --- the report's view ---------------------------------------------------------------------------


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" + ("" if pd.isna(std) else f" ± {std:.{digits}f}")


def _faithfulness_column_name(column: str) -> str:
    if column.startswith("faithfulness_"):
        return f"faithfulness@{column.removeprefix('faithfulness_')}%"
    if column.startswith("occlusion_accuracy_"):
        return f"accuracy, {column.removeprefix('occlusion_accuracy_')}% occluded"
    return {"deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC", "test_accuracy": "test accuracy"}.get(
        column, column
    )


def related_report(tables: RunTables) -> tuple[dict[str, str], dict]:
    """(CSV files under tables/, template context) of the related-methodology sections: the
    published comparison (when the study names `published`) and faithfulness (when the study ran
    the stage). Context keys `published` and `faithfulness` are None when their section is absent."""
    files: dict[str, str] = {}
    context: dict = {"published": None, "faithfulness": None}
    name = tables.study.get("published")
    if name:
        entry = PUBLISHED_RESULTS.lookup(name, "published")
        comparison = published_comparison(tables, entry)
        files["published_comparison.csv"] = comparison.to_csv(index=False)
        rows = [
            [
                r["training_set"],
                r["augmentation"] or "(not in this study)",
                str(r["n_models"]),
                _pm(r["best_val_accuracy_mean"], r["best_val_accuracy_std"]),
                _pm(r["test_accuracy_mean"], r["test_accuracy_std"]),
                f"{r['published_best_val_accuracy']:.2f} / {r['published_test_accuracy']:.2f}",
            ]
            for r in comparison.to_dict("records")
        ]
        context["published"] = {
            "title": entry.title,
            "source": entry.source,
            "table": {
                "columns": [
                    "training set",
                    "augcam label",
                    "models",
                    "best val accuracy (augcam)",
                    "test accuracy (augcam)",
                    "published best val / test",
                ],
                "rows": rows,
            },
        }
    models = faithfulness_models(tables)
    if models is not None and len(models):
        summary = faithfulness_summary(tables, models)
        files["faithfulness_summary.csv"] = summary.to_csv(index=False)
        value_columns = [c.removesuffix("_mean") for c in summary.columns if c.endswith("_mean")]
        by_fill = []
        for fill, part in summary.groupby("fill", sort=False):
            rows = [
                [r["augmentation"], str(r["n_models"]), *(_pm(r[f"{c}_mean"], r[f"{c}_std"]) for c in value_columns)]
                for r in part.to_dict("records")
            ]
            by_fill.append(
                {
                    "fill": fill,
                    "table": {
                        "columns": ["augmentation", "models", *map(_faithfulness_column_name, value_columns)],
                        "rows": rows,
                    },
                }
            )
        context["faithfulness"] = {"fills": by_fill, "images": int(models["images"].max())}
    return files, context
