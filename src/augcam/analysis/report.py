"""Stage 10 (report): every analysis of a finished run, written as CSV tables, PNG and SVG figures, and one
self-contained `report.html`.

`write_report(run_dir)` reads only the run directory (tables, training histories, stored CAMs,
study.yaml, manifest.json) plus the test images for the CAM grids, so it reruns in seconds on any
machine. It holds the run directory's lock while it works (a run in progress rewrites the tables
it reads); `render_report` is the same work for a caller that already holds the lock, such as the
study's own report stage. Everything is computed and rendered in memory first and written at the
end, each file atomically (temporary file, then rename): an error leaves the previous outputs as
they were.

    load_run → analyse (analyses.py) → build_figures (report_figures.py)
             → report_context, render_html (report_html.py) → files under the run directory
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from augcam.analysis.analyses import DEFAULT_PAIRS, DEFAULT_RESAMPLES, analyse
from augcam.analysis.cam_grids import CamSets, load_test_images
from augcam.analysis.related import related_report
from augcam.analysis.report_figures import build_figures
from augcam.analysis.report_html import render_html, report_context
from augcam.analysis.run_tables import load_run
from augcam.atomic import atomic_path, write_text
from augcam.errors import AugcamError
from augcam.rundir import RunDir, RunLock

__all__ = ["write_report", "render_report", "OPTIONAL_TABLES", "OPTIONAL_FIGURES"]

# Written only when the run has what they need (the controls' tables, two augmentations or more).
OPTIONAL_TABLES = (
    "model_tests.csv",
    "noise_floor_summary.csv",
    "significance.csv",
    "significance_vs_identity.csv",
    "between_augmentations_median.csv",
    "sanity_verdict.csv",
    "mask_guided.csv",
    "mask_guided_correlation.csv",
    "published_comparison.csv",
    "faithfulness_summary.csv",
)
OPTIONAL_FIGURES = ("gallery", "clusters", "between_augmentations", "model_summaries", "noise_effects", "sanity")


def write_report(
    run_dir: str | Path,
    console: Console | None = None,
    *,
    pairs: int = DEFAULT_PAIRS,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """Analyse a finished run directory: CSVs under tables/, PNG + SVG under figures/, and
    report.html; returns the report's path. Holds the directory's lock meanwhile, so a run in
    progress there is refused (`augcam.rundir.RunLock` names it) rather than read half-way. Raises
    an `AugcamError` subclass naming the file when the directory is not a finished run; writes
    nothing then."""
    if not Path(run_dir).is_dir():  # nothing to lock; render_report names what is missing
        return render_report(run_dir, console, pairs=pairs, n_resamples=n_resamples)
    with RunLock(RunDir(run_dir).lock_file):
        return render_report(run_dir, console, pairs=pairs, n_resamples=n_resamples)


def render_report(
    run_dir: str | Path,
    console: Console | None = None,
    *,
    pairs: int = DEFAULT_PAIRS,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """`write_report` for a caller that holds the run directory's lock (the study's report stage);
    takes no lock itself."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = step()
        timings[name] = time.perf_counter() - t0
        return value

    tables = timed("load", lambda: load_run(run_dir))
    cams = CamSets(tables.root)
    finished = tables.performance.loc[tables.performance["status"] == "complete", "model_id"]
    timed("CAMs", lambda: cams.load([str(m) for m in finished]))
    result = timed("analyses", lambda: analyse(tables, pairs, n_resamples))

    image_note = None
    try:
        unique = tables.aggregated.drop_duplicates("image_index")
        images = timed(
            "test images",
            lambda: load_test_images(
                tables.study,
                result.extremes["image_index"].to_numpy(),
                unique.set_index("image_index").loc[result.extremes["image_index"], "label"].to_numpy(),
            ),
        )
    except AugcamError as err:
        # The report is still worth having without the images under the CAMs; the reader is told why.
        images = None
        image_note = f"The test images could not be loaded, so the CAMs are drawn without them: {err}"
        console.print(f"[yellow]report[/]: {image_note}", highlight=False)

    gallery = timed("gallery", lambda: _gallery(tables.study, console))
    figures = timed("figures", lambda: build_figures(tables, result, images, cams, gallery))
    related_files, related_context = timed("related methodologies", lambda: related_report(tables))
    gallery_context = (
        None
        if gallery is None
        else {
            "images": gallery.images.shape[1],
            "epoch": gallery.epoch,
            "copies": "drawn once, the same every epoch" if gallery.copies_drawn == "once" else "redrawn every epoch",
        }
    )
    context, mask_guided_csvs = report_context(
        tables, result, figures, related_context, image_note, pairs, n_resamples, gallery_context
    )
    html = timed("html", lambda: render_html(context, tables.manifest, time.perf_counter() - started))

    paths = tables.run_dir
    t0 = time.perf_counter()
    csv_files = {**result.csv_files(), **related_files, **mask_guided_csvs}
    for name, text in csv_files.items():
        write_text(paths.table(name), text)
    for fig in figures:
        for suffix, payload in (("png", fig.png), ("svg", fig.svg)):
            with atomic_path(paths.figures / f"{fig.name}.{suffix}") as tmp:
                tmp.write_bytes(payload)
    # Outputs of the controls' analyses that this run no longer has (its controls were turned off
    # since the last report) would contradict the report: remove them.
    for name in set(OPTIONAL_TABLES) - set(csv_files):
        paths.table(name).unlink(missing_ok=True)
    for stem in set(OPTIONAL_FIGURES) - {fig.name for fig in figures}:
        for suffix in ("png", "svg"):
            (paths.figures / f"{stem}.{suffix}").unlink(missing_ok=True)
    report = paths.report_file
    write_text(report, html)  # last: its presence means every table and figure above is written
    timings["write"] = time.perf_counter() - t0
    total = time.perf_counter() - started
    console.print(
        f"[bold]report[/]: {len(csv_files)} tables, {len(figures)} figures (PNG + SVG), "
        f"{report} in {total:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ")",
        highlight=False,
    )
    return report


def _gallery(study: dict, console: Console):
    """The study's augmentation gallery (`augcam.pipeline.gallery`), or None when the study has no
    studied augmentation or its training data cannot be loaded here (the reader is told why)."""
    from augcam.pipeline.gallery import augmentation_gallery

    try:
        gallery = augmentation_gallery(study)
    except AugcamError as err:
        console.print(f"[yellow]report[/]: no augmentation gallery: {err}", highlight=False)
        return None
    return gallery if len(gallery.rows) > 1 else None
