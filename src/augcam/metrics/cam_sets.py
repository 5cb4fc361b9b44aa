"""The comparison of two stored CAM sets, image by image: every registered metric a study computes.

A CAM set (what the explain stage stores per model) holds the raw layer-resolution maps ``raw``
(N, h, w) and the logits ``logits`` (N, K) of the same N test images. Comparing one model's set
with the baseline's gives, per image and in this order of columns:

1. the map metrics (`compare_maps`: the registered ``map_pair`` metrics, then Overlap Rate@Y per
   percentage) on the maps upsampled to the input size, as every stage that reads maps does;
2. the opt-in ``map_pair`` / ``single_map`` metrics the study lists (``metrics.saliency``: cc, kl,
   entropy + entropy_base) on the same maps, then any ``single_map`` metric that is not opt-in;
3. every registered ``class_probabilities`` metric (Class-KLD) of the two softmax outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from augcam.cams import upsample
from augcam.metrics.maps import compare_maps
from augcam.metrics.registry import computed_by_default, metrics_of_kind
from augcam.metrics.saliency import DEFAULT_KL_EPS, compare_saliency

if TYPE_CHECKING:
    from augcam.config import StudyConfig

__all__ = ["compare_cam_sets", "study_cam_metrics"]


def compare_cam_sets(
    base: dict[str, torch.Tensor],
    other: dict[str, torch.Tensor],
    input_size: tuple[int, int],
    overlap_percentages: list[float],
    kld_eps: float,
    device: torch.device,
    chunk: int = 1024,
    *,
    saliency: Sequence[str] = (),
    kl_eps_saliency: float = DEFAULT_KL_EPS,
) -> dict[str, np.ndarray]:
    """Per-image metrics of one model's stored CAM set against the baseline's (see the module
    docstring for which, in which order). Undefined values (a constant map, a NaN map,
    non-finite logits) are NaN; a class the baseline gives probability 0 and the model does not
    makes Class-KLD +inf."""
    per_map = list(saliency) + [
        spec.name for spec in metrics_of_kind("single_map") if computed_by_default(spec) and spec.name not in saliency
    ]
    values: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(base["raw"]), chunk):
        part = slice(start, start + chunk)
        base_maps = upsample(base["raw"][part].to(device), input_size)
        other_maps = upsample(other["raw"][part].to(device), input_size)
        result = compare_maps(base_maps, other_maps, overlap_percentages=overlap_percentages)
        if per_map:
            result.update(compare_saliency(base_maps, other_maps, metrics=per_map, kl_eps=kl_eps_saliency))
        for name, value in result.items():
            values.setdefault(name, []).append(value.cpu())
    p_base = torch.softmax(base["logits"].double(), dim=1)
    p_other = torch.softmax(other["logits"].double(), dim=1)
    probabilities = {
        spec.name: spec.fn(p_base, p_other, eps=kld_eps).numpy()
        for spec in metrics_of_kind("class_probabilities")
        if computed_by_default(spec)
    }
    return {**{name: torch.cat(parts).numpy() for name, parts in values.items()}, **probabilities}


def study_cam_metrics(
    config: StudyConfig,
    base: dict[str, torch.Tensor],
    other: dict[str, torch.Tensor],
    input_size: tuple[int, int],
    device: torch.device,
) -> dict[str, np.ndarray]:
    """`compare_cam_sets` with the study's metrics settings (every caller, cluster workers included)."""
    m = config.metrics
    return compare_cam_sets(
        base,
        other,
        input_size,
        m.overlap_percentages,
        m.kld_eps,
        device,
        saliency=m.saliency,
        kl_eps_saliency=m.kl_eps_saliency,
    )
