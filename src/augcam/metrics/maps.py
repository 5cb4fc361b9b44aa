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
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Callable, Iterator, NamedTuple, Sequence

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
    return x.amax(dim=1).isnan()  # amax propagates NaN; one reduction, no (N, P) mask


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


def _host_shortcuts(device: torch.device) -> bool:
    """Whether the CPU-only shortcuts apply (NumPy's sort, data-dependent branches that would
    cost a device sync elsewhere). Tests turn them off to run the other devices' code on the CPU."""
    return device.type == "cpu"


def _float32_keys(rows: Tensor) -> Tensor:
    """int32 keys that order (and tie) exactly like the float32 values of `rows`."""
    values = rows.float().contiguous()
    bits = values.view(torch.int32)
    # Non-negative floats already order like their bit patterns. Most CAMs are ≥ 0 (ReLU), so on
    # the CPU (where the check costs no device sync) their bits are used as they are, with no
    # pass over the pixels. A negative bit pattern is a negative value or −0.0.
    if _host_shortcuts(bits.device) and bits.numel() and int(bits.amin()) >= 0:
        return bits
    # + 0.0 turns −0.0 into +0.0, which equals it but has other bits.
    bits = (values + 0.0).view(torch.int32)
    # IEEE floats order like sign-magnitude integers: flipping the magnitude bits of negative
    # values makes them order like two's-complement int32.
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _packed_keys(*blocks: Tensor) -> Tensor | None:
    """The CPU path of `_sorted_rows` before the sort: each row's int32 keys packed with their
    pixel positions into int64 (key in the high half, position in the low half), so that sorting
    the integers sorts the keys and carries the positions along. None where it does not apply."""
    p = blocks[0].shape[1]
    if blocks[0].dtype not in _EXACT_IN_FLOAT32 or not _host_shortcuts(blocks[0].device) or p >= 2**31:
        return None
    # Written block by block into one buffer and shifted in place: no concatenated copy of the
    # maps and no intermediate int64 tensors.
    packed = torch.empty((sum(len(block) for block in blocks), p), dtype=torch.int64)
    row = 0
    for block in blocks:
        packed[row: row + len(block)] = _float32_keys(block)
        row += len(block)
    return packed.bitwise_left_shift_(32).bitwise_or_(torch.arange(p, dtype=torch.int64))


def _unpacked(packed: Tensor) -> tuple[Tensor, Tensor]:
    # The sorted keys are only compared with their neighbours, so on a little-endian machine the
    # high halves are read in place, as a strided int32 view.
    keys = packed.view(torch.int32)[:, 1::2] if sys.byteorder == "little" else packed >> 32
    return keys, packed & 0xFFFFFFFF


def _sorted_rows(*blocks: Tensor) -> tuple[Tensor, Tensor]:
    """The rows of the blocks (stacked in order) sorted: each row's sort keys in ascending order
    and their original positions, (keys, order).

    Equal keys mean equal values, so ties can be read off the keys. CAMs are float32 (or
    narrower), whose values sort and tie like int32 keys; other dtypes are sorted as they are.

    On the CPU the packed keys (`_packed_keys`) are sorted by NumPy: its sort of plain integers
    is vectorised (x86-simd-sort, AVX2/AVX-512) and ~5× faster than torch's CPU sort of keys with
    indices, the largest single cost of `compare_maps` before. The array is a view of a tensor
    created here, and the result is read back as tensors without copies. On other devices
    torch.sort is fast (a segmented radix sort) and is used directly."""
    return next(_sorted_chunks([blocks]))


_sort_pools: dict[int, ThreadPoolExecutor] = {}  # by thread count, made when first needed


def _sorted_chunks(chunks: Sequence[Sequence[Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    """`_sorted_rows(*blocks)` for each chunk's blocks in turn; the CPU sorts of all chunks run
    first, over torch's thread count, and each chunk's result is unpacked only when it is reached.

    NumPy's sort releases the GIL, so a thread pool sorts several chunks at once. It pays only
    when many sorts run back to back: between torch operations libgomp's worker threads keep
    spinning on the other cores for a while, and a sort started then has to share its core."""
    packed = [_packed_keys(*blocks) for blocks in chunks]
    arrays = [keys.numpy() for keys in packed if keys is not None]
    threads = min(torch.get_num_threads(), len(arrays))
    if threads > 1:
        pool = _sort_pools.get(threads)
        if pool is None:
            pool = _sort_pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="augcam-sort")
        for future in [pool.submit(array.sort, axis=1) for array in arrays]:
            future.result()
    else:
        for array in arrays:
            array.sort(axis=1)
    del arrays
    for i, blocks in enumerate(chunks):
        keys, packed[i] = packed[i], None  # released as the caller moves on
        if keys is not None:
            yield _unpacked(keys)
        elif blocks[0].dtype not in _EXACT_IN_FLOAT32:
            yield torch.sort(torch.cat(list(blocks)), dim=1)
        else:
            yield torch.sort(torch.cat([_float32_keys(block) for block in blocks]), dim=1)


class _Ranks(NamedTuple):
    """One chunk of maps ranked once, shared by Spearman and every Overlap Rate ((N, P) each).

    ``centred``: 2 · (average rank) − (P + 1) of every pixel, in pixel order (int32).
    ``centred_sorted`` and ``first``: the same ranks, and the 0-based first sorted position of
    each pixel's run of equal values, both in ascending order of value (int32).
    ``order``: the pixel at each sorted position (int64)."""

    centred: Tensor
    centred_sorted: Tensor
    first: Tensor
    order: Tensor


def _rank_rows(*blocks: Tensor, sorted_rows: tuple[Tensor, Tensor] | None = None) -> _Ranks:
    """Rank every row of the blocks, stacked in order (average ranks for ties), sorting each row once.

    A run of equal values occupies sorted positions first..last and each of its members has
    1-based average rank (first + last) / 2 + 1, so the doubled, centred rank is the integer
    first + last + 1 − P = first + (first of the next run) − P. The runs are found by comparing
    sorted neighbours and numbered by a cumulative sum; each run's first position is scattered to
    a table indexed by run number, from which every pixel gathers its run's and the next run's
    first position (no reversed scan needed); the result is scattered back to pixel order.

    Integers keep Spearman accurate: centring needs no floating-point mean (the mean average rank
    is always (P + 1) / 2), and the products summed by the correlation are integers that float64
    holds exactly while the sums stay below 2**53 (maps up to ~300k pixels).
    """
    n, p = sum(len(block) for block in blocks), blocks[0].shape[1]
    device = blocks[0].device
    index_dtype = torch.int32 if p < 2**30 else torch.int64
    values, order = _sorted_rows(*blocks) if sorted_rows is None else sorted_rows
    starts = torch.ones((n, p), dtype=torch.bool, device=device)
    torch.ne(values[:, 1:], values[:, :-1], out=starts[:, 1:])
    del values
    # 1-based run number of every sorted position. (int32: a bool tensor's default int64 cumsum
    # is ~20× slower on the CPU. gather and scatter get int64 copies of their indices.)
    run = starts.cumsum(dim=1, dtype=index_dtype)
    pos = torch.arange(p, device=device, dtype=index_dtype).expand(n, p)
    # run_first[:, r] = first position of run r (r = 1..R), and P from column R + 1 on. Column 0
    # collects the writes of the positions that start no run (run · starts is 0 there; a
    # multiplication is several times faster than torch.where on the CPU) and is never read.
    run_first = torch.full((n, p + 2), p, dtype=index_dtype, device=device)
    run_first.scatter_(1, (run * starts).long(), pos)
    del starts
    run = run.long()
    first = run_first.gather(1, run)
    centred_sorted = run_first.gather(1, run.add_(1)).add_(first).sub_(p)
    del run, run_first
    centred = torch.empty_like(centred_sorted).scatter_(1, order, centred_sorted)
    return _Ranks(centred, centred_sorted, first, order)


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 1 of an (N, P) tensor, ties sharing their average rank
    (SciPy's ``rankdata(method="average")``), as float64. Computed batched, without a Python loop."""
    if x.dim() != 2:
        raise ValueError(f"average_ranks expects an (N, P) tensor, got shape {tuple(x.shape)}")
    return (_rank_rows(x).centred.double() + (x.shape[1] + 1)) * 0.5


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


def _overlap_rows(x: Tensor, y: Tensor, percentages: Sequence[float], ranks_x: _Ranks,
                  ranks_y: _Ranks) -> list[Tensor]:
    """Overlap Rate@Y of float64 (N, P) rows for several Y; `ranks_x`/`ranks_y` are their `_rank_rows`."""
    n, p = x.shape
    ks = [_region_size(y_, p) for y_ in percentages]
    if n == 0:
        return [torch.empty(0, dtype=torch.float64, device=x.device) for _ in ks]
    undefined = _has_nan(x) | _has_nan(y)
    # The region of a map is every pixel ≥ its k-th largest value t, i.e. every pixel whose rank
    # is at least t's: ranks are monotone in the value and equal for ties, so values tied with t
    # join the region (which can then exceed k pixels). In a map's own sorted order the region
    # is the suffix from the first position of t's run, and its size is P − that position. So
    # |A ∩ B| only needs, along x's sorted suffix, which pixels lie in y's region: one gather of
    # y's ranks at the columns of the widest region, instead of passes over every pixel.
    columns = [p - k for k in ks]
    first_x = ranks_x.first[:, columns]
    first_y = ranks_y.first[:, columns]
    start = int(first_x.min())
    y_ranks_along_x = ranks_y.centred.gather(1, ranks_x.order[:, start:])
    position = torch.arange(start, p, device=x.device, dtype=first_x.dtype)
    results = []
    for j, column in enumerate(columns):
        in_x = position >= first_x[:, j, None]
        in_y = y_ranks_along_x >= ranks_y.centred_sorted[:, column, None]
        inter = in_x.logical_and_(in_y).sum(dim=1)
        del in_x, in_y
        union = (2 * p - first_x[:, j] - first_y[:, j]) - inter  # ≥ k ≥ 1
        results.append((inter.double() / union.double()).masked_fill(undefined, math.nan))
    return results


def _spearman_rows(x: Tensor, y: Tensor, ranks_x: _Ranks, ranks_y: _Ranks) -> Tensor:
    undefined = _has_nan(x) | _has_nan(y)  # sort would silently rank NaN as the largest value
    # The ranks come already centred (as exact integers), so Pearson reduces to two norms and a
    # dot product.
    rx = ranks_x.centred.double()
    ry = ranks_y.centred.double()
    cov = torch.linalg.vecdot(rx, ry, dim=1)
    # A constant map has all ranks equal, i.e. a row of exact zeros: 0 / 0 = NaN, as it should be.
    r = (cov / (torch.linalg.vector_norm(rx, dim=1) * torch.linalg.vector_norm(ry, dim=1))).clamp(-1.0, 1.0)
    return r.masked_fill(undefined, math.nan)


# --- registered metrics ------------------------------------------------------------------------


@register_map_metric("mad")
def mad(base: Tensor, other: Tensor) -> Tensor:
    """Mean absolute difference per map."""
    x, y = _rows(base, other)
    return (x - y).abs_().mean(dim=1)


@register_map_metric("msd")
def msd(base: Tensor, other: Tensor) -> Tensor:
    """Mean squared difference per map."""
    x, y = _rows(base, other)
    return (x - y).square_().mean(dim=1)


@register_map_metric("pearson")
def pearson(base: Tensor, other: Tensor) -> Tensor:
    """Pearson correlation per map; NaN where either map is constant (zero variance)."""
    x, y = _rows(base, other)
    return _pearson_rows(x, y)


@register_map_metric("spearman")
def spearman(base: Tensor, other: Tensor) -> Tensor:
    """Spearman rank correlation per map (average ranks for ties); NaN for constant maps or NaN pixels."""
    x, y = _rows(base, other)
    return _spearman_rows(x, y, _rank_rows(base.flatten(1)), _rank_rows(other.flatten(1)))


def overlap_rate(base: Tensor, other: Tensor, percentage: float) -> Tensor:
    """Overlap Rate@Y per map: IoU of the two maps' top-Y % regions.

    In each map the region is every pixel ≥ t, t being the map's k-th largest value with
    k = ⌈Y · P / 100⌉; ties with t can make the region larger than Y %. The result is
    |A ∩ B| / |A ∪ B| as float64. Y must be in (0, 100] (ValueError otherwise); Y = 100 gives 1.
    """
    x, y = _rows(base, other)
    return _overlap_rows(x, y, [percentage], _rank_rows(base.flatten(1)), _rank_rows(other.flatten(1)))[0]


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


def compare_maps(base: Tensor, other: Tensor, *, overlap_percentages: Sequence[float] = (20, 10, 5),
                 metrics: Sequence[str] | None = None, chunk_size: int | None = None) -> dict[str, Tensor]:
    """Compare the CAMs of the same N images from two models, image by image.

    ``base`` and ``other`` are (N, H, W) or (N, P) tensors of any float dtype on one device.
    Returns one float64 Tensor[N] on that device per metric: every registered map metric
    (in registration order) followed by ``overlap_Y`` for each Y in ``overlap_percentages``;
    ``metrics`` restricts (and orders) the result to the names it lists. The maps are processed
    ``chunk_size`` at a time (None: as many as fit in `CPU_CHUNK_PIXELS` pixels on the CPU,
    `CHUNK_PIXELS` elsewhere), so peak memory depends on the chunk size, not on N.
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
        pixels = CPU_CHUNK_PIXELS if base.device.type == "cpu" else CHUNK_PIXELS
        chunk_size = max(1, pixels // flat_base.shape[1])
    # The built-in Spearman and the overlap regions share one ranking (one sort) per map.
    shared_spearman = "spearman" in names and MAP_METRICS["spearman"] is spearman
    needs_ranks = shared_spearman or bool(wanted_overlaps)

    if base.device.type == "cpu":
        _prime_cpu_allocator()
    spans = [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    # On the CPU the sorts of several chunks run together, spread over the threads (see
    # `_sorted_chunks`).
    pixels = chunk_size * flat_base.shape[1]
    group = max(1, SORT_GROUP_PIXELS // pixels) if _host_shortcuts(base.device) else 1
    for first in range(0, len(spans), group):
        group_spans = spans[first:first + group]
        sorted_spans = (_sorted_chunks([(flat_base[a:b], flat_other[a:b]) for a, b in group_spans])
                        if needs_ranks else iter([None] * len(group_spans)))
        for start, stop in group_spans:
            _compare_chunk(flat_base, flat_other, start, stop, next(sorted_spans), names, overlaps,
                           wanted_overlaps, shared_spearman, results)
    return results


def _compare_chunk(flat_base: Tensor, flat_other: Tensor, start: int, stop: int,
                   sorted_rows: tuple[Tensor, Tensor] | None, names: list[str], overlaps: dict[str, float],
                   wanted_overlaps: list[str], shared_spearman: bool, results: dict[str, Tensor]) -> None:
    """Every requested metric of maps start..stop into `results`; `sorted_rows` is the chunk's
    sorted keys (both sides, from `_sorted_chunks`), None when no metric needs ranks."""
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
        both = _rank_rows(flat_base[start:stop], flat_other[start:stop], sorted_rows=sorted_rows)
        del sorted_rows
        ranks_x = _Ranks(*(part[:m] for part in both))
        ranks_y = _Ranks(*(part[m:] for part in both))
        del both
    if wanted_overlaps:
        values = _overlap_rows(x, y, [overlaps[name] for name in wanted_overlaps], ranks_x, ranks_y)
        for name, value in zip(wanted_overlaps, values):
            results[name][start:stop] = value
    for name in names:
        if name in overlaps:
            continue
        if name == "spearman" and shared_spearman:
            value = _spearman_rows(x, y, ranks_x, ranks_y)
        else:
            value = MAP_METRICS[name](x, y)
        if not isinstance(value, Tensor) or value.shape != (m,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"map metric {name!r} returned {shape}; expected a tensor of shape "
                             f"({m},), one value per map")
        results[name][start:stop] = value
    del xy, x, y, ranks_x, ranks_y
