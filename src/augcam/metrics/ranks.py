"""Ranking the pixels of many maps at once: one sort per map, shared by Spearman and Overlap Rate.

Maps are rows of an (N, P) tensor. Each row is sorted once (`sorted_chunks`); `rank_rows` turns
the sorted keys into average ranks (ties sharing theirs) with integer arithmetic only, and the
result (`Ranks`) serves every rank-based metric of `augcam.metrics.maps`.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "Ranks",
    "average_ranks",
    "has_nan",
    "host_shortcuts",
    "overlap_key",
    "overlap_rows",
    "percentage_fraction",
    "rank_rows",
    "region_size",
    "sorted_chunks",
    "spearman_rows",
]

# Dtypes whose values float32 holds exactly, so their sort can use int32 keys.
_EXACT_IN_FLOAT32 = (torch.float32, torch.float16, torch.bfloat16)


def host_shortcuts(device: torch.device) -> bool:
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
    if host_shortcuts(bits.device) and bits.numel() and int(bits.amin()) >= 0:
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
    if blocks[0].dtype not in _EXACT_IN_FLOAT32 or not host_shortcuts(blocks[0].device) or p >= 2**31:
        return None
    # Written block by block into one buffer and shifted in place: no concatenated copy of the
    # maps and no intermediate int64 tensors.
    packed = torch.empty((sum(len(block) for block in blocks), p), dtype=torch.int64)
    row = 0
    for block in blocks:
        packed[row : row + len(block)] = _float32_keys(block)
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
    return next(sorted_chunks([blocks]))


_sort_pools: dict[int, ThreadPoolExecutor] = {}  # by thread count, made when first needed


def sorted_chunks(chunks: Sequence[Sequence[Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
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


class Ranks(NamedTuple):
    """One chunk of maps ranked once, shared by Spearman and every Overlap Rate ((N, P) each).

    ``centred``: 2 · (average rank) − (P + 1) of every pixel, in pixel order (int32).
    ``centred_sorted`` and ``first``: the same ranks, and the 0-based first sorted position of
    each pixel's run of equal values, both in ascending order of value (int32).
    ``order``: the pixel at each sorted position (int64)."""

    centred: Tensor
    centred_sorted: Tensor
    first: Tensor
    order: Tensor


def rank_rows(*blocks: Tensor, sorted_rows: tuple[Tensor, Tensor] | None = None) -> Ranks:
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
    return Ranks(centred, centred_sorted, first, order)


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 1 of an (N, P) tensor, ties sharing their average rank
    (SciPy's ``rankdata(method="average")``), as float64. Computed batched, without a Python loop."""
    if x.dim() != 2:
        raise ValueError(f"average_ranks expects an (N, P) tensor, got shape {tuple(x.shape)}")
    return (rank_rows(x).centred.double() + (x.shape[1] + 1)) * 0.5


# --- the rank-based metrics: Spearman and Overlap Rate@Y share one ranking per map -----------


def has_nan(x: Tensor) -> Tensor:
    return x.amax(dim=1).isnan()  # amax propagates NaN; one reduction, no (N, P) mask


def percentage_fraction(percentage: float) -> Fraction:
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


def region_size(percentage: float, pixels: int) -> int:
    """k = ⌈Y · P / 100⌉ computed exactly (20 % of 50 pixels is 10, not 11 from float error)."""
    return math.ceil(percentage_fraction(percentage) * pixels / 100)


def overlap_key(percentage: float) -> str:
    """The result name of Overlap Rate@Y: ``overlap_20`` for 20 or 20.0, ``overlap_7.5`` for 7.5."""
    return f"overlap_{float(percentage):g}"


def overlap_rows(x: Tensor, y: Tensor, percentages: Sequence[float], ranks_x: Ranks, ranks_y: Ranks) -> list[Tensor]:
    """Overlap Rate@Y of float64 (N, P) rows for several Y; `ranks_x`/`ranks_y` are their `rank_rows`."""
    n, p = x.shape
    ks = [region_size(y_, p) for y_ in percentages]
    if n == 0:
        return [torch.empty(0, dtype=torch.float64, device=x.device) for _ in ks]
    undefined = has_nan(x) | has_nan(y)
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


def spearman_rows(x: Tensor, y: Tensor, ranks_x: Ranks, ranks_y: Ranks) -> Tensor:
    undefined = has_nan(x) | has_nan(y)  # sort would silently rank NaN as the largest value
    # The ranks come already centred (as exact integers), so Pearson reduces to two norms and a
    # dot product.
    rx = ranks_x.centred.double()
    ry = ranks_y.centred.double()
    cov = torch.linalg.vecdot(rx, ry, dim=1)
    # A constant map has all ranks equal, i.e. a row of exact zeros: 0 / 0 = NaN, as it should be.
    r = (cov / (torch.linalg.vector_norm(rx, dim=1) * torch.linalg.vector_norm(ry, dim=1))).clamp(-1.0, 1.0)
    return r.masked_fill(undefined, math.nan)
