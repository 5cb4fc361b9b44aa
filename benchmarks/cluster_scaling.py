"""Expected wall time of a study on N workers, from a finished run's measured per-model times.

    python benchmarks/cluster_scaling.py runs/quick [--workers 1 2 4 8 16 32]

The Ray executor runs the baseline's chain first, then every other model's chain in parallel;
the stages after them (controls' comparisons, aggregation, analyses, report) run on the driver.
So T(N) ≈ before + baseline chain + makespan of the other chains on N workers (longest first,
each to the first free worker) + after. Per-model chain time = its training seconds (meta.json)
+ its share of the CAM seconds (the explain stage's `seconds_in_chains`, which the train stage's
seconds include, plus the explain stage's own). Prints one row per N with the speed-up over N = 1.
"""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path


def chain_seconds(run: Path) -> tuple[float, list[float], dict]:
    manifest = json.loads((run / "manifest.json").read_text())
    stages = manifest["stages"]
    metas = [json.loads(p.read_text()) for p in sorted((run / "models").glob("*/meta.json"))]
    cam_seconds = stages["explain"].get("seconds_in_chains", 0.0) + stages["explain"]["seconds"]
    explain_each = cam_seconds / max(len(metas), 1)
    baseline = next(m for m in metas if m["augmentation"] == "baseline" and not m.get("replica"))
    others = [m.get("train_seconds", 0.0) + explain_each for m in metas if m is not baseline]
    return baseline.get("train_seconds", 0.0) + explain_each, others, manifest


def makespan(durations: list[float], workers: int) -> float:
    free = [0.0] * workers
    for duration in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run directory (local executor)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    baseline, others, manifest = chain_seconds(args.run)
    stages = manifest["stages"]
    chained = stages["train"]["seconds"] + stages["explain"]["seconds"]
    after = sum(s.get("seconds", 0.0) for name, s in stages.items() if name not in ("train", "explain"))
    before = max(manifest.get("seconds", 0.0) - chained - after, 0.0)
    print(
        f"{args.run}: {len(others) + 1} models; baseline chain {baseline:.1f} s, other chains "
        f"{min(others):.1f}–{max(others):.1f} s (sum {sum(others):.1f} s); before {before:.1f} s, after {after:.1f} s"
    )
    print("| workers | expected wall s | speed-up |")
    print("|---:|---:|---:|")
    one = before + baseline + makespan(others, 1) + after
    for n in args.workers:
        total = before + baseline + makespan(others, n) + after
        print(f"| {n} | {total:.1f} | {one / total:.2f}× |")


if __name__ == "__main__":
    main()
