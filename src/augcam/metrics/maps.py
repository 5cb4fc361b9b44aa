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

Users add a metric in a few lines::

    @register_map_metric("max_abs_diff")
    def max_abs_diff(base, other):          # (N, P) float64 → (N,)
        return (base - other).abs().amax(dim=1)
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Callable, Sequence

import torch
from torch import Tensor

from augcam.registry import Registry

__all__ = ["MAP_METRICS", "register_map_metric", "compare_maps", "overlap_rate", "overlap_key",
           "mad", "msd", "pearson", "spearman", "average_ranks"]

MapMetric = Callable[[Tensor, Tensor], Tensor]

MAP_METRICS: Registry[MapMetric] = Registry("map metric")


def register_map_metric(name: str) -> Callable[[MapMetric], MapMetric]:
    """Decorator registering ``fn(base: Tensor[N, P], other: Tensor[N, P]) -> Tensor[N]``.

    :func:`compare_maps` calls it on float64 chunks of at most ``chunk_size`` maps.
    """
    return MAP_METRICS.register(name)


# --- helpers ---------------------------------------------------------------------------------


def _rows(base: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """Both batches as float64 (N, P) rows, after checking that they describe the same images."""
    if base.shape != other.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(base.shape)} "
                         f"and {tuple(other.shape)}")
    if base.dim() < 2:
        raise ValueError(f"maps must be batched as (N, H, W) or (N, P), got shape {tuple(base.shape)}")
    if base.device != other.device:
        raise ValueError(f"maps to compare are on different devices: {base.device} and {other.device}")
    # float64 throughout: float32 → float64 is exact, so ties and orderings are unchanged while
    # the sums of centred products lose nothing (agreement with SciPy to ~1e-12).
    return base.flatten(1).double(), other.flatten(1).double()


# Dtypes whose values float32 holds exactly, so their sort can use int32 keys.
_EXACT_IN_FLOAT32 = (torch.float32, torch.float16, torch.bfloat16)


def _has_nan(x: Tensor) -> Tensor:
    return torch.isnan(x).any(dim=1)


def _is_constant(x: Tensor) -> Tensor:
    # Exact test, as SciPy does: the mean of a constant row is not always exactly that constant
    # in floating point, so "variance == 0" would miss some constant maps and return noise.
    return (x == x[:, :1]).all(dim=1)


def _pearson_rows(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise Pearson correlation of float64 (N, P) tensors; NaN where either row is constant."""
    xc = x - x.mean(dim=1, keepdim=True)
    yc = y - y.mean(dim=1, keepdim=True)
    cov = torch.linalg.vecdot(xc, yc, dim=1)
    # sqrt separately: the product of two large sums of squares could overflow.
    norm = torch.linalg.vector_norm(xc, dim=1) * torch.linalg.vector_norm(yc, dim=1)
    r = (cov / norm).clamp(-1.0, 1.0)  # rounding can step just outside [-1, 1]; clamp keeps NaN
    return r.masked_fill(_is_constant(x) | _is_constant(y), math.nan)


def _sorted_rows(x: Tensor, source: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Each row's sort keys in ascending order and the original positions, (keys, order).

    Equal keys mean equal values, so ties can be read off the keys. Sorting dominates Spearman and
    Overlap Rate, so it is done once per map and shared. `source` is the same rows in the caller's
    original dtype: CAMs are float32, and sorting their bit patterns as int32 (ordered like the
    floats after the sign fix-up below) is about twice as fast as sorting the float64 copy."""
    narrow = source if source is not None and source.dtype in _EXACT_IN_FLOAT32 else None
    if narrow is None:
        return torch.sort(x, dim=1)
    # + 0.0 turns −0.0 into +0.0, which equals it but has other bits.
    bits = (narrow.float() + 0.0).view(torch.int32)
    # IEEE floats order like sign-magnitude integers: flipping the magnitude bits of negative
    # values makes them order like two's-complement int32.
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return torch.sort(keys, dim=1)


def _centred_double_ranks(x: Tensor, sorted_rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """2 · (average rank) − (P + 1) for every pixel, as exact integers (int32 for P < 2**30).

    Sorts each row once (or uses `sorted_rows` from `_sorted_rows`); a run of equal values
    occupies sorted positions first..last and each of its members has 1-based average rank
    (first + last) / 2 + 1, so the doubled, centred rank is the integer first + last + 1 − P. The
    runs are found by comparing sorted neighbours; `first` is carried rightwards from each run
    start with cummax, `last` leftwards from each run end with a reversed cummin; the result is
    scattered back to the original pixel positions.

    Integers keep Spearman accurate: centring needs no floating-point mean (the mean average rank
    is always (P + 1) / 2), and the products summed by the correlation are integers that float64
    holds exactly while the sums stay below 2**53 (maps up to ~300k pixels).
    """
    n, p = x.shape
    index_dtype = torch.int32 if p < 2**30 else torch.int64
    values, order = _sorted_rows(x) if sorted_rows is None else sorted_rows
    starts = torch.ones((n, p), dtype=torch.bool, device=x.device)
    torch.ne(values[:, 1:], values[:, :-1], out=starts[:, 1:])
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]  # a run ends just before the next one starts
    pos = torch.arange(p, device=x.device, dtype=index_dtype)
    first = torch.where(starts, pos, 0).cummax(dim=1).values
    del starts
    last = torch.where(ends, pos, p - 1).flip(1).cummin(dim=1).values.flip(1)
    del ends
    centred = first.add_(last).add_(1 - p)
    del last
    return torch.empty_like(centred).scatter_(1, order, centred)


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 1 of an (N, P) tensor, ties sharing their average rank
    (SciPy's ``rankdata(method="average")``), as float64. Computed batched, without a Python loop."""
    if x.dim() != 2:
        raise ValueError(f"average_ranks expects an (N, P) tensor, got shape {tuple(x.shape)}")
    return (_centred_double_ranks(x).double() + (x.shape[1] + 1)) * 0.5


def _percentage_fraction(percentage: float) -> Fraction:
    """Exact value of a percentage as written (10.1 means 101/10, not the nearest binary float)."""
    if isinstance(percentage, bool) or not isinstance(percentage, numbers.Real):
        raise ValueError(f"overlap percentage must be a number in (0, 100], got {percentage!r}")
    if isinstance(percentage, numbers.Integral):
        value = Fraction(int(percentage))
    else:
        as_float = float(percentage)
        if not math.isfinite(as_float):
            raise ValueError(f"overlap percentage must be in (0, 100], got {percentage!r}")
        # repr gives the shortest decimal that round-trips, i.e. what the user wrote.
        value = Fraction(repr(as_float))
    if not 0 < value <= 100:
        raise ValueError(f"overlap percentage must be in (0, 100], got {percentage!r}")
    return value


def _region_size(percentage: float, pixels: int) -> int:
    """k = ⌈Y · P / 100⌉ computed exactly (20 % of 50 pixels is 10, not 11 from float error)."""
    return math.ceil(_percentage_fraction(percentage) * pixels / 100)


def overlap_key(percentage: float) -> str:
    """The result name of Overlap Rate@Y: ``overlap_20`` for 20 or 20.0, ``overlap_7.5`` for 7.5."""
    return f"overlap_{float(percentage):g}"


def _overlap_rows(x: Tensor, y: Tensor, percentages: Sequence[float],
                  sorted_x: tuple[Tensor, Tensor] | None = None,
                  sorted_y: tuple[Tensor, Tensor] | None = None) -> list[Tensor]:
    """Overlap Rate@Y of float64 (N, P) rows for several Y; `sorted_x`/`sorted_y` come from
    `_sorted_rows` (computed here if None)."""
    n, p = x.shape
    ks = [_region_size(y_, p) for y_ in percentages]
    if n == 0:
        return [torch.empty(0, dtype=torch.float64, device=x.device) for _ in ks]
    undefined = _has_nan(x) | _has_nan(y)
    # Thresholds in ascending order: the k-th largest value (sorted position P − k) for each k,
    # largest k first. A pixel's level is the number of thresholds it reaches (≥, so values tied
    # with a threshold join the region, which can then exceed k pixels): it lies in the region of
    # the j-th threshold iff level > j. One pass per map then serves every Y.
    by_k = sorted(range(len(ks)), key=lambda i: -ks[i])
    columns = torch.tensor([p - ks[i] for i in by_k], device=x.device)
    levels = []
    for rows, sorted_rows in ((x, sorted_x), (y, sorted_y)):
        order = (_sorted_rows(rows) if sorted_rows is None else sorted_rows)[1]
        thresholds = rows.gather(1, order[:, columns])
        levels.append(torch.searchsorted(thresholds, rows, right=True, out_int32=True))
    both = torch.minimum(levels[0], levels[1]).long()  # in both regions of thresholds < level
    either = torch.maximum(levels[0], levels[1]).long()
    del levels
    histogram_shape = (n, len(ks) + 1)
    ones = torch.ones((), dtype=torch.int64, device=x.device).expand(n, p)
    # count(level > j) = Σ_{l > j} histogram[l]: reverse cumulative sums of the level histograms.
    inter = torch.zeros(histogram_shape, dtype=torch.int64, device=x.device).scatter_add_(1, both, ones)
    union = torch.zeros(histogram_shape, dtype=torch.int64, device=x.device).scatter_add_(1, either, ones)
    inter = inter.flip(1).cumsum(1).flip(1)[:, 1:]
    union = union.flip(1).cumsum(1).flip(1)[:, 1:]  # ≥ k ≥ 1, never a division by zero
    results = [torch.empty(0)] * len(ks)
    for j, i in enumerate(by_k):
        results[i] = (inter[:, j].double() / union[:, j].double()).masked_fill(undefined, math.nan)
    return results


def _spearman_rows(x: Tensor, y: Tensor, sorted_x: tuple[Tensor, Tensor] | None = None,
                   sorted_y: tuple[Tensor, Tensor] | None = None) -> Tensor:
    undefined = _has_nan(x) | _has_nan(y)  # sort would silently rank NaN as the largest value
    # The ranks come already centred (as exact integers), so Pearson reduces to two norms and a
    # dot product.
    rx = _centred_double_ranks(x, sorted_x).double()
    ry = _centred_double_ranks(y, sorted_y).double()
    cov = torch.linalg.vecdot(rx, ry, dim=1)
    # A constant map has all ranks equal, i.e. a row of exact zeros: 0 / 0 = NaN, as it should be.
    r = (cov / (torch.linalg.vector_norm(rx, dim=1) * torch.linalg.vector_norm(ry, dim=1))).clamp(-1.0, 1.0)
    return r.masked_fill(undefined, math.nan)


# --- registered metrics ------------------------------------------------------------------------


@register_map_metric("mad")
def mad(base: Tensor, other: Tensor) -> Tensor:
    """Mean absolute difference per map."""
    x, y = _rows(base, other)
    return (x - y).abs().mean(dim=1)


@register_map_metric("msd")
def msd(base: Tensor, other: Tensor) -> Tensor:
    """Mean squared difference per map."""
    x, y = _rows(base, other)
    return (x - y).square().mean(dim=1)


@register_map_metric("pearson")
def pearson(base: Tensor, other: Tensor) -> Tensor:
    """Pearson correlation per map; NaN where either map is constant (zero variance)."""
    x, y = _rows(base, other)
    return _pearson_rows(x, y)


@register_map_metric("spearman")
def spearman(base: Tensor, other: Tensor) -> Tensor:
    """Spearman rank correlation per map (average ranks for ties); NaN for constant maps or NaN pixels."""
    x, y = _rows(base, other)
    return _spearman_rows(x, y)


def overlap_rate(base: Tensor, other: Tensor, percentage: float) -> Tensor:
    """Overlap Rate@Y per map: IoU of the two maps' top-Y % regions.

    In each map the region is every pixel ≥ t, t being the map's k-th largest value with
    k = ⌈Y · P / 100⌉; ties with t can make the region larger than Y %. The result is
    |A ∩ B| / |A ∪ B| as float64. Y must be in (0, 100] (ValueError otherwise); Y = 100 gives 1.
    """
    x, y = _rows(base, other)
    return _overlap_rows(x, y, [percentage])[0]


# --- the batch entry point ----------------------------------------------------------------------


# Pixels per chunk when compare_maps picks the chunk size: the working set is about 100 bytes
# per pixel (float64 rows, a sort's values and int64 positions, int32 ranks for both maps), so
# 2**21 pixels keep it near 200 MB whatever the map size (2674 maps at 28², 41 at 224²), while
# each chunk stays large enough for the per-call overhead not to matter.
CHUNK_PIXELS = 2**21


def compare_maps(base: Tensor, other: Tensor, *, overlap_percentages: Sequence[float] = (20, 10, 5),
                 metrics: Sequence[str] | None = None, chunk_size: int | None = None) -> dict[str, Tensor]:
    """Compare the CAMs of the same N images from two models, image by image.

    ``base`` and ``other`` are (N, H, W) or (N, P) tensors of any float dtype on one device.
    Returns one float64 Tensor[N] on that device per metric: every registered map metric
    (in registration order) followed by ``overlap_Y`` for each Y in ``overlap_percentages``;
    ``metrics`` restricts (and orders) the result to the names it lists. The maps are processed
    ``chunk_size`` at a time (None: as many as fit in `CHUNK_PIXELS` pixels), so peak memory
    depends on the chunk size, not on N.
    """
    if base.shape != other.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(base.shape)} "
                         f"and {tuple(other.shape)}")
    if base.dim() < 2:
        raise ValueError(f"maps must be batched as (N, H, W) or (N, P), got shape {tuple(base.shape)}")
    if base.device != other.device:
        raise ValueError(f"maps to compare are on different devices: {base.device} and {other.device}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")

    # Validate every percentage up front, so a bad one fails before any work is done.
    overlaps: dict[str, float] = {}
    for percentage in overlap_percentages:
        _percentage_fraction(percentage)
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
        chunk_size = max(1, CHUNK_PIXELS // flat_base.shape[1])
    # The built-in Spearman and the overlap thresholds share one sort per map.
    shared_spearman = "spearman" in names and MAP_METRICS["spearman"] is spearman
    needs_sort = shared_spearman or bool(wanted_overlaps)

    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        # Converted per chunk: a float64 copy of all N maps would defeat the chunking.
        x = flat_base[start:stop].double()
        y = flat_other[start:stop].double()
        sorted_x = _sorted_rows(x, flat_base[start:stop]) if needs_sort else None
        sorted_y = _sorted_rows(y, flat_other[start:stop]) if needs_sort else None
        if wanted_overlaps:
            values = _overlap_rows(x, y, [overlaps[name] for name in wanted_overlaps], sorted_x, sorted_y)
            for name, value in zip(wanted_overlaps, values):
                results[name][start:stop] = value
        for name in names:
            if name in overlaps:
                continue
            if name == "spearman" and shared_spearman:
                value = _spearman_rows(x, y, sorted_x, sorted_y)
            else:
                value = MAP_METRICS[name](x, y)
            if not isinstance(value, Tensor) or value.shape != (stop - start,):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"map metric {name!r} returned {shape}; expected a tensor of shape "
                                 f"({stop - start},), one value per map")
            results[name][start:stop] = value
        del x, y, sorted_x, sorted_y
    return results
