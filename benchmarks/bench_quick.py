"""`augcam run quick` end to end within its 3-minute target on the CPU.

    .venv/bin/python benchmarks/bench_quick.py [--repeats 3] [--device cpu]

Each repeat runs the real command (`python -m augcam run quick`) in a fresh process and a fresh
run directory, so the interpreter start-up, imports, data loading and every stage count, and
prints its wall time with the per-stage seconds from the run's manifest.json. There is no
reference tool for a whole study; the table's last columns compare the wall time with the 180 s
target. The load average is printed too: on a shared machine the figure is the run's, not the code's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import machine, print_table, print_target_verdict, timed_command

from augcam.analysis.report_html import PIPELINE_STAGES

TARGET_SECONDS = 180.0
STAGES = (*PIPELINE_STAGES, "report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh runs of the whole study")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    print(f"# `augcam run quick` end to end on {machine(torch.device(args.device))}\n")
    rows, walls = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="augcam-quick-") as scratch:
            out = Path(scratch) / "quick"
            wall, load = timed_command(["run", "quick", "--out", str(out), "--device", args.device])
            stages = json.loads((out / "manifest.json").read_text())["stages"]
        walls.append(wall)
        rows.append(
            [
                str(repeat + 1),
                load,
                f"{wall:.1f}",
                *(f"{stages[name]['seconds']:.1f}" if name in stages else "—" for name in STAGES),
                f"{TARGET_SECONDS / wall:.2f}×",
            ]
        )
    print_table(
        ["run", "load average", "wall s", *(f"{name} s" for name in STAGES), f"target {TARGET_SECONDS:.0f} s / wall"],
        rows,
    )
    print_target_verdict(walls, TARGET_SECONDS)


if __name__ == "__main__":
    main()
