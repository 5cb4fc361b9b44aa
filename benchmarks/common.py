"""Shared helpers of the benchmarks: timing, model preparation, tables, the machine's description."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from augcam.models import build_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Shortest wall time of `repeats` runs (the machine may be shared: the minimum is the run
    least disturbed by other work) and the result of the last run."""
    return best_times([run], device, repeats)[0]


def best_times(runs: list[Callable[[], object]], device: torch.device, repeats: int) -> list[tuple[float, object]]:
    """`best_time` of several runs measured in turns (a, b, a, b, …), so that a slow spell of a
    shared machine falls on all of them alike rather than on whichever happened to run then."""
    best = [float("inf")] * len(runs)
    results: list[object] = [None] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            sync(device)
            start = time.perf_counter()
            results[i] = run()
            sync(device)
            best[i] = min(best[i], time.perf_counter() - start)
    return list(zip(best, results))


def calibrated_model(name: str, channels: int, side: int, num_classes: int, device: torch.device) -> torch.nn.Module:
    """A freshly initialised model with BatchNorm statistics measured on random images.

    With the initial statistics EfficientNet-B0's last stage outputs ~1e-13 in eval mode and every
    CAM is ≈ 0, so maps "equal within 1e-5" would prove nothing; measured statistics give
    activations of order 1, as in a trained model. The cost of a CAM does not depend on this."""
    model = build_model(name, channels, num_classes, init_seed=0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        model(torch.randn(8, channels, side, side, generator=generator))
    return model.eval().to(device)


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass  # not Linux: platform's description stays
    text = (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, Python {platform.python_version()}"
    )
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A GitHub-flavoured Markdown table, so the output pastes into docs/benchmarks.md."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def parse_args(
    description: str,
    counted: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """The options every benchmark takes (and the script's own, from `add_arguments`); sets
    torch's thread count and adds `args.device`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--scale", type=float, default=1.0, help=f"multiply the {counted} counts (quick runs: 0.1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = torch.device(args.device)
    return args


def timed_command(argv: list[str]) -> tuple[float, str]:
    """Run `python -m augcam ARGV` in a fresh process; its wall time and the load average before →
    after (on a shared machine the figure is the run's, not the code's). Exits on failure."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "augcam", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"augcam {' '.join(argv[:2])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return wall, f"{load_before:.1f} → {os.getloadavg()[0]:.1f}"


def print_target_verdict(walls: list[float], target_seconds: float) -> None:
    """The best and median wall time of the runs, against a target."""
    best, median = min(walls), statistics.median(walls)
    print(
        f"\nbest {best:.1f} s, median {median:.1f} s of {len(walls)} runs: "
        f"{'within' if median <= target_seconds else 'over'} the {target_seconds:.0f} s target "
        f"({target_seconds / median:.2f}× margin at the median)"
    )
