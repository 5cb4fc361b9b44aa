"""Stage 9, faithfulness (config `faithfulness:`, off by default; docs/faithfulness.md) →
tables/faithfulness.parquet (one row per model, fill and test image) and
tables/faithfulness_models.parquet (their means per model and fill).

For every trained model of the plan (the baseline and each augmentation × seed) on the study's
test images (the first `faithfulness.images` of them): the occlusion-robustness-controlled
faithfulness of the model's own CAMs over `percentages`, the deletion / insertion AUCs, and the
accuracy under random occlusion at `occlusion_percentages` — each with every fill of `fills`
(zero, the training set's per-channel mean, a blur of the image). Computed by the functions of
`augcam.metrics.faithfulness` on [0, 1] images, the model wrapped with the study's normalisation.

The attribution of an image is the model's stored CAM (the study's CAM method, for its CAM
target, the predicted class by default) brought to the image's size as the CAM metrics do
(`upsample`). The random pixel sets depend on the fill and the test images only, not on the
model (seeded by `derived_seed("faithfulness", fill)` and `("occlusion", fill, q)`), so every
model is scored on the same random removals and their differences are not sampling noise.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import torch
from torch import nn

from augcam.atomic import DamagedFileError, read_tensor_file, write_parquet, write_tensors
from augcam.cams import upsample
from augcam.config import digest
from augcam.metrics.faithfulness import accuracy_under_random_occlusion, deletion_insertion, faithfulness
from augcam.pipeline.chain import cam_key
from augcam.pipeline.context import StageContext, progress_bar
from augcam.pipeline.stages.base import Stage
from augcam.rundir import FAITHFULNESS_MODELS_TABLE, FAITHFULNESS_TABLE
from augcam.training import derived_seed, prepare_inputs

__all__ = ["NormalisedModel", "faithfulness_rows", "model_means", "FAITHFULNESS_ID_COLUMNS", "FaithfulnessStage"]

FAITHFULNESS_ID_COLUMNS = ("model_id", "augmentation", "seed", "fill", "image_index", "label")


class NormalisedModel(nn.Module):
    """[0, 1] images → logits: the study's input preparation (normalise, resize), then the model."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], image_size: int | None):
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(prepare_inputs(images, self.mean, self.std, self.image_size))


def faithfulness_rows(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    raw_cams: torch.Tensor,
    settings,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    image_size: int | None,
) -> dict[str, dict[str, torch.Tensor]]:
    """fill → column → float64 Tensor[N] for one model. `images` are [0, 1] (N, C, H, W) on the
    model's device, `raw_cams` the stored raw maps of the same images, `settings` the study's
    FaithfulnessConfig."""
    wrapped = NormalisedModel(model, mean, std, image_size).to(images.device).eval()
    attributions = upsample(raw_cams.to(images.device), tuple(images.shape[-2:]))
    common = {"mean": mean, "blur_sigma": settings.blur_sigma, "batch_size": settings.batch_size}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for fill in settings.fills:
        columns = faithfulness(
            wrapped,
            images,
            labels,
            attributions,
            percentages=settings.percentages,
            draws=settings.draws,
            fill=fill,
            generator=torch.Generator().manual_seed(derived_seed("faithfulness", fill)),
            **common,
        )
        curves = deletion_insertion(wrapped, images, labels, attributions, steps=settings.steps, fill=fill, **common)
        columns.update(deletion_auc=curves["deletion_auc"], insertion_auc=curves["insertion_auc"])
        for q in settings.occlusion_percentages:
            generator = torch.Generator().manual_seed(derived_seed("occlusion", fill, float(q)))
            columns[f"occlusion_accuracy_{float(q):g}"] = accuracy_under_random_occlusion(
                wrapped, images, labels, q, generator=generator, fill=fill, draws=settings.draws, **common
            )
        out[fill] = columns
    return out


def model_means(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, fill): the mean over the test images of every metric column."""
    if rows.empty:
        return rows
    values = [c for c in rows.columns if c not in FAITHFULNESS_ID_COLUMNS]
    grouped = rows.groupby(["model_id", "fill"], sort=False)
    means = grouped[values].mean()
    means.insert(0, "images", grouped.size())
    first = grouped[["augmentation", "seed"]].first()
    return pd.concat([first, means], axis=1).reset_index()


def stored_faithfulness(ctx: StageContext, path, key: str, fills: list[str]) -> dict | None:
    """The stored per-fill columns of a model if they were made with `key` and are intact; a
    damaged file is reported and gives None (recomputed)."""
    if not path.exists():
        return None
    try:
        stored, metadata, _ = read_tensor_file(path)
        if metadata.get("faithfulness_key") != key:
            return None
        # The file's tensors come back sorted by name; the column order is in its metadata.
        try:
            columns = json.loads(metadata["columns"])
            return {fill: {column: stored[f"{fill}/{column}"] for column in columns} for fill in fills}
        except (KeyError, TypeError, ValueError) as err:
            raise DamagedFileError(path, f"not a faithfulness cache: {err}") from None
    except DamagedFileError as err:
        ctx.print(f"[yellow]{path}: damaged ({err.why}); recomputing it[/]")
        return None


class FaithfulnessStage(Stage):
    name = "faithfulness"
    reads = ("models/<model_id>/weights.safetensors", "cams/<model_id>.safetensors")
    writes = (
        "faithfulness/<model_id>.safetensors",
        f"tables/{FAITHFULNESS_TABLE}",
        f"tables/{FAITHFULNESS_MODELS_TABLE}",
    )
    tables = (FAITHFULNESS_TABLE, FAITHFULNESS_MODELS_TABLE)

    def enabled(self, ctx: StageContext) -> bool:
        return ctx.config.faithfulness.enabled

    def run(self, ctx: StageContext) -> dict[str, Any]:
        p, f = ctx.prepared, ctx.config.faithfulness
        models = [run for run in p.runs if ctx.is_complete(run)]
        n_images = len(p.split.test) if f.images is None else min(f.images, len(p.split.test))
        ctx.print(f"[bold]faithfulness[/]: {len(models)} models on {n_images} test images, fills {', '.join(f.fills)}")
        index = p.split.test[:n_images]
        images = ctx.images(p.test_set.images[index])
        labels = p.test_set.labels[index].to(ctx.device)
        frames = []
        reused = 0
        with progress_bar(ctx.console) as progress:
            task = progress.add_task("faithfulness", total=len(models), rate="")
            for run in models:
                progress.update(task, description=f"faithfulness {run.label}")
                # Cached per model, keyed by its CAM set and the stage's settings: a rerun, or a study
                # that gains an augmentation, computes only what changed.
                key = digest({"cam_key": cam_key(p, run), "settings": f.model_dump(mode="json"), "images": n_images})
                path = ctx.run_dir.faithfulness_file(run.model_id)
                by_fill = stored_faithfulness(ctx, path, key, f.fills)
                if by_fill is not None:
                    reused += 1
                else:
                    raw = ctx.cam_set(run)["raw"][:n_images]
                    with torch.no_grad():
                        by_fill = faithfulness_rows(
                            ctx.load_model(run), images, labels, raw, f, p.mean, p.std, ctx.config.data.image_size
                        )
                    write_tensors(
                        path,
                        {
                            f"{fill}/{name}": value
                            for fill, columns in by_fill.items()
                            for name, value in columns.items()
                        },
                        metadata={"faithfulness_key": key, "columns": json.dumps(list(next(iter(by_fill.values()))))},
                    )
                for fill, columns in by_fill.items():
                    frames.append(
                        pd.DataFrame(
                            {
                                "model_id": run.model_id,
                                "augmentation": run.augmentation,
                                "seed": pd.array([run.seed] * n_images, dtype="Int64"),
                                "fill": fill,
                                "image_index": index.numpy(),
                                "label": labels.cpu().numpy(),
                                **{name: value.cpu().numpy() for name, value in columns.items()},
                            }
                        )
                    )
                progress.update(task, advance=1)
        rows = pd.concat(frames, ignore_index=True)
        write_parquet(ctx.run_dir.table(FAITHFULNESS_TABLE), rows)
        write_parquet(ctx.run_dir.table(FAITHFULNESS_MODELS_TABLE), model_means(rows))
        undefined = {col: int(rows[col].isna().sum()) for col in rows.columns if col not in FAITHFULNESS_ID_COLUMNS}
        return {"rows": len(rows), "computed": len(models) - reused, "reused": reused, "undefined_values": undefined}
