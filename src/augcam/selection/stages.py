"""The stages of an architecture selection, after its candidates are trained (runner.CandidatesStage):
its tables and chosen.yaml, then its figures and report.html. Each reads only the directory."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import yaml

from augcam.atomic import atomic_path, write_parquet, write_text
from augcam.pipeline.stages.base import Stage
from augcam.rundir import SELECTION_EPOCHS, SELECTION_SUMMARY
from augcam.selection.runner import Candidate, CandidatesStage, SelectionContext
from augcam.selection.tables import candidate_epochs, summarise


def candidate_columns(candidate: Candidate) -> dict[str, Any]:
    """What the tables say of a candidate besides its scores: model, inputs, parameters, CAM layer."""
    p = candidate.prepared
    return {
        "model": candidate.entry.name,
        "image_size": f"{p.input_size[0]}×{p.input_size[1]}",
        "parameters": candidate.parameters,
        "target_layer": p.target_layer,
        "layer_height": p.layer_size[0],
        "layer_width": p.layer_size[1],
    }


def chosen_text(ctx: SelectionContext, candidate: Candidate, summary: pd.DataFrame) -> str:
    row = summary.set_index("candidate").loc[candidate.label]
    header = (
        f"# Study {candidate.study.name} with the architecture chosen by `augcam select` ({ctx.config.name}):\n"
        f"# {candidate.label} ({candidate.entry.name}), best mean validation accuracy {row['val_accuracy']:.4f}\n"
        f"# over {int(row['seeds'])} seed(s); run it with `augcam run chosen.yaml --out DIR`.\n"
    )
    return header + yaml.safe_dump(candidate.study.resolved(), sort_keys=False, allow_unicode=True)


class TablesStage(Stage):
    name = "tables"
    reads = ("candidates/<label>/models/<model_id>/",)
    writes = (f"tables/{SELECTION_EPOCHS}.*", f"tables/{SELECTION_SUMMARY}.*", "chosen.yaml")

    def run(self, ctx: SelectionContext) -> dict[str, Any]:  # type: ignore[override]
        frames, failed = [], {}
        for candidate in ctx.candidates:
            rows, failed[candidate.label] = candidate_epochs(
                ctx.run_dir.candidate(candidate.label),
                candidate.label,
                candidate.prepared.runs,
                candidate.prepared.num_classes,
            )
            if len(rows):
                for key, value in candidate_columns(candidate).items():
                    rows[key] = value
                frames.append(rows)
        epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        order = [candidate.label for candidate in ctx.candidates]
        summary = summarise(epochs, order, ctx.config.tie_tolerance)
        summary["failed_seeds"] = summary["candidate"].map(failed)
        info = pd.DataFrame([{"candidate": c.label, **candidate_columns(c)} for c in ctx.candidates])
        summary = info.merge(summary, on="candidate")
        for name, table in ((SELECTION_EPOCHS, epochs), (SELECTION_SUMMARY, summary)):
            write_parquet(ctx.run_dir.table(f"{name}.parquet"), table)
            write_text(ctx.run_dir.table(f"{name}.csv"), table.to_csv(index=False))
        ctx.chosen = str(summary.loc[summary["chosen"], "candidate"].iloc[0])
        chosen = next(c for c in ctx.candidates if c.label == ctx.chosen)
        write_text(ctx.run_dir.chosen_file, chosen_text(ctx, chosen, summary))
        ctx.tables = {"epochs": epochs, "summary": summary}
        ctx.console.print(
            f"[bold]chosen[/]: {ctx.chosen} (best mean validation accuracy; less training time breaks ties) "
            f"→ {ctx.run_dir.chosen_file}",
            highlight=False,
        )
        return {"rows": len(epochs), "chosen": ctx.chosen}


class ReportStage(Stage):
    name = "report"
    reads = (f"tables/{SELECTION_EPOCHS}.parquet", f"tables/{SELECTION_SUMMARY}.parquet")
    writes = ("figures/selection_*", "report.html")

    def run(self, ctx: SelectionContext) -> dict[str, Any]:  # type: ignore[override]
        from augcam.selection.report import selection_figures, selection_html

        started = time.perf_counter()
        figures = selection_figures(ctx.tables["epochs"], ctx.tables["summary"])
        for figure in figures:
            for suffix, payload in (("png", figure.png), ("svg", figure.svg)):
                with atomic_path(ctx.run_dir.figures / f"{figure.name}.{suffix}") as tmp:
                    tmp.write_bytes(payload)
        html = selection_html(ctx, figures, time.perf_counter() - started)
        write_text(ctx.run_dir.report_file, html)  # last: its presence means every file above is written
        ctx.console.print(f"[bold]report[/]: {ctx.run_dir.report_file}", highlight=False)
        return {"figures": len(figures)}


SELECTION_STAGES: tuple[Stage, ...] = (CandidatesStage(), TablesStage(), ReportStage())
