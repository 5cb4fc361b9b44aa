"""Stage 7, controls: the noise floor — each baseline replica's CAMs against the baseline's, image by
image → tables/noise_floor.parquet — and the augmentation-vs-augmentation comparison — the models
of two augmentations with the same seed → tables/between_augmentations.parquet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from augcam.atomic import write_parquet
from augcam.metrics.cam_sets import study_cam_metrics
from augcam.pipeline.context import StageContext
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.stages.base import Stage
from augcam.pipeline.stages.compare import vs_baseline
from augcam.rundir import BETWEEN_TABLE, NOISE_FLOOR_TABLE


class ControlsStage(Stage):
    name = "controls"
    reads = ("cams/<model_id>.safetensors",)
    writes = (f"tables/{NOISE_FLOOR_TABLE}", f"tables/{BETWEEN_TABLE}")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p, c = ctx.prepared, ctx.config
        replicas = [run for run in p.replicas if ctx.is_complete(run)]
        by_aug: dict[str, dict[int, ModelRun]] = {}
        for run in p.runs:
            if run.is_intervention and ctx.is_complete(run):
                by_aug.setdefault(run.augmentation, {})[run.seed] = run
        names = list(by_aug)
        pairs = [
            (a, b, seed)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            for seed in c.seeds
            if seed in by_aug[a] and seed in by_aug[b]
        ]
        ctx.print(
            f"[bold]controls[/]: noise floor from {len(replicas)} baseline replica(s); "
            f"{len(pairs)} augmentation-vs-augmentation comparisons"
        )
        test_index = p.split.test.numpy()
        labels = p.test_set.labels[p.split.test].numpy()
        cams: dict[str, dict[str, torch.Tensor]] = {}

        def cam_set(run: ModelRun) -> dict[str, torch.Tensor]:
            if run.model_id not in cams:
                cams[run.model_id] = ctx.cam_set(run)
            return cams[run.model_id]

        def values(a: ModelRun, b: ModelRun) -> dict[str, np.ndarray]:
            if a == p.baseline:
                return vs_baseline(ctx, b, cam_set(a), cam_set(b))
            return study_cam_metrics(c, cam_set(a), cam_set(b), p.input_size, ctx.device)

        noise_path = ctx.run_dir.table(NOISE_FLOOR_TABLE)
        if replicas:
            base = cam_set(p.baseline)
            noise = pd.concat(
                [
                    pd.DataFrame(
                        {
                            "model_id": run.model_id,
                            "replica": run.replica,
                            "image_index": test_index,
                            "label": labels,
                            "baseline_pred": base["predictions"].numpy(),
                            "model_pred": cam_set(run)["predictions"].numpy(),
                            **values(p.baseline, run),
                        }
                    )
                    for run in replicas
                ],
                ignore_index=True,
            )
            write_parquet(noise_path, noise)
        else:
            noise_path.unlink(missing_ok=True)  # a table from an earlier config would be stale
        between_path = ctx.run_dir.table(BETWEEN_TABLE)
        if pairs:
            frames = []
            for a, b, seed in pairs:
                frames.append(
                    pd.DataFrame(
                        {
                            "augmentation_a": a,
                            "augmentation_b": b,
                            "seed": pd.array([seed] * len(test_index), dtype="Int64"),
                            "image_index": test_index,
                            **values(by_aug[a][seed], by_aug[b][seed]),
                        }
                    )
                )
                # Keep at most the CAM sets of one seed in memory.
                cams = {key: value for key, value in cams.items() if key == p.baseline.model_id}
            write_parquet(between_path, pd.concat(frames, ignore_index=True))
        else:
            between_path.unlink(missing_ok=True)
        return {"replicas": len(replicas), "between_pairs": len(pairs)}
