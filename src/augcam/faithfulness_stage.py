"""The faithfulness stage of a study (config `faithfulness:`, off by default; docs/faithfulness.md).

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

import pandas as pd
import torch
from torch import nn

from augcam.cams import upsample
from augcam.metrics.faithfulness import accuracy_under_random_occlusion, deletion_insertion, faithfulness
from augcam.train import derived_seed, prepare_inputs

__all__ = ["NormalisedModel", "faithfulness_rows", "model_means", "FAITHFULNESS_ID_COLUMNS"]

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


def faithfulness_rows(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, raw_cams: torch.Tensor,
                      settings, mean: tuple[float, ...], std: tuple[float, ...],
                      image_size: int | None) -> dict[str, dict[str, torch.Tensor]]:
    """fill → column → float64 Tensor[N] for one model. `images` are [0, 1] (N, C, H, W) on the
    model's device, `raw_cams` the stored raw maps of the same images, `settings` the study's
    FaithfulnessConfig."""
    wrapped = NormalisedModel(model, mean, std, image_size).to(images.device).eval()
    attributions = upsample(raw_cams.to(images.device), tuple(images.shape[-2:]))
    common = {"mean": mean, "blur_sigma": settings.blur_sigma, "batch_size": settings.batch_size}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for fill in settings.fills:
        columns = faithfulness(wrapped, images, labels, attributions, percentages=settings.percentages,
                               draws=settings.draws, fill=fill,
                               generator=torch.Generator().manual_seed(derived_seed("faithfulness", fill)), **common)
        curves = deletion_insertion(wrapped, images, labels, attributions, steps=settings.steps, fill=fill, **common)
        columns.update(deletion_auc=curves["deletion_auc"], insertion_auc=curves["insertion_auc"])
        for q in settings.occlusion_percentages:
            generator = torch.Generator().manual_seed(derived_seed("occlusion", fill, float(q)))
            columns[f"occlusion_accuracy_{float(q):g}"] = accuracy_under_random_occlusion(
                wrapped, images, labels, q, generator=generator, fill=fill, draws=settings.draws, **common)
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
