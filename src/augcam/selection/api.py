"""`select`: an architecture selection from its file to its directory — the file and every
candidate checked before anything is written, the directory locked, the stages run
(augcam.selection.stages), the chosen candidate and the tables returned."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console

from augcam.atomic import write_text
from augcam.config import SelectionConfig, digest, load_selection, with_device
from augcam.errors import AugcamError, Interrupted
from augcam.pipeline.executors import executor_class
from augcam.pipeline.manifest import Manifest, device_name
from augcam.pipeline.prepare import set_deterministic
from augcam.pipeline.runner import holding, run_stages
from augcam.rundir import SelectionDir
from augcam.selection.runner import SelectionContext, SelectionResult, prepare_candidates
from augcam.selection.stages import SELECTION_STAGES


def select(
    selection: SelectionConfig | str | Path | dict,
    out: str | Path,
    *,
    executor: str = "local",
    address: str | None = None,
    device: str | None = None,
    force: bool = False,
    console: Console | None = None,
) -> SelectionResult:
    """Run an architecture selection into `out` and return its tables and the chosen candidate.
    Public entry point of the Python API (`augcam select` on the command line).

    `selection`: a preset name, a selection YAML file, a dict or a SelectionConfig. Everything a
    user can get wrong (the file, the data, a candidate's model or layer, the output directory)
    raises an AugcamError before anything is written; rerunning on the same `out` reuses every
    finished candidate and resumes a killed one from its last epoch.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    runner_class = executor_class(executor, address)
    config = selection if isinstance(selection, SelectionConfig) else load_selection(selection)
    first_study = config.candidate_study(config.candidates[0])
    runner = runner_class.for_config(with_device(first_study, device) if device else first_study)
    set_deterministic()
    try:
        candidates = prepare_candidates(config, device)
    except KeyboardInterrupt as err:
        raise Interrupted("loading and checking the data, before anything was written") from err
    runner.connect(address, console)
    try:
        run_dir = SelectionDir(out)
        run_dir.create()

        def check() -> None:  # under the lock, before anything is written
            if not force:
                run_dir.check_owned()
                check_same_selection(run_dir, config)
            for candidate in candidates:
                folder = run_dir.candidate(candidate.label)
                fingerprints = {
                    "fingerprint": candidate.prepared.data_fingerprint,
                    "test_fingerprint": candidate.prepared.test_fingerprint,
                }
                if not force:
                    folder.check_owned()
                folder.check_study(candidate.study.resolved(), fingerprints, force)

        with holding(run_dir, check, console):
            console.print(
                f"[bold]selection[/] {config.name}: {len(candidates)} candidates × {len(config.seeds)} seed(s) "
                f"for study {config.study.name}, {len(candidates[0].prepared.split.train)} train / "
                f"{len(candidates[0].prepared.split.val)} val / {len(candidates[0].prepared.split.test)} test images, "
                f"{config.study.training.epochs} epochs",
                highlight=False,
            )
            record = {
                "selection": config.name,
                "config_hash": digest(config.resolved()),
                "device": str(runner.driver_device),
                "device_name": device_name(runner.driver_device),
                "executor": runner.name,
                "candidates": {c.label: c.entry.name for c in candidates},
                "seeds": config.seeds,
            }
            manifest = Manifest.of_record(run_dir, record, console)
            manifest.write()  # first: it marks the directory as augcam's (RunDir.check_owned)
            write_text(run_dir.selection_file, yaml.safe_dump(config.resolved(), sort_keys=False))
            ctx = SelectionContext(config, candidates, run_dir, runner.driver_device, console, manifest, runner)
            run_stages(ctx, SELECTION_STAGES)  # type: ignore[arg-type]
            manifest["seconds"] = round(time.perf_counter() - started, 3)
            manifest.write()
    finally:
        runner.close()
    return SelectionResult(run_dir.root, ctx.chosen, ctx.tables["epochs"], ctx.tables["summary"], dict(manifest))


def check_same_selection(run_dir: SelectionDir, config: SelectionConfig) -> None:
    """Refuse a directory that holds another selection (another name) or a study's run; the same
    selection with more candidates or seeds extends it (its candidates' directories check the rest)."""
    if run_dir.study_file.exists():
        raise AugcamError(
            f"{run_dir.root}: holds a study's run, not an architecture selection; choose another --out "
            "directory, or pass --force to write into it"
        )
    if not run_dir.selection_file.exists():
        return
    try:
        existing = yaml.safe_load(run_dir.selection_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise AugcamError(
            f"{run_dir.selection_file}: cannot read the selection file of the existing run ({err}); "
            "choose another --out directory, or pass --force to reuse it"
        ) from None
    name = existing.get("name") if isinstance(existing, dict) else None
    if name != config.name:
        raise AugcamError(
            f"{run_dir.root}: holds the architecture selection {name!r}, not {config.name!r}; "
            "choose another --out directory, or pass --force to reuse it"
        )
