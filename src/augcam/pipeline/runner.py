"""A study in a run directory: prepare it, take the directory, run the stages in order.

Every stage reads what earlier stages stored in the run directory, and every stored artefact is
keyed by content (`model_id` for weights, a CAM key for CAM sets), so a rerun reuses whatever is
already there and a study that gains an augmentation trains only the new models. A model in
training is checkpointed after every epoch, so a killed run resumes at the epoch where it stopped;
docs/reliability.md lists the promises and their tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.markup import escape

from augcam.config import StudyConfig, load_config, with_device
from augcam.errors import Interrupted
from augcam.pipeline.context import StageContext
from augcam.pipeline.executors import Executor, executor_class
from augcam.pipeline.manifest import Manifest
from augcam.pipeline.prepare import PreparedStudy, prepare, set_deterministic
from augcam.pipeline.stages import STAGES, Stage, StudyStopped
from augcam.rundir import RunDir, RunLock, describe_holder


@contextmanager
def holding(run_dir: RunDir, check: Callable[[], None], console: Console) -> Iterator[RunLock]:
    """The run directory's lock (`check` runs under it before anything is written), taken over with
    a message from a run that died holding it, and the temporary files such a run left removed."""
    with RunLock(run_dir.lock_file, check) as lock:
        if lock.previous_holder:
            console.print(
                f"taking over the lock of a run that ended without releasing it "
                f"({describe_holder(lock.previous_holder)})",
                highlight=False,
            )
        stale = run_dir.remove_stale_temp_files()
        if stale:
            console.print(f"removed {len(stale)} temporary file(s) left by an interrupted run", highlight=False)
        yield lock


@dataclass
class StudyResult:
    out: Path
    performance: pd.DataFrame
    metrics: pd.DataFrame
    aggregated: pd.DataFrame
    manifest: dict


def run_stages(ctx: StageContext, stages: tuple[Stage, ...] = STAGES) -> None:
    """Run `stages` in order, with the bookkeeping common to all of them: the manifest records each
    stage's start, end, time and what it reports; a disabled stage's tables are removed (an earlier
    run's would be stale); the manifest says how the run ended, whatever ended it."""
    manifest = ctx.manifest
    manifest.path.parent.mkdir(parents=True, exist_ok=True)
    manifest.write()
    current = "starting the run"
    try:
        for stage in stages:
            if not stage.enabled(ctx):
                for table in stage.tables:
                    ctx.run_dir.table(table).unlink(missing_ok=True)
                continue
            current = f"stage {stage.name}"
            ctx.activity = None
            manifest.stage_started(stage.name)
            started = time.perf_counter()
            try:
                record = stage.run(ctx)
            except StudyStopped as stop:
                manifest.stage_finished(stage.name, time.perf_counter() - started, **stop.record)
                raise
            seconds = record.pop("seconds", time.perf_counter() - started)
            manifest.stage_finished(stage.name, seconds, **record)
    except BaseException as err:
        # Recorded, then re-raised: the manifest says how the run ended.
        manifest.ended("interrupted" if isinstance(err, KeyboardInterrupt) else "failed", err)
        if isinstance(err, KeyboardInterrupt) and not isinstance(err, Interrupted):
            raise Interrupted(f"{ctx.activity} ({current})" if ctx.activity else current) from err
        raise
    manifest.ended("complete")


def run_study(
    config: StudyConfig | str | Path | dict,
    out: str | Path,
    *,
    device: str | None = None,
    force: bool = False,
    console: Console | None = None,
    executor: str = "local",
    address: str | None = None,
) -> StudyResult:
    """Run a whole study into `out` and return its tables. Public entry point of the Python API.

    `executor="ray"` trains and explains the models as tasks on a Ray cluster (docs/cluster.md):
    the one at `address` ("auto": the cluster this machine belongs to; None: a local cluster
    started for the run, or the one this process is already connected to), with the same tables.

    Everything a user can get wrong (config, data, device, an output directory that holds another
    study, is unwritable or is in use by another run, an unreachable cluster) raises an AugcamError
    before anything is written. Rerunning on the same `out` reuses what is stored and resumes what
    a killed run left.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    chosen = executor_class(executor, address)
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    if device is not None:
        config = with_device(config, device)
    runner = chosen.for_config(config)  # config-level errors before any data is loaded
    set_deterministic()
    try:
        prepared = prepare(config)
    except KeyboardInterrupt as err:
        raise Interrupted("loading and checking the data, before anything was written") from err
    runner.connect(address, console)
    try:
        return _run_in(prepared, out, runner, console, force, started)
    finally:
        runner.close()


def _run_in(
    prepared: PreparedStudy, out: str | Path, executor: Executor, console: Console, force: bool, started: float
) -> StudyResult:
    config = prepared.config
    run_dir = RunDir(out)
    run_dir.create()
    fingerprints = {"fingerprint": prepared.data_fingerprint, "test_fingerprint": prepared.test_fingerprint}

    def check() -> None:  # under the lock, before anything is written
        if not force:
            run_dir.check_owned()
        run_dir.check_study(config.resolved(), fingerprints, force)

    with holding(run_dir, check, console):
        controls = f" + {len(prepared.controls)} control baselines" if prepared.controls else ""
        nulls = sum(1 for run in prepared.runs if run.entry is not None and config.is_null_control(run.entry))
        console.print(
            f"[bold]study[/] {config.name}: {len(prepared.all_runs)} models "
            f"(baseline + {len(config.augmentations)} augmentations"
            + (f" + {len(config.guided)} guided losses" if config.guided else "")
            + f" × {len(config.seeds)} seeds"
            + (f" + {nulls} null models" if nulls else "")
            + f"{controls}), "
            f"{len(prepared.split.train)} train / {len(prepared.split.val)} val / "
            f"{len(prepared.split.test)} test images, {config.model.name} → {prepared.target_layer} "
            f"({prepared.layer_size[0]}×{prepared.layer_size[1]})"
        )
        for warning in prepared.warnings:
            console.print(f"[yellow]warning[/]: {escape(warning)}", highlight=False)
        device: torch.device = executor.driver_device
        manifest = Manifest(run_dir, prepared, device, executor.name, executor.manifest_info(), console)
        manifest.write()  # first: it marks the directory as augcam's (RunDir.check_owned)
        run_dir.write_study(config.resolved())
        ctx = StageContext(prepared, run_dir, device, console, manifest, executor)
        run_stages(ctx)
        if ctx.stored.damaged or ctx.stored.unverified:
            manifest["stored_files"] = {
                "damaged": {str(path): why for path, why in sorted(ctx.stored.damaged.items())},
                "unverified": len(ctx.stored.unverified),
            }
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        manifest.write()
    return StudyResult(
        run_dir.root, ctx.tables["performance"], ctx.tables["metrics"], ctx.tables["aggregated"], dict(manifest)
    )
