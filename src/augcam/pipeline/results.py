"""Storing what a model's chain returned (augcam.pipeline.chain): its weights, history and meta,
its CAM sets, and its metrics against the baseline, whichever executor ran it. Only the process
that owns the run directory calls these."""

from __future__ import annotations

import pandas as pd

from augcam.atomic import sealed, write_json, write_parquet, write_tensors
from augcam.pipeline.chain import ChainResult, TrainOutcome
from augcam.pipeline.context import StageContext
from augcam.pipeline.plan import ModelRun
from augcam.rundir import RunDir


def store_trained(run_dir: RunDir, run: ModelRun, outcome: TrainOutcome) -> None:
    """Write a trained model into the run directory and drop its checkpoint."""
    meta = outcome.meta
    if outcome.status == "complete":
        meta = {**meta, "weights_sha256": write_tensors(run_dir.weights_file(run.model_id), outcome.best_state)}
        write_parquet(run_dir.history_file(run.model_id), pd.DataFrame(outcome.history))
        if outcome.predictions:
            meta["predictions_sha256"] = write_tensors(run_dir.predictions_file(run.model_id), outcome.predictions)
    # meta.json is written last: its presence with the weights marks a finished model. Sealed, and
    # holding the weights' digest, so that a rerun reuses only what it wrote (augcam.pipeline.stored).
    write_json(run_dir.meta_file(run.model_id), sealed(meta))
    run_dir.checkpoint_file(run.model_id).unlink(missing_ok=True)


def store_chain_result(ctx: StageContext, run: ModelRun, result: ChainResult) -> None:
    """Write what a model's chain returned into the run directory, whichever executor ran it."""
    if result.outcome is not None:
        report_trained(ctx, run, result.outcome, where=f" on {result.node}" if result.node else "")
        store_trained(ctx.run_dir, run, result.outcome)
        ctx.forget(run)
    for method, (tensors, metadata) in result.cams.items():
        write_tensors(ctx.run_dir.cams_file(run.model_id, method), tensors, metadata=metadata)
    if result.metrics is not None:
        ctx.vs_baseline[run.model_id] = result.metrics
    ctx.cams_computed += len(result.cams)
    ctx.cam_seconds += result.cam_seconds


def report_trained(ctx: StageContext, run: ModelRun, outcome: TrainOutcome, where: str = "") -> None:
    if outcome.status != "complete":
        ctx.console.print(
            f"[red]model {run.label} ({run.model_id}) diverged[/]: {outcome.meta.get('error')}; "
            "the study goes on without it"
        )
        return
    ctx.console.print(
        f"  trained {run.model_id}: best val accuracy {outcome.meta['best_val_accuracy']:.4f} "
        f"at epoch {outcome.meta['best_epoch']} ({outcome.seconds:.1f} s{where})"
    )
