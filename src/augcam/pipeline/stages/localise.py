"""Stage 5, localisation (datasets with ROI masks only): how well each model's CAMs fall on the
object — the localisation metrics (augcam.metrics.localisation) of the baseline's and every
intervention's CAM at the images' resolution against the image's mask → tables/localisation.parquet."""

from __future__ import annotations

from typing import Any

import pandas as pd

from augcam.atomic import write_parquet
from augcam.cams import upsample
from augcam.metrics.localisation import localisation
from augcam.pipeline.context import StageContext
from augcam.pipeline.stages.base import Stage
from augcam.rundir import LOCALISATION_TABLE


class LocaliseStage(Stage):
    name = "localisation"
    reads = ("cams/<model_id>.safetensors",)
    writes = (f"tables/{LOCALISATION_TABLE}",)
    tables = (LOCALISATION_TABLE,)

    def enabled(self, ctx: StageContext) -> bool:
        return ctx.prepared.test_masks is not None

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = ctx.prepared
        masks = p.test_masks
        labels = p.test_set.labels[p.split.test].numpy()
        frames = []
        for run in p.runs:
            if not ctx.is_complete(run):
                continue
            cam_set = ctx.cam_set(run)
            maps = upsample(cam_set["raw"].to(ctx.device), tuple(masks.shape[-2:]))
            values = {name: value.cpu().numpy() for name, value in localisation(maps, masks.to(ctx.device)).items()}
            frames.append(
                pd.DataFrame(
                    {
                        "model_id": run.model_id,
                        "augmentation": run.augmentation,
                        "seed": pd.array([run.seed] * len(labels), dtype="Int64"),
                        "image_index": p.split.test.numpy(),
                        "label": labels,
                        "model_pred": cam_set["predictions"].numpy(),
                        **values,
                    }
                )
            )
        table = pd.concat(frames, ignore_index=True)
        write_parquet(ctx.run_dir.table(LOCALISATION_TABLE), table)
        return {"rows": len(table)}
