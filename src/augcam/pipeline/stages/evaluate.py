"""Stage 4, evaluate: test performance of the baseline and every intervention model — accuracy,
macro precision / recall / F1 and ROC AUC from its stored predictions and logits, with its best
epoch and training time → tables/performance.parquet (one row per model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from augcam.atomic import write_parquet
from augcam.metrics import performance
from augcam.metrics.performance import roc_auc
from augcam.pipeline.context import StageContext
from augcam.pipeline.stages.base import Stage
from augcam.rundir import PERFORMANCE_TABLE


class EvaluateStage(Stage):
    name = "performance"
    reads = ("models/<model_id>/meta.json", "cams/<model_id>.safetensors")
    writes = (f"tables/{PERFORMANCE_TABLE}",)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = ctx.prepared
        labels = p.test_set.labels[p.split.test]
        rows = []
        for run in p.runs:
            meta = ctx.meta(run) or {}
            row = {
                "model_id": run.model_id,
                "augmentation": run.augmentation,
                "seed": run.seed,
                "status": meta.get("status"),
                "test_accuracy": np.nan,
                "precision": np.nan,
                "recall": np.nan,
                "f1": np.nan,
                "best_epoch": meta.get("best_epoch"),
                "best_val_accuracy": meta.get("best_val_accuracy", np.nan),
                "train_seconds": meta.get("train_seconds", np.nan),
                "roc_auc": np.nan,
            }
            if ctx.is_complete(run):
                cam_set = ctx.cam_set(run)
                scores = performance(labels, cam_set["predictions"], p.num_classes)
                row.update(
                    test_accuracy=scores["accuracy"],
                    precision=scores["precision"],
                    recall=scores["recall"],
                    f1=scores["f1"],
                    # of the softmax probabilities, as scikit-learn's roc_auc_score takes them
                    roc_auc=roc_auc(labels, torch.softmax(cam_set["logits"].double(), dim=1)),
                )
            rows.append(row)
        table = pd.DataFrame(rows).astype({"seed": "Int64", "best_epoch": "Int64"})
        write_parquet(ctx.run_dir.table(PERFORMANCE_TABLE), table)
        ctx.tables["performance"] = table
        return {"rows": len(table)}
