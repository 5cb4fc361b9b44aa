"""Stage 10, report: every analysis of the run's tables as CSV and figure, and report.html — the
same as `augcam report DIR`, from the run directory alone."""

from __future__ import annotations

from typing import Any

from augcam.analysis.report import render_report
from augcam.pipeline.context import StageContext
from augcam.pipeline.stages.base import Stage


class ReportStage(Stage):
    name = "report"
    reads = ("tables/", "models/<model_id>/history.parquet", "manifest.json", "study.yaml")
    writes = ("tables/*.csv", "figures/", "report.html")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        # The manifest is complete but for this stage: the report's provenance footer reads it.
        # The run already holds the directory's lock, so the lock-free entry point is used.
        path = render_report(ctx.run_dir.root, ctx.console)
        return {"file": path.name}
