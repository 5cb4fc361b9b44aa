"""Map-metric throughput: augcam's `compare_maps` over a whole test set vs a per-image SciPy/NumPy loop.

    .venv/bin/python benchmarks/bench_metrics.py                 # CPU: 2000 maps at 28², 200 at 224²
    .venv/bin/python benchmarks/bench_metrics.py --device cuda   # GPU for augcam (the loop stays on CPU)

The maps look like real CAMs: random non-negative 7×7 maps, half of each ReLU'd to zero, upsampled
with `augcam.cams.upsample` — so they have large flat zero areas (ties for Spearman and for the
overlap thresholds). Both sides compute MAD, MSD, Pearson, Spearman (average ranks for ties) and
Overlap Rate@{20, 10, 5}; the values are asserted equal (1e-9, NaN in the same places). The peak
memory of `compare_maps` above its inputs is measured in a fresh child process (Linux: VmHWM after
resetting it; CUDA: max_memory_allocated), for the default chunking and for one chunk of all maps.
"""

from __future__ import annotations

import multiprocessing
import sys
import warnings
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import numpy as np
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_times, machine, parse_args, print_table

from augcam.cams import upsample
from augcam.metrics import compare_maps

PERCENTAGES = (20, 10, 5)
KEYS = ["mad", "msd", "pearson", "spearman", "overlap_20", "overlap_10", "overlap_5"]
# (side, maps on CPU, maps on GPU)
CASES = [(28, 2000, 20000), (224, 200, 2000)]


def cam_like_maps(count: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    raw = torch.relu(torch.randn(2, count, 7, 7, generator=generator))
    return upsample(raw[0], (side, side)), upsample(raw[1], (side, side))


def reference_loop(base: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    """One image at a time, with the tools a user would reach for (NumPy, SciPy)."""
    n, p = base.shape
    ks = [int((Decimal(y) * p / 100).to_integral_value(rounding=ROUND_CEILING)) for y in PERCENTAGES]
    out = {key: np.empty(n) for key in KEYS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps: SciPy warns and returns NaN, as augcam does
        for i in range(n):
            a, b = base[i], other[i]
            out["mad"][i] = np.mean(np.abs(a - b))
            out["msd"][i] = np.mean((a - b) ** 2)
            out["pearson"][i] = scipy.stats.pearsonr(a, b).statistic
            out["spearman"][i] = scipy.stats.spearmanr(a, b).statistic
            for y, k in zip(PERCENTAGES, ks):
                region_a = a >= np.partition(a, p - k)[p - k]
                region_b = b >= np.partition(b, p - k)[p - k]
                out[f"overlap_{y}"][i] = np.sum(region_a & region_b) / np.sum(region_a | region_b)
    return out


def _peak_child(side: int, count: int, device: str, chunk_size: int | None, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    base, other = cam_like_maps(count, side, seed=0)
    base, other = base.to(device), other.to(device)
    compare_maps(base[:2], other[:2])  # lazy initialisation outside the measurement
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        compare_maps(base, other, chunk_size=chunk_size)
        torch.cuda.synchronize()
        queue.put(torch.cuda.max_memory_allocated() - before)
        return
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM (the peak resident size) to the current size

    def status(field: str) -> int:
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

    before = status("VmRSS:")
    compare_maps(base, other, chunk_size=chunk_size)
    queue.put(status("VmHWM:") - before)


def peak_memory(side: int, count: int, device: str, chunk_size: int | None, threads: int) -> int | None:
    """Bytes by which compare_maps raised the peak memory, measured in a fresh process."""
    if not device.startswith("cuda") and not Path("/proc/self/clear_refs").exists():
        return None
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_peak_child, args=(side, count, device, chunk_size, threads, queue))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"peak-memory child process failed with exit code {child.exitcode}")
    return queue.get()


def main() -> None:
    args = parse_args(__doc__, "map")
    device = args.device
    print(f"# compare_maps throughput on {machine(device)}\n")

    rows = []
    for side, cpu_count, gpu_count in CASES:
        count = max(2, int((gpu_count if device.type == "cuda" else cpu_count) * args.scale))
        base, other = cam_like_maps(count, side, seed=0)
        flat_base = base.flatten(1).double().numpy()
        flat_other = other.flatten(1).double().numpy()
        base, other = base.to(device), other.to(device)
        compare_maps(base[:2], other[:2])  # warm-up

        # In turns; the device is synchronised around both (the loop itself runs on the CPU).
        (reference_time, expected), (ours_time, ours) = best_times(
            [lambda: reference_loop(flat_base, flat_other), lambda: compare_maps(base, other)], device, args.repeats
        )
        for key in KEYS:
            got = ours[key].cpu().numpy()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected[key]), err_msg=key)
            np.testing.assert_allclose(got, expected[key], rtol=0, atol=1e-9, equal_nan=True, err_msg=key)
        threads = torch.get_num_threads()
        chunked = peak_memory(side, count, str(device), None, threads)
        whole = peak_memory(side, count, str(device), count, threads)
        mib = lambda b: "n/a" if b is None else f"{b / 2**20:.0f} MiB"  # noqa: E731
        ties = float((base == 0).float().mean())
        rows.append(
            [
                f"{side}×{side}",
                str(count),
                f"{ties:.0%}",
                f"{count / reference_time:.0f}",
                f"{count / ours_time:.0f}",
                f"{reference_time / ours_time:.1f}×",
                mib(chunked),
                mib(whole),
            ]
        )
        print(f"  {side}×{side}: done", file=sys.stderr)

    print_table(
        [
            "maps",
            "pairs",
            "zero pixels",
            "SciPy loop pairs/s",
            "augcam pairs/s",
            "ratio",
            "augcam peak (default chunks)",
            "peak (one chunk)",
        ],
        rows,
    )
    print("\nall seven metrics equal the SciPy/NumPy loop within 1e-9 (asserted), NaN in the same places")


if __name__ == "__main__":
    main()
