"""Pairwise comparison of two models' CAMs of the same images, one number per image.

Every map is flattened to a row of P pixels; all metrics work on whole batches (N, P) with
vectorised tensor ops on the inputs' device, never looping over images or pixels in Python.
Results are float64 so that they agree with SciPy's reference implementations to rounding.

Metrics (thesis definitions, P and Q are the two flattened maps of one image):

* ``mad``  — mean |P − Q|
* ``msd``  — mean (P − Q)²
* ``pearson`` — cov(P, Q) / (σP σQ)
* ``spearman`` — Pearson correlation of the rank vectors, ties getting their average rank
* ``overlap_Y`` — IoU of the two "top Y %" regions (see :func:`overlap_rate`)

A correlation of a constant map is undefined and reported as NaN, never as 0, so that callers can
count and report undefined values instead of silently averaging zeros. A map containing NaN gives
NaN for every metric.

Every metric is an entry of the metric registry (`augcam.metrics.registry`, kind ``map_pair``);
`register_map_metric` is the short spelling for a comparison of two maps, e.g.::

    @register_map_metric("max_abs_diff", display_name="max |Δ|", higher_is_better=False)
    def max_abs_diff(base, other):          # (N, P) float64 → (N,)
        return (base - other).abs().amax(dim=1)

The sorting and ranking shared by Spearman and Overlap Rate live in `augcam.metrics.ranks`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from augcam.metrics import ranks
from augcam.metrics.ranks import (
    Ranks,
    average_ranks,
    overlap_key,
    overlap_rows,
    percentage_fraction,
    rank_rows,
    spearman_rows,
)
from augcam.metrics.registry import MetricView, computed_by_default, register_metric
from augcam.registry import Registry

__all__ = [
    "MAP_METRICS",
    "register_map_metric",
    "compare_maps",
    "overlap_rate",
    "overlap_key",
    "mad",
    "msd",
    "pearson",
    "spearman",
    "average_ranks",
]

MapMetric = Callable[[Tensor, Tensor], Tensor]

# The map metrics every study computes (compare_maps's columns before the overlap family).
MAP_METRICS = MetricView(
    "map metric", lambda spec: spec.kind == "map_pair" and not spec.parametrised and computed_by_default(spec)
)


def register_map_metric(
    name: str, *, display_name: str | None = None, higher_is_better: bool = True
) -> Callable[[MapMetric], MapMetric]:
    """Decorator registering ``fn(base: Tensor[N, P], other: Tensor[N, P]) -> Tensor[N]`` as a
    metric of kind ``map_pair`` (display name: `name` unless given; direction: a similarity
    unless ``higher_is_better=False``).

    :func:`compare_maps` calls it on float64 chunks of at most ``chunk_size`` maps.
    """
    return register_metric(name, kind="map_pair", display_name=display_name or name, higher_is_better=higher_is_better)


# --- helpers ---------------------------------------------------------------------------------


def _rows(base: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """Both batches as float64 (N, P) rows, after checking that they describe the same images."""
    if base.shape != other.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(base.shape)} and {tuple(other.shape)}")
    if base.dim() < 2:
        raise ValueError(f"maps must be batched as (N, H, W) or (N, P), got shape {tuple(base.shape)}")
    if base.device != other.device:
        raise ValueError(f"maps to compare are on different devices: {base.device} and {other.device}")
    # float64 throughout: float32 → float64 is exact, so ties and orderings are unchanged while
    # the sums of centred products lose nothing (agreement with SciPy to ~1e-12).
    return base.flatten(1).double(), other.flatten(1).double()


def _is_constant(x: Tensor) -> Tensor:
    # Exact test, as SciPy does: the mean of a constant row is not always exactly that constant
    # in floating point, so "variance == 0" would miss some constant maps and return noise.
    # (max == min: two reductions, ~4× faster than comparing every pixel with the first; NaN
    # rows are not constant, as with the pixelwise test.)
    return x.amax(dim=1) == x.amin(dim=1)


def _pearson_rows(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise Pearson correlation of float64 (N, P) tensors; NaN where either row is constant."""
    xc = x - x.mean(dim=1, keepdim=True)
    yc = y - y.mean(dim=1, keepdim=True)
    cov = torch.linalg.vecdot(xc, yc, dim=1)
    # sqrt separately: the product of two large sums of squares could overflow.
    norm = torch.linalg.vector_norm(xc, dim=1) * torch.linalg.vector_norm(yc, dim=1)
    r = (cov / norm).clamp(-1.0, 1.0)  # rounding can step just outside [-1, 1]; clamp keeps NaN
    return r.masked_fill(_is_constant(x) | _is_constant(y), math.nan)


# --- registered metrics ------------------------------------------------------------------------


@register_map_metric("mad", display_name="MAD", higher_is_better=False)
def mad(base: Tensor, other: Tensor) -> Tensor:
    """Mean absolute difference per map."""
    x, y = _rows(base, other)
    return (x - y).abs_().mean(dim=1)


@register_map_metric("msd", display_name="MSD", higher_is_better=False)
def msd(base: Tensor, other: Tensor) -> Tensor:
    """Mean squared difference per map."""
    x, y = _rows(base, other)
    return (x - y).square_().mean(dim=1)


@register_map_metric("pearson", display_name="Pearson", higher_is_better=True)
def pearson(base: Tensor, other: Tensor) -> Tensor:
    """Pearson correlation per map; NaN where either map is constant (zero variance)."""
    x, y = _rows(base, other)
    return _pearson_rows(x, y)


@register_map_metric("spearman", display_name="Spearman", higher_is_better=True)
def spearman(base: Tensor, other: Tensor) -> Tensor:
    """Spearman rank correlation per map (average ranks for ties); NaN for constant maps or NaN pixels."""
    x, y = _rows(base, other)
    return spearman_rows(x, y, rank_rows(base.flatten(1)), rank_rows(other.flatten(1)))


def overlap_rate(base: Tensor, other: Tensor, percentage: float) -> Tensor:
    """Overlap Rate@Y per map: IoU of the two maps' top-Y % regions.

    In each map the region is every pixel ≥ t, t being the map's k-th largest value with
    k = ⌈Y · P / 100⌉; ties with t can make the region larger than Y %. The result is
    |A ∩ B| / |A ∪ B| as float64. Y must be in (0, 100] (ValueError otherwise); Y = 100 gives 1.
    """
    x, y = _rows(base, other)
    return overlap_rows(x, y, [percentage], rank_rows(base.flatten(1)), rank_rows(other.flatten(1)))[0]


# One column per percentage of `compare_maps`'s overlap_percentages, named by `overlap_key`.
register_metric("overlap", kind="map_pair", display_name="Overlap Rate@{}%", higher_is_better=True, parametrised=True)(
    overlap_rate
)


# --- the batch entry point ----------------------------------------------------------------------


def _prime_cpu_allocator() -> None:
    """Let glibc's malloc keep the memory freed between chunks instead of returning it.

    Each group of chunks allocates and frees some 60 MB of tensors. By default glibc gives free
    memory at the top of the heap back to the OS once it exceeds its trim threshold (2 × the
    largest block freed from mmap so far, i.e. a few MB here), so every chunk page-faulted its
    memory back in: ~55k minor faults and ~0.1 s of system time per 200 maps at 224², a third of
    the wall time. glibc raises its mmap and trim thresholds by itself when a large mmap'ed block
    is freed (mallopt(3), "dynamic mmap threshold", for blocks up to 32 MiB); allocating and
    freeing one 31 MiB block once does that (thresholds 31 / 62 MiB), as any workload with such
    temporaries would, without fixing any setting. Elsewhere it is a harmless allocation."""
    global _allocator_primed
    if not _allocator_primed:
        torch.empty(2**25 - 2**20, dtype=torch.uint8)  # freed at once
        _allocator_primed = True


_allocator_primed = False


# Pixels per chunk when compare_maps picks the chunk size. The working set is about 100 bytes
# per pixel (float64 rows, sort keys with positions, int32 ranks for both maps). On the CPU every
# metric is a few passes over memory, so a chunk whose working set stays in the last-level cache
# (2**18 pixels ≈ 26 MB: 334 maps at 28², 5 at 224²) is about twice as fast as one of 2**21
# pixels, while each chunk is still large enough for the per-call overhead not to matter. On a
# GPU bigger chunks amortise kernel launches (2**21 pixels ≈ 200 MB).
CPU_CHUNK_PIXELS = 2**18
CHUNK_PIXELS = 2**21
# Pixels per side whose sorts run together on the CPU: ~32 MB of sort keys for both sides.
SORT_GROUP_PIXELS = 2**21


def compare_maps(
    base: Tensor,
    other: Tensor,
    *,
    overlap_percentages: Sequence[float] = (20, 10, 5),
    metrics: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Compare the CAMs of the same N images from two models, image by image.

    ``base`` and ``other`` are (N, H, W) or (N, P) tensors of any float dtype on one device.
    Returns one float64 Tensor[N] on that device per metric: every registered map metric
    (in registration order) followed by ``overlap_Y`` for each Y in ``overlap_percentages``;
    ``metrics`` restricts (and orders) the result to the names it lists. The maps are processed
    ``chunk_size`` at a time (None: as many as fit in `CPU_CHUNK_PIXELS` pixels on the CPU,
    `CHUNK_PIXELS` elsewhere), so peak memory depends on the chunk size, not on N.
    """
    if base.shape != other.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(base.shape)} and {tuple(other.shape)}")
    if base.dim() < 2:
        raise ValueError(f"maps must be batched as (N, H, W) or (N, P), got shape {tuple(base.shape)}")
    if base.device != other.device:
        raise ValueError(f"maps to compare are on different devices: {base.device} and {other.device}")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")

    # Validate every percentage up front, so a bad one fails before any work is done.
    overlaps: dict[str, float] = {}
    for percentage in overlap_percentages:
        percentage_fraction(percentage)
        key = overlap_key(percentage)
        if key in overlaps:
            raise ValueError(f"overlap percentage {percentage!r} is given twice")
        overlaps[key] = percentage
    clash = set(overlaps) & set(MAP_METRICS)
    if clash:
        raise ValueError(f"registered map metric(s) {sorted(clash)} clash with overlap result names")

    # Resolve the requested names with the registry's error message (lists the valid names).
    available: Registry[object] = Registry("map metric")
    available.update(MAP_METRICS)
    available.update(overlaps)
    names = list(available) if metrics is None else list(dict.fromkeys(metrics))
    for name in names:
        available.lookup(name, "compare_maps")
    wanted_overlaps = [name for name in names if name in overlaps]

    n = len(base)
    flat_base = base.flatten(1)
    flat_other = other.flatten(1)
    if flat_base.shape[1] == 0:
        raise ValueError(f"maps have no pixels: shape {tuple(base.shape)}")
    results = {name: torch.empty(n, dtype=torch.float64, device=base.device) for name in names}
    if chunk_size is None:
        pixels = CPU_CHUNK_PIXELS if base.device.type == "cpu" else CHUNK_PIXELS
        chunk_size = max(1, pixels // flat_base.shape[1])
    # The built-in Spearman and the overlap regions share one ranking (one sort) per map.
    shared_spearman = "spearman" in names and MAP_METRICS["spearman"] is spearman
    needs_ranks = shared_spearman or bool(wanted_overlaps)

    if base.device.type == "cpu":
        _prime_cpu_allocator()
    spans = [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    # On the CPU the sorts of several chunks run together, spread over the threads (see
    # `ranks.sorted_chunks`).
    pixels = chunk_size * flat_base.shape[1]
    group = max(1, SORT_GROUP_PIXELS // pixels) if ranks.host_shortcuts(base.device) else 1
    for first in range(0, len(spans), group):
        group_spans = spans[first : first + group]
        sorted_spans = (
            ranks.sorted_chunks([(flat_base[a:b], flat_other[a:b]) for a, b in group_spans])
            if needs_ranks
            else iter([None] * len(group_spans))
        )
        for start, stop in group_spans:
            _compare_chunk(
                flat_base,
                flat_other,
                start,
                stop,
                next(sorted_spans),
                names,
                overlaps,
                wanted_overlaps,
                shared_spearman,
                results,
            )
    return results


def _compare_chunk(
    flat_base: Tensor,
    flat_other: Tensor,
    start: int,
    stop: int,
    sorted_rows: tuple[Tensor, Tensor] | None,
    names: list[str],
    overlaps: dict[str, float],
    wanted_overlaps: list[str],
    shared_spearman: bool,
    results: dict[str, Tensor],
) -> None:
    """Every requested metric of maps start..stop into `results`; `sorted_rows` is the chunk's
    sorted keys (both sides, from `ranks.sorted_chunks`), None when no metric needs ranks."""
    m = stop - start
    # Converted per chunk (a float64 copy of all N maps would defeat the chunking), both
    # sides into one buffer.
    xy = torch.empty((2 * m, flat_base.shape[1]), dtype=torch.float64, device=flat_base.device)
    xy[:m] = flat_base[start:stop]
    xy[m:] = flat_other[start:stop]
    x, y = xy[:m], xy[m:]
    ranks_x = ranks_y = None
    if sorted_rows is not None:
        # Both maps of every pair ranked in one call: one sort and one pass per step for
        # the chunk, and twice the rows to share between threads.
        both = rank_rows(flat_base[start:stop], flat_other[start:stop], sorted_rows=sorted_rows)
        del sorted_rows
        ranks_x = Ranks(*(part[:m] for part in both))
        ranks_y = Ranks(*(part[m:] for part in both))
        del both
    if wanted_overlaps:
        values = overlap_rows(x, y, [overlaps[name] for name in wanted_overlaps], ranks_x, ranks_y)
        for name, value in zip(wanted_overlaps, values):
            results[name][start:stop] = value
    for name in names:
        if name in overlaps:
            continue
        if name == "spearman" and shared_spearman:
            value = spearman_rows(x, y, ranks_x, ranks_y)
        else:
            value = MAP_METRICS[name](x, y)
        if not isinstance(value, Tensor) or value.shape != (m,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"map metric {name!r} returned {shape}; expected a tensor of shape ({m},), one value per map"
            )
        results[name][start:stop] = value
    del xy, x, y, ranks_x, ranks_y
