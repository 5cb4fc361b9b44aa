"""Stage 1, train: every model of the plan, through the executor, as one chain per model.

The stage decides what each model's chain does — reuse a finished model, resume one a killed run
left at an epoch checkpoint, or train from the first epoch; which CAM sets it computes (planned by
the explain stage) — then has the executor run the baseline's chain first and every other model's
after it (their chains compare their CAMs with the baseline's), and stores what each chain returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from augcam.pipeline.chain import ChainJob
from augcam.pipeline.context import StageContext, labels
from augcam.pipeline.plan import ModelRun
from augcam.pipeline.results import store_chain_result
from augcam.pipeline.stages.base import Stage, StudyStopped
from augcam.pipeline.stages.explain import cam_jobs
from augcam.training import TrainState, train_state_from_bytes


@dataclass
class TrainingPlan:
    """The train stage's view of the run directory: finished models (complete, or failed for
    good), the checkpoints a killed run left, and the models still to train."""

    finished: dict[str, dict]
    resumable: dict[str, TrainState]
    todo: list[ModelRun]

    @property
    def resumed(self) -> list[ModelRun]:
        return [run for run in self.todo if run.model_id in self.resumable]

    @property
    def new(self) -> list[ModelRun]:
        return [run for run in self.todo if run.model_id not in self.resumable]


def resumable_state(ctx: StageContext, run: ModelRun) -> TrainState | None:
    """The checkpoint of a model a killed run was training, if there is a usable one."""
    path = ctx.run_dir.checkpoint_file(run.model_id)
    if not path.exists():
        return None
    try:
        return train_state_from_bytes(path.read_bytes(), {"model_id": run.model_id})
    except ValueError as err:
        # Not an error of the study: the model is trained from its first epoch instead.
        ctx.console.print(f"[yellow]{path}: ignoring the checkpoint ({err}); training {run.label} from the start[/]")
        return None


def training_plan(ctx: StageContext) -> TrainingPlan:
    """What the stage reuses, resumes and trains (printed)."""
    p, t = ctx.prepared, ctx.config.training
    finished: dict[str, dict] = {}
    resumable: dict[str, TrainState] = {}
    unverified = len(ctx.stored.unverified)
    for run in p.all_runs:
        meta = ctx.meta(run)
        if meta is not None:
            finished[run.model_id] = meta
            # A run killed after meta.json but before removing the checkpoint left it behind.
            ctx.run_dir.checkpoint_file(run.model_id).unlink(missing_ok=True)
            continue
        state = resumable_state(ctx, run)
        if state is not None:
            resumable[run.model_id] = state
    plan = TrainingPlan(finished, resumable, [run for run in p.all_runs if run.model_id not in finished])
    failed_before = [
        run for run in p.all_runs if finished.get(run.model_id, {}).get("status") not in (None, "complete")
    ]
    lines = [
        f"[bold]train[/]: {len(p.all_runs)} models — {len(finished)} reused from {ctx.run_dir.root}"
        + (f" ({len(failed_before)} of them failed earlier: {labels(failed_before)})" if failed_before else "")
    ]
    unverified = len(ctx.stored.unverified) - unverified
    if unverified:
        lines.append(f"  {unverified} stored model files predate content digests (an older augcam): used unverified")
    if plan.resumed:
        lines.append(
            "  resume: "
            + ", ".join(
                f"{run.label} after epoch {resumable[run.model_id].epochs_done}/{t.epochs}" for run in plan.resumed
            )
        )
    if plan.new:
        lines.append(f"  train on {ctx.executor.where}: {len(plan.new)} ({labels(plan.new)})")
    ctx.console.print("\n".join(lines), highlight=False)
    return plan


class TrainStage(Stage):
    name = "train"
    reads = ("models/<model_id>/checkpoint.safetensors",)
    writes = ("models/<model_id>/", "cams/<model_id>*.safetensors")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = ctx.prepared
        plan = training_plan(ctx)
        failed_before = {mid for mid, meta in plan.finished.items() if meta.get("status") != "complete"}
        candidates = [run for run in p.all_runs if run.model_id not in failed_before]
        methods: dict[str, list[str | None]] = {}
        for run, method in cam_jobs(ctx, candidates)[0]:
            methods.setdefault(run.model_id, []).append(method)
        todo = {run.model_id for run in plan.todo}
        jobs = {
            run.model_id: ChainJob(
                p.all_runs.index(run),
                run.model_id in todo,
                methods.get(run.model_id, []),
                compare=not run.is_baseline,
                epochs_done=(plan.resumable[run.model_id].epochs_done if run.model_id in plan.resumable else 0),
            )
            for run in candidates
            if run.model_id in todo or run.model_id in methods
        }
        baseline = p.baseline
        with ctx.executor.chains(ctx, list(jobs.values())) as chains:
            if baseline.model_id in jobs:
                chains.run([jobs[baseline.model_id]], None, lambda run, result: store_chain_result(ctx, run, result))
            if (ctx.meta(baseline) or {}).get("status") == "complete":
                base_cams = ctx.cam_set(baseline)
                others = [jobs[run.model_id] for run in candidates if run.model_id in jobs and run != baseline]
                chains.run(others, base_cams, lambda run, result: store_chain_result(ctx, run, result))
        return self.finish(ctx, plan, chains.details)

    def finish(self, ctx: StageContext, plan: TrainingPlan, details: dict[str, dict]) -> dict[str, Any]:
        """Record every model's status in the manifest (plus the executor's `details` per model id,
        e.g. the cluster node) and hand the complete models on; stop the study if the baseline failed."""
        p = ctx.prepared
        metas = {run.model_id: ctx.meta(run) or {} for run in p.all_runs}
        ctx.manifest["models"] = {
            run.model_id: {
                "augmentation": run.augmentation,
                "seed": run.seed,
                "status": metas[run.model_id].get("status"),
                **({"error": metas[run.model_id]["error"]} if "error" in metas[run.model_id] else {}),
                **(
                    {"resumed_after_epoch": plan.resumable[run.model_id].epochs_done}
                    if run.model_id in plan.resumable
                    else {}
                ),
                **({"replica": run.replica} if run.replica else {}),
                **({"permuted_labels": True} if run.permuted_labels else {}),
                **details.get(run.model_id, {}),
            }
            for run in p.all_runs
        }
        statuses = {mid: meta.get("status") for mid, meta in metas.items()}
        record = {
            "trained": len(plan.new),
            "reused": len(plan.finished),
            "resumed": len(plan.resumed),
            "failed": sum(s != "complete" for s in statuses.values()),
        }
        if statuses[p.baseline.model_id] != "complete":
            raise StudyStopped(
                f"the baseline model failed ({statuses[p.baseline.model_id]}: "
                f"{metas[p.baseline.model_id].get('error', '')}); nothing can be compared with it",
                record,
            )
        ctx.complete = [run for run in p.all_runs if statuses[run.model_id] == "complete"]
        return record
