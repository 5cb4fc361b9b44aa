"""Stage 8, sanity: Adebayo et al.'s checks of the CAM method on this study's baseline — cascading
randomisation of its layers (on the first `controls.sanity_images` test images) and, if the
permuted-labels control was trained, its CAMs against the baseline's → tables/sanity.csv."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from augcam.atomic import write_text
from augcam.cams.sanity import cascading_randomization, sanity_verdict, spearman_summary
from augcam.pipeline.context import StageContext
from augcam.pipeline.stages.base import Stage
from augcam.pipeline.stages.compare import vs_baseline
from augcam.rundir import SANITY_TABLE
from augcam.training import prepare_inputs


class SanityStage(Stage):
    name = "sanity"
    reads = ("models/<baseline>/weights.safetensors", "cams/<baseline>.safetensors")
    writes = (f"tables/{SANITY_TABLE}",)
    tables = (SANITY_TABLE,)

    def images(self, ctx: StageContext) -> int:
        return min(ctx.config.controls.sanity_images, len(ctx.prepared.split.test))

    def enabled(self, ctx: StageContext) -> bool:
        return self.images(ctx) > 0

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p, c = ctx.prepared, ctx.config
        n_images = self.images(ctx)
        ctx.print(
            f"[bold]sanity[/]: cascading randomisation of the baseline's layers, {c.cam.method} "
            f"on {n_images} test images"
        )
        model = ctx.load_model(p.baseline)
        mean = torch.tensor(p.mean, device=ctx.device).view(1, -1, 1, 1)
        std = torch.tensor(p.std, device=ctx.device).view(1, -1, 1, 1)
        images = prepare_inputs(ctx.images(p.test_set.images[p.split.test[:n_images]]), mean, std, c.data.image_size)
        table = cascading_randomization(model, p.target_layer, images, method=c.cam.method, seed=c.training.init_seed)
        table.insert(0, "test", "cascading")
        permuted = p.permuted
        if permuted is not None and ctx.is_complete(permuted):
            base, other = ctx.cam_set(p.baseline), ctx.cam_set(permuted)
            spearman = torch.from_numpy(vs_baseline(ctx, permuted, base, other)["spearman"])
            table = pd.concat(
                [table, pd.DataFrame([{"test": "data", **spearman_summary(1, "(labels permuted)", spearman)}])],
                ignore_index=True,
            )
        table.insert(1, "method", c.cam.method)
        write_text(ctx.run_dir.table(SANITY_TABLE), table.to_csv(index=False))
        return {"images": n_images, **sanity_verdict(table[table["test"] == "cascading"])}
