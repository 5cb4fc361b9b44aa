"""Stage 3, compare: every augmented (or mask-guided) model's CAMs against the baseline's, image by
image, on input-sized maps → tables/metrics.parquet; with cam.extra_methods, the same for each
extra CAM method → tables/method_metrics.parquet.

A model's per-image metrics are computed in its chain when it made its CAM set there, and here
from the stored CAM sets otherwise (same function, same inputs). Always recomputed: the metrics
settings may have changed, and it takes seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from augcam.analysis.run_tables import metric_columns
from augcam.atomic import write_parquet
from augcam.metrics.cam_sets import study_cam_metrics
from augcam.pipeline.context import StageContext, metric_summary
from augcam.pipeline.kill_points import kill_point
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.stages.base import Stage
from augcam.rundir import METHOD_METRICS_TABLE, METRICS_TABLE


def vs_baseline(
    ctx: StageContext, run: ModelRun, base: dict[str, torch.Tensor], other: dict[str, torch.Tensor]
) -> dict[str, np.ndarray]:
    """Per-image metrics of `run`'s CAM set (`other`) against the baseline's (`base`): those its
    chain computed, or computed here from the stored CAM sets."""
    if run.model_id in ctx.vs_baseline:
        return ctx.vs_baseline[run.model_id]
    return study_cam_metrics(ctx.config, base, other, ctx.prepared.input_size, ctx.device)


class CompareStage(Stage):
    name = "compare"
    reads = ("cams/<model_id>.safetensors", "cams/<model_id>.<method>.safetensors")
    writes = (f"tables/{METRICS_TABLE}", f"tables/{METHOD_METRICS_TABLE}")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = ctx.prepared
        augmented = [run for run in ctx.complete if run.is_intervention]
        ctx.print(
            f"[bold]compare[/]: {len(augmented)} models vs the baseline on {len(p.split.test)} "
            "test images, from the stored CAM sets (always recomputed: metrics settings may have "
            "changed, and it takes seconds)"
        )
        base = ctx.cam_set(p.baseline)
        labels = p.test_set.labels[p.split.test]
        nonfinite_logits = {}
        base_bad = int((~torch.isfinite(base["logits"])).any(dim=1).sum())
        if base_bad:
            nonfinite_logits[p.baseline.model_id] = base_bad
        frames = []
        for run in augmented:
            other = ctx.cam_set(run)
            bad = int((~torch.isfinite(other["logits"])).any(dim=1).sum())
            if bad:
                nonfinite_logits[run.model_id] = bad
            values = vs_baseline(ctx, run, base, other)
            frames.append(
                pd.DataFrame(
                    {
                        "model_id": run.model_id,
                        "augmentation": run.augmentation,
                        "seed": pd.array([run.seed] * len(labels), dtype="Int64"),
                        "image_index": p.split.test.numpy(),
                        "label": labels.numpy(),
                        "baseline_pred": base["predictions"].numpy(),
                        "model_pred": other["predictions"].numpy(),
                        **values,
                    }
                )
            )
            kill_point("compare", p.all_runs.index(run))
        metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        write_parquet(ctx.run_dir.table(METRICS_TABLE), metrics)
        ctx.tables["metrics"] = metrics
        self.compare_extra_methods(ctx, augmented)
        if nonfinite_logits:
            ctx.console.print(
                f"[yellow]warning[/]: non-finite logits (NaN or ±inf) for some test images: "
                f"{nonfinite_logits}; their metrics are NaN (counted in manifest.json)"
            )
        return {
            "rows": len(metrics),
            **metric_summary(metrics, metric_columns(metrics)),
            "nonfinite_logits": nonfinite_logits,
        }

    @staticmethod
    def compare_extra_methods(ctx: StageContext, augmented: list[ModelRun]) -> None:
        """The rows of metrics.parquet recomputed with each of cam.extra_methods (column `method`), so
        the report can check that the augmentations rank the same way whichever CAM method explains them."""
        p, c = ctx.prepared, ctx.config
        path = ctx.run_dir.table(METHOD_METRICS_TABLE)
        if not c.cam.extra_methods:
            path.unlink(missing_ok=True)  # a table from an earlier config would be stale
            return
        frames = []
        for method in c.cam.extra_methods:
            base = ctx.cam_set(p.baseline, method)
            for run in augmented:
                values = study_cam_metrics(c, base, ctx.cam_set(run, method), p.input_size, ctx.device)
                frames.append(
                    pd.DataFrame(
                        {
                            "method": method,
                            "model_id": run.model_id,
                            "augmentation": run.augmentation,
                            "seed": pd.array([run.seed] * len(p.split.test), dtype="Int64"),
                            "image_index": p.split.test.numpy(),
                            **values,
                        }
                    )
                )
        write_parquet(path, pd.concat(frames, ignore_index=True))
