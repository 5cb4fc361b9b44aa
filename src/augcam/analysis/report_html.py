"""The report's HTML: the template's context (tables shown as text, sentences, sections) and its
rendering with the Jinja2 template `templates/report.html.j2`.

Every helper here formats what `augcam.analysis.analyses.analyse` computed; none computes a new
number, so the HTML and the CSVs under tables/ cannot disagree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources

import numpy as np
import pandas as pd

from augcam import __version__
from augcam.analysis.analyses import Analyses
from augcam.analysis.names import display_name, method_name
from augcam.analysis.report_controls import (
    clusters_display,
    controls_note,
    identity_sentences,
    model_level_display,
    model_level_sentences,
    no_model_level_note,
    noise_sentences,
    noise_summary_display,
    sanity_sentences,
    significance_display,
    small_effect_caveats,
    spread_caveats,
)
from augcam.analysis.report_figures import RenderedFigure
from augcam.analysis.report_text import fmt, html_table, labelled
from augcam.analysis.run_tables import (
    BASELINE,
    CONTROL,
    PERFORMANCE_COLUMNS,
    RunTables,
    augmentation_label,
    studied,
)
from augcam.analysis.statistics import noise_verdicts
from augcam.analysis.tables import SANITY_THRESHOLD, SEGMENTS

__all__ = ["report_context", "render_html", "provenance", "template", "PIPELINE_STAGES", "QUESTION"]

PIPELINE_STAGES = ("train", "explain", "compare", "performance", "aggregate", "controls", "sanity")
QUESTION = "How does a data augmentation change where an image classifier looks?"


def report_context(
    tables: RunTables,
    result: Analyses,
    figures: list[RenderedFigure],
    related_context: dict,
    image_note: str | None,
    pairs: int,
    n_resamples: int,
    gallery: dict | None = None,
) -> tuple[dict, dict[str, str]]:
    """(the template's context but the provenance, the mask-guided section's CSVs): what the report
    shows, section by section; sections of the controls only when the run has their tables, the
    gallery's (`gallery`: images, epoch, copies) only when it could be drawn."""
    order, metrics = result.order, result.metrics
    by_name = {f.name: f for f in figures}
    segment_table = result.segment_counts.rename(columns={s.replace(" ", "_"): s for s in SEGMENTS})
    perf_table = result.performance.rename(
        columns={f"{c}_{s}": f"{display_name(c)} {s}" for c in PERFORMANCE_COLUMNS for s in ("mean", "std")}
    )
    augmentations = [a for a in order if a != BASELINE]
    context = {
        "question": QUESTION,
        "study": tables.study,
        "config": _config_summary(tables.study, tables),
        "base_augmentations": [
            entry.get("name") for entry in (tables.study.get("training") or {}).get("base_augmentations") or []
        ],
        "augmentations": [augmentation_label(a) for a in augmentations],
        "studied": studied(order),
        "n_pairs": len(studied(order)) * (len(studied(order)) - 1) // 2,
        "has_control": CONTROL in order,
        "gallery": gallery,
        "metrics": metrics,
        "display": display_name,
        "figure": by_name,
        "pairs": pairs,
        "performance_table": html_table(labelled(perf_table)),
        "failed": tables.performance.loc[tables.performance["status"] != "complete", ["model_id", "status"]].to_dict(
            "records"
        ),
        "strongest": html_table(result.strongest),
        "weakest": html_table(result.weakest),
        "segment_table": html_table(labelled(segment_table)),
        "extremes": result.extremes.to_dict("records"),
        "image_note": image_note,
        "summary_table": _summary_display(labelled(result.summary), metrics),
        "clusters_table": clusters_display(result.clusters),
        "control": augmentation_label(CONTROL),
        "has_between": result.between is not None and len(result.between) > 0,
        "noise": _noise_section(result, augmentations, n_resamples, tables.study),
        "sanity": None
        if result.sanity is None
        else {"sentences": sanity_sentences(result.sanity_verdicts), "threshold": SANITY_THRESHOLD},
        "controls_note": controls_note(tables),
        "cam_method": method_name(tables.study.get("cam", {}).get("method", "gradcam")),
        **related_context,  # published, faithfulness: None when the study has no such section
    }
    # Sections in order, (id, title); those of the controls only when the run has their tables.
    sections = [("gallery", "What the models were trained on")] * (gallery is not None)
    sections += [
        ("performance", "Performance"),
        ("distributions", "Metric distributions"),
        ("correlations", "Correlation maps between augmentations"),
        ("pairs", "Strongest and weakest pairs"),
        ("profiles", "Impact profiles"),
        ("segments", "Results by prediction agreement"),
        ("extremes", "Extreme images"),
        ("summary", "Summary table"),
    ]
    sections += [("noise", "Is it more than noise?")] * (context["noise"] is not None)
    sections += [("sanity", "Sanity check")] * (context["sanity"] is not None)
    sections += [("published", "Comparison with the published study")] * (context["published"] is not None)
    sections += [("faithfulness", "Faithfulness and occlusion robustness")] * (context["faithfulness"] is not None)
    context["mask_guided"], mask_guided_csvs = _mask_guided_section(tables)
    sections += [("mask_guided", "Mask-guided training: generalisation vs localisation")] * (
        context["mask_guided"] is not None
    )
    context.update(sections=sections, number={sid: i for i, (sid, _) in enumerate(sections, start=1)})
    return context, mask_guided_csvs


def _noise_section(result: Analyses, augmentations: list[str], n_resamples: int, study: dict) -> dict | None:
    """The "Is it more than noise?" section: the model-level verdicts first (or why there are none),
    the design's limits, the baseline replicas, then the per-image tables as description. None
    when the run has neither null models nor baseline replicas."""
    if result.null_models == 0 and result.significance is None:
        return None
    metrics = result.metrics
    design = result.design
    section: dict = {
        "null_models": result.null_models,
        "noise_std": (study.get("controls") or {}).get("null_noise_std"),
        "design": None if design is None else design["message"],
        "unreachable": design is not None and not design["reachable"],
        "model_level": None,
        "no_model_level": None,
        "replicas": None,
        "vs_noise": None,
        "vs_identity": None,
        "resamples": n_resamples,
    }
    if result.model_level is not None:
        section["model_level"] = {
            "table": model_level_display(result.model_level, metrics, augmentations),
            "sentences": model_level_sentences(result.model_level, augmentations)
            + spread_caveats(result.model_level)
            + small_effect_caveats(result.model_level),
        }
    else:
        section["no_model_level"] = no_model_level_note(result.null_models)
    if result.significance is not None:
        section["replicas"] = {
            "count": int(result.noise_summary["replica"].nunique() - 1),
            "summary": noise_summary_display(result.noise_summary, metrics),
        }
        section["vs_noise"] = {
            "table": significance_display(result.significance, metrics),
            "sentences": noise_sentences(result.noise_verdicts),
        }
    if result.significance_identity is not None:
        section["vs_identity"] = {
            "table": significance_display(result.significance_identity, metrics),
            "sentences": identity_sentences(noise_verdicts(result.significance_identity)),
        }
    return section


def render_html(context: dict, manifest: dict, report_seconds: float) -> str:
    """report.html's text: `report_context`'s context and the provenance footer (versions, the
    stages' timings from manifest.json, and `report_seconds` for the report itself)."""
    return template("report.html.j2").render(**context, provenance=provenance(manifest, report_seconds))


def _summary_display(summary: pd.DataFrame, metrics: list[str]) -> dict:
    columns = ["augmentation", "models", "test accuracy"] + [display_name(m) for m in metrics]
    rows = []
    for row in summary.to_dict("records"):
        acc = fmt(row["test_accuracy_mean"])
        if not pd.isna(row["test_accuracy_std"]):
            acc += f" ± {row['test_accuracy_std']:.4f}"
        cells = [row["augmentation"], fmt(row["n_models"]), acc]
        for m in metrics:
            if pd.isna(row[f"{m}_median"]):
                cells.append("")
                continue
            nan = row[f"{m}_nan"]
            cells.append(
                f"{row[f'{m}_median']:.4f} [{row[f'{m}_iqr']:.4f}]"
                + (f" ({int(nan)} NaN)" if not pd.isna(nan) and nan else "")
            )
        rows.append(cells)
    return {"columns": columns, "rows": rows}


def _mask_guided_section(tables: RunTables) -> tuple[dict | None, dict[str, str]]:
    """The mask-guided section's context and its CSVs, when the run has tables/localisation.parquet."""
    from augcam.analysis.generalisation import (
        auc_localisation_correlation,
        generalisation_vs_localisation,
        load_localisation,
    )

    localisation = load_localisation(tables.root)
    if localisation is None or "roc_auc" not in tables.performance.columns:
        return None, {}
    table = generalisation_vs_localisation(tables.performance, localisation, tables.aggregated)
    correlation = auc_localisation_correlation(tables.performance, localisation)
    shown = pd.DataFrame({"method": table["augmentation"], "models": table["models"]})
    for column in [c[:-5] for c in table.columns if c.endswith("_mean")]:
        shown[display_name(column)] = [
            fmt(m, 3) + (f" ± {fmt(sd, 3)}" if not np.isnan(sd) else "")
            for m, sd in zip(table[f"{column}_mean"], table[f"{column}_std"])
        ]
    for column in [c for c in table.columns if c.endswith("_vs_baseline")]:
        shown[f"{display_name(column[:-12])} vs baseline"] = [fmt(v, 3) for v in table[column]]
    corr = correlation.assign(metric=correlation["metric"].map(display_name))
    context = {"table": html_table(shown), "correlation": html_table(corr, 3)}
    return context, {
        "mask_guided.csv": table.to_csv(index=False),
        "mask_guided_correlation.csv": correlation.to_csv(index=False),
    }


def _described_augmentations(entries: list[dict] | None) -> list[str]:
    """`label (name): params` for each augmentation entry of a resolved config."""
    described = []
    for entry in entries or []:
        params = ", ".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
        label, name = entry.get("label") or entry.get("name"), entry.get("name")
        text = f"{label} ({name})" if label != name else str(label)
        described.append(f"{text}: {params}" if params else text)
    return described


def _config_summary(study: dict, tables: RunTables) -> list[tuple[str, str]]:
    data, model = study.get("data") or {}, study.get("model") or {}
    training, cam = study.get("training") or {}, study.get("cam") or {}
    sizes = "/".join(
        str(data.get(k) if data.get(k) is not None else "all") for k in ("train_size", "val_size", "test_size")
    )
    n_images = int(tables.aggregated["image_index"].nunique())
    base = _described_augmentations(training.get("base_augmentations"))
    return [
        ("study", f"{study.get('name')}: {study.get('description') or ''}".strip(": ")),
        (
            "data",
            f"{data.get('dataset')}, train/val/test = {sizes} images, split seed {data.get('split_seed')}, "
            f"val fraction {data.get('val_fraction')}"
            + (f", resized to {data['image_size']}×{data['image_size']}" if data.get("image_size") else ""),
        ),
        ("model", _model_summary(model, (tables.manifest or {}).get("model") or {})),
        (
            "training",
            ", ".join(
                f"{k} {training[k]}"
                for k in ("epochs", "batch_size", "lr", "weight_decay", "init_seed", "ordering_seed", "copies")
                if k in training
            ),
        ),
        ("augmentations", "; ".join(_described_augmentations(study.get("augmentations")))),
        *([("base augmentations", "; ".join(base) + " (every model, the baseline included)")] if base else []),
        ("seeds", ", ".join(str(s) for s in study.get("seeds") or [])),
        ("CAM", f"{cam.get('method')}, target = {cam.get('target')} class; {n_images} test images compared"),
        ("metrics", ", ".join(display_name(m) for m in tables.metric_names)),
        ("controls", _controls_summary(study, tables)),
    ]


def _model_summary(configured: dict, built: dict) -> str:
    """Library, architecture, constructor parameters, initial weights and CAM layer of the model, as
    prepare recorded them in the manifest (the config alone for runs made before it did)."""
    if not built:
        return f"{configured.get('name')}, CAM target layer {configured.get('target_layer') or 'default'}"
    params = ", ".join(f"{k}={v}" for k, v in (built.get("params") or {}).items())
    weights = "; ".join([str(built.get("weights")), *(built.get("weights_adapted") or [])])
    return (
        f"{built.get('library')} {built.get('name')}" + (f" ({params})" if params else "") + f"; weights: {weights}; "
        f"CAM target layer {built.get('target_layer')} ({'×'.join(map(str, built.get('layer_size') or []))}, "
        f"{built.get('layer_layout')}), {built.get('cam_path')} path"
    )


def _controls_summary(study: dict, tables: RunTables) -> str:
    recorded = tables.controls or (study.get("controls") or {})
    null = tables.metrics.loc[tables.metrics["augmentation"] == CONTROL, "model_id"].nunique()
    parts = [f"{null} null model(s) ({CONTROL} control)" if null else "no null models"]
    if tables.noise is not None:
        replicas = list(dict.fromkeys(tables.noise["replica"].astype(str)))
        parts.append(f"{len(replicas)} baseline replica(s) ({', '.join(replicas)})")
    else:
        parts.append("no baseline replicas")
    if tables.sanity is not None:
        images = recorded.get("sanity_images")
        parts.append("sanity check" + (f" on {images} test images" if images else ""))
        parts.append("data randomisation " + ("on" if (tables.sanity["test"] == "data").any() else "off"))
    else:
        parts.append("no sanity check")
    return ", ".join(parts)


def provenance(manifest: dict, report_seconds: float, stage_order: tuple[str, ...] = PIPELINE_STAGES) -> dict:
    """The footer's facts: versions, device, the run's start and end, and the stages' timings from
    manifest.json in `stage_order`, then this report's own time."""
    import jinja2
    import matplotlib

    versions = dict(manifest.get("versions") or {})
    versions.setdefault("matplotlib", matplotlib.__version__)
    versions.setdefault("jinja2", jinja2.__version__)
    recorded = manifest.get("stages") or {}
    # manifest.json is written with sorted keys; show the stages in the order they run.
    order = [s for s in stage_order if s in recorded] + sorted(set(recorded) - set(stage_order))
    stages = [(name, recorded[name].get("seconds"), recorded[name].get("status")) for name in order]
    stages.append(("report (this file)", round(report_seconds, 3), "complete"))
    return {
        "augcam_version": manifest.get("augcam_version"),
        "config_hash": manifest.get("config_hash"),
        "device": manifest.get("device"),
        "device_name": manifest.get("device_name"),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "total_seconds": manifest.get("seconds"),
        "versions": sorted(versions.items()),
        "stages": stages,
        "report_augcam_version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def template(name: str):
    """A template of `templates/`, which may include the others (the shared style and footer)."""
    import jinja2

    def source(file: str) -> str:
        return resources.files("augcam.analysis").joinpath(f"templates/{file}").read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(name)
