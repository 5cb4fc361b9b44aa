"""Where a saliency map falls relative to a ground-truth mask of the region of interest.

Batched over (N, H, W) maps and (N, H, W) bool masks on the maps' device; float64 Tensor[N] each.
With M the mask (|M| = k pixels) and S the map's "top-k region" — every pixel ≥ the map's k-th
largest value, so values tied with it all join and |S| can exceed k (augcam's Overlap Rate
convention; without ties |S| = k):

* ``iou``  = |S ∩ M| / |S ∪ M|
* ``intersection_over_prediction`` = |S ∩ M| / |S|
* ``intersection_over_target``     = |S ∩ M| / |M|   (without ties: Quantus' RelevanceRankAccuracy)
* ``pointing_game`` = 1 if a pixel of maximal value lies in M, else 0 (Zhang et al., 2018; any
  of several tied maxima counts, as Quantus' PointingGame)
* ``energy_pointing_game`` = Σ_{M} map / Σ map (Wang et al., Score-CAM, 2020; Quantus'
  RelevanceMassAccuracy); meant for non-negative maps (CAMs); NaN where the map sums to 0.

An empty mask gives NaN for every metric (nothing to localise), as does a map with a NaN pixel.
Each is an entry of kind ``masks`` of the metric registry (`augcam.metrics.registry`); the
localisation stage computes every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from augcam.metrics.registry import MetricView, register_metric

__all__ = ["LOCALISATION_METRICS", "localisation", "top_k_region"]

# fn(maps (N, H, W), masks (N, H, W) bool) -> (N,): the registered metrics of kind "masks".
LOCALISATION_METRICS = MetricView("localisation metric", lambda spec: spec.kind == "masks")


def _rows(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (N, P) maps, bool (N, P) masks, and which rows are undefined (empty mask, NaN)."""
    if maps.dim() != 3 or masks.shape != maps.shape:
        raise ValueError(f"maps and masks must both be (N, H, W), got {tuple(maps.shape)} and {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool, got {masks.dtype}")
    x = maps.flatten(1).double()
    m = masks.flatten(1).to(x.device)
    undefined = ~m.any(dim=1) | torch.isnan(x).any(dim=1)
    return x, m, undefined


def top_k_region(maps: Tensor, k: Tensor) -> Tensor:
    """(N, P) bool: pixels ≥ each row's k-th largest value, k ≥ 1 given per row (N,)."""
    values = torch.sort(maps, dim=1, descending=True).values
    threshold = values.gather(1, (k.clamp(min=1) - 1).view(-1, 1))
    return maps >= threshold


def _regions(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, m, undefined = _rows(maps, masks)
    region = top_k_region(x, m.sum(dim=1))
    return region, m, undefined, (region & m).sum(dim=1).double()


def _nan_where(values: Tensor, undefined: Tensor) -> Tensor:
    return values.masked_fill(undefined, math.nan)


@register_metric("iou", kind="masks", display_name="IoU", higher_is_better=True)
def iou(maps: Tensor, masks: Tensor) -> Tensor:
    region, m, undefined, inter = _regions(maps, masks)
    return _nan_where(inter / (region | m).sum(dim=1).double(), undefined)


@register_metric("intersection_over_prediction", kind="masks", display_name="IoP", higher_is_better=True)
def intersection_over_prediction(maps: Tensor, masks: Tensor) -> Tensor:
    region, _, undefined, inter = _regions(maps, masks)
    return _nan_where(inter / region.sum(dim=1).double(), undefined)


@register_metric("intersection_over_target", kind="masks", display_name="IoT", higher_is_better=True)
def intersection_over_target(maps: Tensor, masks: Tensor) -> Tensor:
    _, m, undefined, inter = _regions(maps, masks)
    return _nan_where(inter / m.sum(dim=1).double(), undefined)


@register_metric("pointing_game", kind="masks", display_name="pointing game", higher_is_better=True)
def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    x, m, undefined = _rows(maps, masks)
    is_max = x == x.amax(dim=1, keepdim=True)
    return _nan_where((is_max & m).any(dim=1).double(), undefined)


@register_metric("energy_pointing_game", kind="masks", display_name="energy pointing game", higher_is_better=True)
def energy_pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    x, m, undefined = _rows(maps, masks)
    # 0 / 0 = NaN for an all-zero map, which is undefined indeed.
    return _nan_where((x * m).sum(dim=1) / x.sum(dim=1), undefined)


def localisation(maps: Tensor, masks: Tensor, metrics: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Every registered localisation metric (or those named in `metrics`) of each map vs its mask."""
    names = list(LOCALISATION_METRICS) if metrics is None else list(dict.fromkeys(metrics))
    return {name: LOCALISATION_METRICS.lookup(name, "localisation")(maps, masks) for name in names}
