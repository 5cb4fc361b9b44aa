"""Architecture selection (`augcam select`): train every candidate as the study's baseline would be
trained, with its test set monitored after every epoch, then tabulate, choose and report.

Every candidate is a prepared study (augcam.pipeline.prepare) whose plan is one model per seed,
trained through the study's own stage functions: the train stage's plan (reuse a finished model,
resume one from its epoch checkpoint), the executor's chains (augcam.pipeline.chain, local or
Ray), and the run directory's storing. Each candidate's models live in a run directory of their
own under `OUT/candidates/<label>/`, so rerunning reuses every finished candidate and resumes a
killed one, and a selection that gains a candidate trains only that one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console

from augcam.config import CandidateConfig, SelectionConfig, StudyConfig, digest, with_device
from augcam.errors import ConfigError, DataError
from augcam.pipeline.chain import ChainJob
from augcam.pipeline.context import StageContext
from augcam.pipeline.executors import Executor
from augcam.pipeline.kill_points import kill_point
from augcam.pipeline.manifest import Manifest
from augcam.pipeline.plan import ModelRun, model_key
from augcam.pipeline.prepare import PreparedStudy, new_model, prepare
from augcam.pipeline.results import store_chain_result
from augcam.pipeline.runner import run_stages
from augcam.pipeline.stages.base import Stage
from augcam.pipeline.stages.train import training_plan
from augcam.rundir import BASELINE, SelectionDir, model_id


@dataclass
class Candidate:
    """One candidate, prepared: its entry, the study it trains under, and that study prepared with
    one model per seed and its test set monitored."""

    entry: CandidateConfig
    study: StudyConfig
    prepared: PreparedStudy
    parameters: int

    @property
    def label(self) -> str:
        return self.entry.display


@dataclass
class SelectionResult:
    out: Path
    chosen: str  # the chosen candidate's label
    epochs: pd.DataFrame  # one row per (candidate, seed, epoch)
    summary: pd.DataFrame  # one row per candidate
    manifest: dict


def selection_runs(config: SelectionConfig, prepared: PreparedStudy, label: str) -> list[ModelRun]:
    """One model per seed s: the study's baseline with init and ordering seeds shifted by s (seed 0
    is the baseline itself), its global random stream (dropout) drawn from s. Its id also covers
    the monitored test images, whose predictions it stores."""
    study, t = prepared.config, prepared.config.training
    runs = []
    for seed in config.seeds:
        init_seed, ordering_seed = t.init_seed + seed, t.ordering_seed + seed
        key = model_key(study, prepared.data_fingerprint, None, None, init_seed=init_seed, ordering_seed=ordering_seed)
        key["selection"] = {"seed": seed, "test_fingerprint": prepared.test_fingerprint}
        runs.append(
            ModelRun(
                model_id(BASELINE, seed, digest(key)), label, seed, init_seed=init_seed, ordering_seed=ordering_seed
            )
        )
    return runs


def prepare_candidates(config: SelectionConfig, device: str | None = None) -> list[Candidate]:
    """Every candidate's study, checked against the data and its model (errors name the candidate),
    before anything is written; the candidates share one split and one test set."""
    candidates = []
    for entry in config.candidates:
        study = config.candidate_study(entry)
        if device is not None:
            study = with_device(study, device)
        try:
            prepared = prepare(study)
        except DataError:
            raise
        except ConfigError as err:
            raise ConfigError(f"candidates[{entry.display}] ({entry.name}): {err}") from None
        prepared.monitor_test = True
        prepared.runs, prepared.controls = selection_runs(config, prepared, entry.display), []
        channels = prepared.train_set.images.shape[1]
        model = new_model(study, channels, prepared.num_classes, study.training.init_seed)
        candidates.append(Candidate(entry, study, prepared, sum(p.numel() for p in model.parameters())))
    first = candidates[0].prepared
    for candidate in candidates[1:]:
        p = candidate.prepared
        if (p.data_fingerprint, p.test_fingerprint) != (first.data_fingerprint, first.test_fingerprint):
            raise ConfigError(f"candidates[{candidate.label}]: trains on another split than {candidates[0].label}")
    return candidates


class CandidateTrainStage(Stage):
    """A candidate's models (one per seed): the train stage's plan, run by the executor, stored."""

    name = "train"
    writes = ("models/<model_id>/",)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p = ctx.prepared
        plan = training_plan(ctx)
        jobs = [
            ChainJob(
                p.all_runs.index(run),
                True,
                epochs_done=plan.resumable[run.model_id].epochs_done if run.model_id in plan.resumable else 0,
            )
            for run in plan.todo
        ]
        with ctx.executor.chains(ctx, jobs) as chains:
            chains.run(jobs, None, lambda run, result: store_chain_result(ctx, run, result))
        metas = {run.model_id: ctx.meta(run) or {} for run in p.all_runs}
        ctx.manifest["models"] = {
            run.model_id: {
                "seed": run.seed,
                "status": metas[run.model_id].get("status"),
                **({"error": metas[run.model_id]["error"]} if "error" in metas[run.model_id] else {}),
                **chains.details.get(run.model_id, {}),
            }
            for run in p.all_runs
        }
        return {
            "trained": len(plan.new),
            "reused": len(plan.finished),
            "resumed": len(plan.resumed),
            "failed": sum(meta.get("status") != "complete" for meta in metas.values()),
        }


@dataclass
class SelectionContext:
    """What the selection's stages see; `manifest`, `run_dir` and `activity` are what
    augcam.pipeline.runner.run_stages keeps for every run."""

    config: SelectionConfig
    candidates: list[Candidate]
    run_dir: SelectionDir
    device: torch.device
    console: Console
    manifest: Manifest
    executor: Executor
    activity: str | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    chosen: str = ""


class CandidatesStage(Stage):
    """Stage 1: every candidate's models, one candidate after the other, each in its run directory."""

    name = "candidates"
    writes = ("candidates/<label>/",)

    def run(self, ctx: SelectionContext) -> dict[str, Any]:  # type: ignore[override]
        records = {}
        for index, candidate in enumerate(ctx.candidates):
            run_dir = ctx.run_dir.candidate(candidate.label)
            run_dir.create()
            manifest = Manifest(
                run_dir, candidate.prepared, ctx.device, ctx.executor.name, ctx.executor.manifest_info(), ctx.console
            )
            manifest["selection"] = ctx.config.name
            manifest.write()
            run_dir.write_study(candidate.study.resolved())
            ctx.console.print(
                f"[bold]candidate[/] {candidate.label}: {candidate.entry.name}, {candidate.parameters:,} parameters, "
                f"{candidate.prepared.input_size[0]}×{candidate.prepared.input_size[1]} inputs, CAM layer "
                f"{candidate.prepared.target_layer} ({candidate.prepared.layer_size[0]}×"
                f"{candidate.prepared.layer_size[1]})",
                highlight=False,
            )
            stage_ctx = StageContext(candidate.prepared, run_dir, ctx.device, ctx.console, manifest, ctx.executor)
            run_stages(stage_ctx, (CandidateTrainStage(),))
            record = dict(manifest["stages"]["train"])
            records[candidate.label] = {k: record[k] for k in ("trained", "reused", "resumed", "failed", "seconds")}
            kill_point("candidate", index)
        return {"candidates": records}
