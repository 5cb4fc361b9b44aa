"""`augcam select quick-selection` end to end within its 3-minute target on the CPU.

    .venv/bin/python benchmarks/bench_select.py [--repeats 3] [--device cpu]

Each repeat runs the real command (`python -m augcam select quick-selection`) in a fresh process
and a fresh directory, so the interpreter start-up, imports, data loading, every candidate's
training and the report count, and prints its wall time with the per-stage seconds and each
candidate's training seconds from the selection's manifest.json and summary table. The last
column compares the wall time with the 180 s target; the load average is printed too (on a
shared machine the figure is the run's, not the code's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd
import torch
from common import machine, print_table, print_target_verdict, timed_command

TARGET_SECONDS = 180.0
STAGES = ("candidates", "tables", "report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs of the whole selection")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    print(f"# `augcam select quick-selection` end to end on {machine(torch.device(args.device))}\n")
    rows, walls, candidates = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="augcam-select-") as scratch:
            out = Path(scratch) / "select"
            wall, load = timed_command(["select", "quick-selection", "--out", str(out), "--device", args.device])
            stages = json.loads((out / "manifest.json").read_text())["stages"]
            summary = pd.read_parquet(out / "tables" / "selection_summary.parquet")
        walls.append(wall)
        candidates = list(summary["candidate"])
        rows.append(
            [
                str(repeat + 1),
                load,
                f"{wall:.1f}",
                *(f"{stages[name]['seconds']:.1f}" for name in STAGES),
                *(f"{seconds:.1f}" for seconds in summary["train_seconds"]),
                str(summary.loc[summary["chosen"], "candidate"].item()),
                f"{TARGET_SECONDS / wall:.2f}×",
            ]
        )
    print_table(
        [
            "run",
            "load average",
            "wall s",
            *(f"{name} s" for name in STAGES),
            *(f"{label} train s" for label in candidates),
            "chosen",
            f"target {TARGET_SECONDS:.0f} s / wall",
        ],
        rows,
    )
    print_target_verdict(walls, TARGET_SECONDS)


if __name__ == "__main__":
    main()
