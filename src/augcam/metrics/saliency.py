"""Saliency-map metrics of the MNIST augmentation study (Tang, Sharma & Zhang, CS231n 2020).

Three numbers per image, batched over (N, P) float rows on the maps' device, float64 results:

* ``cc`` — Pearson correlation coefficient of the two maps. It is the same quantity as
  augcam's ``pearson`` map metric, so it *is* that function (NaN where a map is constant).
* ``kl`` — KL(P, Q) = Σ_i Q_i · log(ε + Q_i / (ε + P_i)) of the two maps each normalised to sum 1,
  P = the original (baseline) model's map, Q = the augmented model's. This is the form of the
  MIT saliency benchmark (Bylinskii et al.), whose ε is float64's machine epsilon (2.22e-16), the
  default here. Q_i = 0 contributes 0 (the limit of q log q).
* ``entropy`` — Shannon entropy −Σ p_i log p_i (natural log) of ONE map normalised to sum 1
  (p log p = 0 at p = 0), as ``scipy.stats.entropy``. A single-map metric: a study reports it for
  each model's map, the baseline's included.

Maps must be non-negative (saliency magnitudes, CAMs); a negative pixel is a ValueError since
"normalised to sum 1" has no meaning for it. A map that sums to 0 (all zeros) cannot be
normalised: ``kl`` and ``entropy`` are NaN for it, as is ``cc`` (constant). A map with a NaN
pixel gives NaN.

These metrics are entries of the metric registry (`augcam.metrics.registry`) marked ``opt_in``:
computing them by default would add columns to every existing study's tables, so they are not
among :data:`augcam.metrics.MAP_METRICS`, and a study opts in (``metrics.saliency``):

    compare_saliency(base_maps, other_maps, metrics=("cc", "kl", "entropy"))
    # -> {"cc": Tensor[N], "kl": Tensor[N], "entropy": Tensor[N] (of `other`), "entropy_base": Tensor[N]}

or, for an interactive session that wants them inside ``compare_maps``,
:func:`register_saliency_metrics` has ``cc`` and ``kl`` computed by every ``compare_maps`` call.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from augcam.metrics.maps import pearson
from augcam.metrics.registry import MetricView, enable_metric, register_metric
from augcam.registry import Registry

__all__ = [
    "SALIENCY_METRICS",
    "SINGLE_MAP_METRICS",
    "DEFAULT_KL_EPS",
    "cc",
    "kl",
    "entropy",
    "compare_saliency",
    "register_saliency_metrics",
]

DEFAULT_KL_EPS = float(np.finfo(np.float64).eps)

# Views of the metric registry. Pairwise: fn(base (N, P), other (N, P)) -> (N,), the opt-in ones.
# Single-map: fn(maps (N, P)) -> (N,).
SALIENCY_METRICS = MetricView("saliency metric", lambda spec: spec.kind == "map_pair" and spec.opt_in)
SINGLE_MAP_METRICS = MetricView("single-map metric", lambda spec: spec.kind == "single_map")


def _normalised_rows(maps: Tensor) -> Tensor:
    """float64 (N, P) rows divided by their sums; a row summing to 0 becomes all NaN."""
    if maps.dim() < 2:
        raise ValueError(f"maps must be batched as (N, H, W) or (N, P), got shape {tuple(maps.shape)}")
    rows = maps.flatten(1).double()
    if bool((rows < 0).any()):
        raise ValueError(
            f"saliency maps must be non-negative to be normalised to sum 1; found a minimum of {rows.min().item()}"
        )
    total = rows.sum(dim=1, keepdim=True)
    # 0 / 0 = NaN for an all-zero row is exactly the "undefined" we want to report.
    return rows / total


def _check_pair(base: Tensor, other: Tensor) -> None:
    if base.shape != other.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(base.shape)} and {tuple(other.shape)}")
    if base.device != other.device:
        raise ValueError(f"maps to compare are on different devices: {base.device} and {other.device}")


@register_metric("cc", kind="map_pair", display_name="CC", higher_is_better=True, opt_in=True)
def cc(base: Tensor, other: Tensor) -> Tensor:
    """Pearson correlation coefficient per map (augcam's ``pearson``; NaN for a constant map)."""
    return pearson(base, other)


@register_metric("kl", kind="map_pair", display_name="KL", higher_is_better=False, opt_in=True)
def kl(base: Tensor, other: Tensor, eps: float = DEFAULT_KL_EPS) -> Tensor:
    """KL(P, Q) = Σ Q_i log(ε + Q_i / (ε + P_i)) per map, P = ``base`` and Q = ``other`` normalised
    to sum 1. NaN where either map sums to 0."""
    _check_pair(base, other)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps > 0):
        # eps = 0 would give log(0) = -inf terms for Q_i = 0 and P_i = 0 divisions.
        raise ValueError(f"kl eps must be a finite number > 0, got {eps!r}")
    p = _normalised_rows(base)
    q = _normalised_rows(other)
    return (q * torch.log(eps + q / (eps + p))).sum(dim=1)


# Entropy measures one map, not closeness to the baseline; the figures orient it like a similarity.
@register_metric("entropy", kind="single_map", display_name="entropy", higher_is_better=True, opt_in=True)
def entropy(maps: Tensor) -> Tensor:
    """Shannon entropy (nats) per map normalised to sum 1; NaN for an all-zero map."""
    p = _normalised_rows(maps)
    # xlogy gives 0 · log 0 = 0 and keeps NaN rows NaN.
    return -torch.special.xlogy(p, p).sum(dim=1)


def compare_saliency(
    base: Tensor,
    other: Tensor,
    *,
    metrics: Sequence[str] = ("cc", "kl", "entropy"),
    kl_eps: float = DEFAULT_KL_EPS,
    chunk_size: int = 1024,
) -> dict[str, Tensor]:
    """The saliency metrics of the same N images from two models, image by image.

    ``metrics`` names pairwise metrics (SALIENCY_METRICS) and single-map ones (SINGLE_MAP_METRICS);
    a single-map metric ``m`` gives two results: ``m`` of ``other`` and ``m_base`` of ``base``.
    Returns float64 Tensor[N] per result on the maps' device, computed ``chunk_size`` maps at a time.
    """
    _check_pair(base, other)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    known: Registry[object] = Registry("saliency metric")
    known.update(SALIENCY_METRICS)
    known.update(SINGLE_MAP_METRICS)
    names = list(dict.fromkeys(metrics))
    for name in names:
        known.lookup(name, "compare_saliency")
    n = len(base)
    results: dict[str, Tensor] = {}
    for name in names:
        keys = [name, f"{name}_base"] if name in SINGLE_MAP_METRICS else [name]
        for key in keys:
            results[key] = torch.empty(n, dtype=torch.float64, device=base.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        x, y = base[start:stop], other[start:stop]
        for name in names:
            if name in SINGLE_MAP_METRICS:
                results[name][start:stop] = SINGLE_MAP_METRICS[name](y)
                results[f"{name}_base"][start:stop] = SINGLE_MAP_METRICS[name](x)
            elif name == "kl":
                results[name][start:stop] = kl(x, y, eps=kl_eps)
            else:
                results[name][start:stop] = SALIENCY_METRICS[name](x, y)
    return results


def register_saliency_metrics(names: Sequence[str] = ("cc", "kl")) -> None:
    """Opt in: put the pairwise saliency metrics `names` among MAP_METRICS, so that ``compare_maps``
    (and every study run afterwards in this process) reports them too. Never called by augcam."""
    for name in names:
        SALIENCY_METRICS.lookup(name, "register_saliency_metrics")
        enable_metric(name)
