"""Stage 2, explain: the CAM set of every complete model for every test image (raw maps at the
target layer's resolution, logits, predictions, targets), by the study's CAM method and each of
cam.extra_methods.

The CAM sets are computed in the models' chains (augcam.pipeline.chain), which the train stage has
the executor run; this stage plans which sets those chains compute (a stored set is reused when its
CAM key — everything it depends on — is unchanged), then makes sure every complete model has its
sets, computing through the executor any that no chain made.
"""

from __future__ import annotations

from typing import Any

from augcam.pipeline.chain import ChainJob, cam_key
from augcam.pipeline.context import StageContext, labels
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.results import store_chain_result
from augcam.pipeline.stages.base import Stage


def stored_cam_key(ctx: StageContext, run: ModelRun, method: str | None = None) -> str | None:
    """The CAM key of the model's stored CAM set; None when there is none or it is damaged."""
    stored = ctx.stored_cam_set(run, method)
    return None if stored is None else stored[1]["cam_key"]


def cam_jobs(
    ctx: StageContext, runs: list[ModelRun], quiet: bool = False
) -> tuple[list[tuple[ModelRun, str | None]], int]:
    """The CAM sets to compute — (model, None) for the study's CAM method, (model, method) for one
    of cam.extra_methods — and how many are reused (printed unless `quiet`)."""
    p, cam = ctx.prepared, ctx.config.cam
    unverified = len(ctx.stored.unverified)
    todo = [run for run in runs if stored_cam_key(ctx, run) != cam_key(p, run)]
    # cam.extra_methods: the baseline and the augmented models only (the controls need one method).
    extra = [(run, method) for method in cam.extra_methods for run in runs if run in p.runs]
    extra_todo = [(run, method) for run, method in extra if stored_cam_key(ctx, run, method) != cam_key(p, run, method)]
    if not quiet:
        ctx.console.print(
            f"[bold]explain[/]: {cam.method} on {len(p.split.test)} test images — "
            f"{len(runs) - len(todo)} CAM sets reused, {len(todo)} to compute" + (f" ({labels(todo)})" if todo else ""),
            highlight=False,
        )
        unverified = len(ctx.stored.unverified) - unverified
        if unverified:
            ctx.print(f"  {unverified} stored CAM sets predate content digests (an older augcam): used unverified")
        if extra:
            ctx.console.print(
                f"  extra methods {', '.join(cam.extra_methods)}: {len(extra) - len(extra_todo)}"
                f" CAM sets reused, {len(extra_todo)} to compute",
                highlight=False,
            )
    jobs = [(run, None) for run in todo] + extra_todo
    return jobs, len(runs) - len(todo) + len(extra) - len(extra_todo)


class ExplainStage(Stage):
    name = "explain"
    reads = ("models/<model_id>/weights.safetensors",)
    writes = ("cams/<model_id>.safetensors", "cams/<model_id>.<method>.safetensors")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        chained, chained_seconds = ctx.cams_computed, ctx.cam_seconds
        missing, _ = cam_jobs(ctx, ctx.complete, quiet=True)
        if missing:
            p = ctx.prepared
            methods: dict[str, list[str | None]] = {}
            for run, method in missing:
                methods.setdefault(run.model_id, []).append(method)
            jobs = [
                ChainJob(p.all_runs.index(run), False, methods[run.model_id])
                for run in p.all_runs
                if run.model_id in methods
            ]
            with ctx.executor.chains(ctx, jobs) as chains:
                chains.run(jobs, None, lambda run, result: store_chain_result(ctx, run, result))
        sets = len(ctx.complete) + sum(
            1 for method in ctx.config.cam.extra_methods for run in ctx.complete if run in ctx.prepared.runs
        )
        # The stage's own seconds are those of the sets it filled in; the chains' CAM time is part of
        # the train stage's seconds and is recorded here apart.
        return {
            "computed": ctx.cams_computed,
            "reused": sets - ctx.cams_computed,
            "computed_in_chains": chained,
            "seconds_in_chains": round(chained_seconds, 3),
        }
