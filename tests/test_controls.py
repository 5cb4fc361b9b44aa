"""Issue #9 end to end: the controls find a planted effect and do not find one where there is none.

A small real study (Fashion-MNIST) with an augmentation built to move the CAMs — `invert`, which
trains half of the steps on negatives, so the features and therefore the maps change — next to the
identity control, which adds the same number of steps without changing a pixel. Against the noise
floor of the baseline replicas, `invert` must differ in the map metrics and identity must not.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import pytest

from augcam.analysis.statistics import noise_floor, significance_table
from augcam.augment import AUGMENTATIONS, Augmentation, register_augmentation
from augcam.pipeline import run_study

MAP_METRICS = ["mad", "msd", "pearson", "spearman", "overlap_20", "overlap_10", "overlap_5"]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, fashion_mnist_available):
    if "invert" not in AUGMENTATIONS:

        @register_augmentation
        class Invert(Augmentation):
            """Negative images: a transformation the baseline never sees, made to move the maps."""

            name: ClassVar[str] = "invert"

            def apply(self, images, params):
                return 1 - images

    config = {
        "name": "planted",
        "seeds": [0, 1],
        "augmentations": ["invert"],
        "data": {"dataset": "fashion-mnist", "train_size": 600, "val_size": 100, "test_size": 200},
        "training": {"epochs": 2, "batch_size": 32},
        "controls": {"sanity_images": 0},
    }
    return run_study(config, tmp_path_factory.mktemp("runs") / "planted", device="cpu")


def test_planted_effect_differs_from_the_noise_floor_and_identity_does_not(planted_run):
    tables = planted_run.out / "tables"
    noise = noise_floor(pd.read_parquet(tables / "noise_floor.parquet"), MAP_METRICS)
    table = significance_table(planted_run.aggregated, noise, MAP_METRICS).set_index(["augmentation", "metric"])
    invert, identity = table.loc["invert"], table.loc["identity"]
    assert invert.significant.all(), invert[["effect", "p_adjusted"]]
    assert not identity.significant.any(), identity[["effect", "p_adjusted"]]
    # The direction is the planted one: the inverted-image model agrees less with the baseline than
    # randomness alone makes it.
    assert (invert.loc[["pearson", "spearman", "overlap_20"], "effect"] < 0).all()
    assert not (tables / "sanity.csv").exists(), "sanity_images: 0 turns the sanity check off"


def test_report_marks_the_controls(planted_run):
    html = (planted_run.out / "report.html").read_text()
    assert "identity" in html and "noise floor" in html.lower()
