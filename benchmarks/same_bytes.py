"""Do two run directories hold the same files, byte for byte?

    python benchmarks/same_bytes.py RUN_A RUN_B

Prints one line per file: `same`, or `differs`. The five files that record wall-clock time or the
pid (manifest.json, report.html, tables/performance.parquet, each model's meta.json and
history.parquet) are expected to differ in bytes; for the three tables among them the content
without their time columns is compared too (`same but for times`). Exit status 1 if any other
file differs or a file exists in one directory only. Used to check that a refactoring leaves a
fresh `augcam run quick` unchanged (docs/design.md: determinism).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

TIMED = ("manifest.json", "report.html", "tables/performance.parquet", "meta.json", "history.parquet")
TIME_FIELDS = {"train_seconds", "seconds", "epoch_seconds"}


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def _without_times(path: Path):
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        return table.drop(columns=[c for c in table.columns if c in TIME_FIELDS or c.endswith("_seconds")])
    if path.name == "meta.json":
        return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIME_FIELDS}
    return None


def main(a: str, b: str) -> int:
    root_a, root_b = Path(a), Path(b)
    da, db = _digests(root_a), _digests(root_b)
    bad = 0
    for name in sorted(set(da) | set(db)):
        if name not in da or name not in db:
            print(f"only in {'B' if name not in da else 'A'}: {name}")
            bad += 1
        elif da[name] == db[name]:
            print(f"same               {da[name][:16]}  {name}")
        elif name.endswith(TIMED):
            x, y = _without_times(root_a / name), _without_times(root_b / name)
            equal = x is not None and (x.equals(y) if isinstance(x, pd.DataFrame) else x == y)
            print(f"{'same but for times' if equal else 'differs (timed)':<18} {name}")
            bad += x is not None and not equal
        else:
            print(f"DIFFERS            {name}")
            bad += 1
    print(f"{len(set(da) | set(db))} files, {bad} unexpected difference(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
