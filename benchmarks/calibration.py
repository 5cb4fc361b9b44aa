"""How often does augcam's model-level test call a null augmentation significant, and does it find
a planted effect? Repeated small real studies on Fashion-MNIST.

    .venv/bin/python benchmarks/calibration.py [--repeats 10] [--out runs/calibration]

Each repeat is an independent replication of a small study: another split seed, init seed and
ordering seed (so another baseline, another test subset, other null models), with three
augmentations besides the study's null models (the `identity` control with its imperceptible
perturbation, `controls.null_models` seeds):

- `null_twin`, the null models' own augmentation (Gaussian noise of σ = 1e-3 on the copies) drawn
  from another random stream: its models are exchangeable with the null models, so the rate at
  which the test calls it different is the test's false-positive rate, which must be at or below
  the nominal level;
- `null_noise`, noise of σ = 1e-4 (a fortieth of one grey level): a null augmentation as a user
  would try one, but not the null models' own noise level, so the null models' tight spread lets
  the test see even this difference (docs/trustworthy.md);
- `blank_centre`, a *planted* effect: the central 14 × 14 pixels (where a Fashion-MNIST garment
  is) set to 0 on the augmented copies — the model must learn from the borders of half its
  images, which moves its CAMs; the test must find it.

For every (augmentation, metric) row of the model-level table (tables/model_tests.csv) the script
counts raw p < 0.05 and BH-adjusted significance, and prints one table: the null's false-positive
rate (per row and per study: any metric significant) and the planted effect's detection rate,
with binomial 95% intervals (Wilson). There is no reference tool; the reference is the nominal
level 0.05.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

import augcam
from augcam.augment import Augmentation, register_augmentation

ALPHA = 0.05


@register_augmentation
class NullNoise(Augmentation):
    """Gaussian noise far below one grey level: a null augmentation (changes nothing but the trajectory)."""

    name: ClassVar[str] = "null_noise"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator).to(images.device) * 1e-4
        return (images + noise).clamp_(0.0, 1.0)


@register_augmentation
class NullTwin(Augmentation):
    """The null models' perturbation (σ = 1e-3) from a stream of its own: exchangeable with them."""

    name: ClassVar[str] = "null_twin"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        own = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)) + 1)
        noise = torch.randn(images.shape, generator=own).to(images.device) * 1e-3
        return (images + noise).clamp_(0.0, 1.0)


@register_augmentation
class BlankCentre(Augmentation):
    """The central half of the image set to 0: removes the object of a Fashion-MNIST image."""

    name: ClassVar[str] = "blank_centre"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = images.clone()
        h, w = images.shape[-2:]
        out[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = 0.0
        return out


def study(repeat: int, null_models: int | None) -> dict:
    return {
        "name": f"calibration-{repeat}",
        "data": {
            "dataset": "fashion-mnist",
            "split_seed": 100 + repeat,
            "train_size": 1200,
            "val_size": 200,
            "test_size": 300,
        },
        "model": {"name": "small_cnn"},
        "training": {"epochs": 2, "batch_size": 64, "init_seed": 100 + repeat, "ordering_seed": 100 + repeat},
        "augmentations": ["null_twin", "null_noise", "blank_centre"],
        "seeds": [0, 1, 2],
        "controls": {
            "identity": True,
            **({} if null_models is None else {"null_models": null_models}),
            "baseline_replicas": 0,
            "sanity_images": 0,
        },
        "device": "cpu",
    }


def wilson(successes: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    z = 1.959964
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="index of the first repeat (its seeds follow from it)")
    parser.add_argument("--null-models", type=int, default=None, help="default: the config's (controls.null_models)")
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    args = parser.parse_args()
    print(f"# Calibration of the model-level test on {machine(torch.device('cpu'))}\n")
    tables = []
    started = time.perf_counter()
    for repeat in range(args.first, args.first + args.repeats):
        out = args.out / f"repeat-{repeat}"
        augcam.run_study(study(repeat, args.null_models), out, console=Console(stderr=True, quiet=True))
        table = pd.read_csv(out / "tables" / "model_tests.csv")
        tables.append(table.assign(repeat=repeat))
        print(f"repeat {repeat}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = pd.concat(tables, ignore_index=True)
    print(
        f"{args.repeats} studies, 3 models per augmentation against {int(rows['n_null'].iloc[0])} null models, "
        f"{rows['metric'].nunique()} metrics; {time.perf_counter() - started:.0f} s\n"
    )
    print(
        "| augmentation | rows | raw p < 0.05 | 95% CI | BH-significant | 95% CI | studies with any | 95% CI "
        "| spread / null models' (median) | effective models (median) |"
    )
    print("|---|---:|---:|---|---:|---|---:|---|---:|---:|")
    for name in ("null_twin", "null_noise", "blank_centre"):
        part = rows[rows["augmentation"] == name]
        raw = int((part["p_value"] < ALPHA).sum())
        significant = int(part["significant"].astype(bool).sum())
        studies = int(part.groupby("repeat")["significant"].any().sum())
        cells = []
        for count, n in ((raw, len(part)), (significant, len(part)), (studies, args.repeats)):
            low, high = wilson(count, n)
            cells += [f"{count}/{n} = {count / max(n, 1):.3f}", f"[{low:.3f}, {high:.3f}]"]
        # How widely its seeds' models spread against the null models': near 1 for a null augmentation.
        ratio = (part["sd"] / part["null_sd"]).median()
        # How many independent models the test counted its seeds as (1 for a deterministic one).
        effective = part["effective_models"].median()
        print(f"| {name} | {len(part)} | " + " | ".join(cells) + f" | {ratio:.2f} | {effective:.2f} |")
    summary = args.out / "calibration.csv"
    rows.to_csv(summary, index=False)
    print(f"\nall rows: {summary}")


if __name__ == "__main__":
    main()
