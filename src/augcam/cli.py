"""The `augcam` command: a thin layer over the Python API — it uses only what `augcam` exports.

Errors a user can cause (config, data, paths, devices) print one message and exit with status 2;
an error of the machine while reading or writing a file (a full disk, an I/O error) prints one
message naming the file and exits with status 1; Ctrl-C says what it interrupted and exits with
status 130. `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

import augcam
from augcam import AugcamError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How does a data augmentation change where an image classifier looks?",
)
err_console = Console(stderr=True)
# Piped or logged output gets a width that fits the summary tables instead of rich's 80 columns.
out_console = Console() if sys.stdout.isatty() else Console(width=160)


# Exit statuses: a user error (the config, the data, a path or option), an error of the machine
# (a full disk, an I/O error: the same command may work once it is fixed), Ctrl-C (128 + SIGINT).
USER_ERROR, ENVIRONMENT_ERROR, INTERRUPTED = 2, 1, 130
SET_HELP = (
    "Override a config value: --set training.epochs=2; a mapping merges into the section: --set 'training={epochs: 2}'"
)

SELECT_SET_HELP = SET_HELP.replace("training", "study.training")


def _fail(err: BaseException, debug: bool, after: str = "") -> None:
    if debug:
        raise err
    if isinstance(err, OSError):
        # Always an error of the machine here: the paths a user names are checked as AugcamErrors.
        where = f"{err.filename}: " if err.filename else ""
        message, code = f"{where}{err.strerror or err}{after}", ENVIRONMENT_ERROR
    else:
        message, code = str(err), USER_ERROR
    # Escaped: a message may hold brackets rich would take for markup ("augcam[ray]", "augmentations[x]").
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def _interrupted(err: KeyboardInterrupt, doing: str, then: str) -> None:
    # An augcam.errors.Interrupted says what it interrupted; a bare KeyboardInterrupt does not.
    err_console.print(f"interrupted while {escape(str(err) or doing)}; {then}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=INTERRUPTED)


@app.command()
def run(
    config: str = typer.Argument(..., help="A preset name (see `augcam presets`) or a study YAML file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; reused to resume)."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (overrides the config)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    force: bool = typer.Option(
        False, help="Write into an output directory that holds another study's run, or files augcam did not write."
    ),
    executor: str = typer.Option(
        "local",
        help="local: the models one after the other in this process; "
        "ray: one task per model on a Ray cluster (docs/cluster.md).",
    ),
    address: str | None = typer.Option(
        None,
        help="With --executor ray: the cluster to use (auto: the one "
        "this machine belongs to, or HOST:PORT of its head); default: start "
        "a local Ray cluster on this machine.",
    ),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Run a whole study: train, explain, compare, aggregate, report."""
    try:
        # Checked before the study file, so that a wrong option costs no data loading.
        augcam.executor_class(executor, address)
        study = augcam.load_config(config, overrides=augcam.parse_overrides(set_))
        result = augcam.run_study(
            study, out, device=device, force=force, console=err_console, executor=executor, address=address
        )
    except (AugcamError, OSError) as err:
        _fail(err, debug, after=f"; {out} keeps everything finished so far: rerun the same command to resume")
        return
    except KeyboardInterrupt as err:
        _interrupted(err, "running the study", "rerun the same command to resume")
        return
    for table in augcam.summary_tables(result):
        out_console.print(table)
    out_console.print(
        f"Finished in {result.manifest.get('seconds', 0):.1f} s. Results in {result.out}/:\n"
        f"  report.html  tables/  figures/  models/  cams/  manifest.json  study.yaml"
    )


@app.command()
def select(
    selection: str = typer.Argument(..., help="A selection preset (see `augcam presets`) or a selection YAML file."),
    out: Path = typer.Option(..., "--out", "-o", help="Selection directory (created; reused to resume)."),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:N or auto (overrides the study's)."),
    set_: list[str] = typer.Option([], "--set", help=SELECT_SET_HELP),
    force: bool = typer.Option(
        False, help="Write into an output directory that holds another run, or files augcam did not write."
    ),
    executor: str = typer.Option(
        "local",
        help="local: the models one after the other in this process; ray: one task per model (docs/cluster.md).",
    ),
    address: str | None = typer.Option(None, help="With --executor ray: the cluster to use (as for `augcam run`)."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Choose the study's architecture: train every candidate without augmentation, plot its test
    scores per epoch and its training time, choose on validation accuracy, write chosen.yaml."""
    try:
        augcam.executor_class(executor, address)
        config = augcam.load_selection(selection, overrides=augcam.parse_overrides(set_))
        result = augcam.select(
            config, out, executor=executor, address=address, device=device, force=force, console=err_console
        )
    except (AugcamError, OSError) as err:
        _fail(err, debug, after=f"; {out} keeps every finished candidate: rerun the same command to resume")
        return
    except KeyboardInterrupt as err:
        _interrupted(err, "running the selection", "rerun the same command to resume")
        return
    out_console.print(
        f"Chosen: {result.chosen}. Finished in {result.manifest.get('seconds', 0):.1f} s. Results in {result.out}/:\n"
        "  chosen.yaml  report.html  tables/  figures/  candidates/  manifest.json  selection.yaml"
    )


@app.command()
def presets() -> None:
    """List the presets shipped with augcam."""
    for name in augcam.preset_names():
        out_console.print(f"[bold]{name:<16}[/] {augcam.preset_summary(name)}", highlight=False)


@app.command()
def validate(
    config: str = typer.Argument(..., help="A preset name or a study YAML file."),
    data: bool = typer.Option(True, help="Also load the data and check the model's target layer."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Check a study config or an architecture selection (and its data and models) without running it."""
    try:
        if augcam.is_selection(config):
            _validate_selection(config, data, augcam.parse_overrides(set_))
            return
        study = augcam.load_config(config, overrides=augcam.parse_overrides(set_))
        if data:
            prepared = augcam.prepare(study)
            out_console.print(
                f"{config}: valid — {len(prepared.all_runs)} models, {len(prepared.split.train)} train / "
                f"{len(prepared.split.val)} val / {len(prepared.split.test)} test images, target layer "
                f"{prepared.target_layer} ({prepared.layer_size[0]}×{prepared.layer_size[1]}, "
                f"{prepared.model_info['layer_layout']}; CAMs by the {prepared.model_info['cam_path']} path)"
            )
            for warning in prepared.warnings:
                out_console.print(f"warning: {warning}", highlight=False, soft_wrap=True)
            for adaptation in prepared.model_info["weights_adapted"]:
                out_console.print(f"model.weights: {adaptation}", highlight=False)
            limits = prepared.design_limits
        else:
            out_console.print(f"{config}: valid")
            limits = augcam.study_design_limits(study)
    except (AugcamError, OSError) as err:
        _fail(err, debug)
        return
    except KeyboardInterrupt as err:
        _interrupted(err, "validating the study", "nothing was written")
        return
    _print_design_limits(limits)


def _validate_selection(source: str, data: bool, overrides: dict) -> None:
    selection = augcam.load_selection(source, overrides=overrides)
    if not data:
        out_console.print(f"{source}: valid")
        return
    candidates = augcam.prepare_selection(selection)
    split = candidates[0].prepared.split
    out_console.print(
        f"{source}: valid — {len(candidates)} candidates × {len(selection.seeds)} seed(s) for study "
        f"{selection.study.name}, {len(split.train)} train / {len(split.val)} val / {len(split.test)} test images"
    )
    for candidate in candidates:
        p = candidate.prepared
        out_console.print(
            f"  {candidate.label}: {candidate.entry.name}, {candidate.parameters:,} parameters, "
            f"{p.input_size[0]}×{p.input_size[1]} inputs, target layer {p.target_layer} "
            f"({p.layer_size[0]}×{p.layer_size[1]})",
            highlight=False,
        )


def _print_design_limits(limits: dict | None) -> None:
    """The model-level test's limits in this design, and a warning when it cannot find anything."""
    if limits is None:
        return
    out_console.print(f"design limits: {limits['message']}", highlight=False, soft_wrap=True)
    if not limits["reachable"]:
        fix = f"train at least {limits['null_models_needed']} null models (controls.null_models)"
        if limits["m"] == 0:
            fix += " with controls.identity: true"
        if limits["seeds_needed"] is not None:
            fix += f" or {limits['seeds_needed']} seeds"
        out_console.print(
            f"warning: this study cannot find any augmentation different from retraining noise "
            f"(p < {limits['alpha']:g}) by design; {fix}",
            highlight=False,
            soft_wrap=True,
        )
    elif not limits["alone_reachable"]:
        out_console.print(
            f"warning: with {limits['augmentations']} augmentations, an augmentation is found different from "
            "retraining noise only when others are too (Benjamini–Hochberg over the table); train at least "
            f"{limits['null_models_needed_alone']} null models (controls.null_models) to find one on its own",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def gallery(
    config: str = typer.Argument(..., help="A preset name or a study YAML file."),
    out: Path = typer.Option(..., "--out", help="Folder for gallery.png (created if needed)."),
    images: int = typer.Option(4, "--images", min=1, help="Training images per row."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Draw what the models were trained on: every studied augmentation, under every seed, applied to
    the same training images by the training loop's own code and random stream."""
    try:
        study = augcam.load_config(config, overrides=augcam.parse_overrides(set_))
        path = augcam.write_gallery(study, out, images=images)
    except (AugcamError, OSError) as err:
        _fail(err, debug)
        return
    except KeyboardInterrupt as err:
        _interrupted(err, "drawing the gallery", "nothing was written")
        return
    out_console.print(f"Gallery: {path}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A finished run directory (the --out of `augcam run`)."),
    pairs: int = typer.Option(4, min=1, help="Most / least correlated pairs taken from each correlation map."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Re-create the analyses (tables/*.csv, figures/) and report.html of a finished run."""
    try:
        path = augcam.write_report(run_dir, console=err_console, pairs=pairs)  # holds the run directory's lock
    except (AugcamError, OSError) as err:
        _fail(err, debug, after=f"; rerun `augcam report {run_dir}` to write the report again")
        return
    except KeyboardInterrupt as err:
        _interrupted(err, "writing the report", f"the run's tables are untouched: rerun `augcam report {run_dir}`")
        return
    out_console.print(f"Report: {path}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command to resume")
        sys.exit(INTERRUPTED)
