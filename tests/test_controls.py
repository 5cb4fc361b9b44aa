"""The null models end to end: a small real study (Fashion-MNIST) finds a planted effect at the
level of the model and does not find one where there is none.

Next to the null models (the identity control under 12 seeds, each copy carrying a quarter of a
grey level of noise from the seed's stream), two augmentations under 4 seeds: `invert`, built to
move the CAMs (half of the steps on negatives, so the features and therefore the maps change), and
`faint_noise`, a user's null augmentation (noise of 0.002, invisible, as in the report that
prompted the model-level test). 4 models against 12 can reach p = 2 / C(16, 4) ≈ 0.0011, so the
planted effect survives the Benjamini–Hochberg correction over the whole table.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from augcam.analysis.design import min_p_value
from augcam.analysis.model_tests import model_level_table
from augcam.augment import AUGMENTATIONS, Augmentation, register_augmentation
from augcam.pipeline import run_study

MAP_METRICS = ["mad", "msd", "pearson", "spearman", "overlap_20", "overlap_10", "overlap_5"]
SEEDS = [0, 1, 2, 3]


def _faint_noise(shape, generator):
    # Uniform noise of standard deviation 0.002 (half a grey level); uniform rather than Gaussian,
    # so it is not a rescaled copy of the null models' draws.
    import torch

    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return {"noise": (2 * u - 1) * (0.002 * math.sqrt(3.0))}


def _register_test_augmentations() -> None:
    if "invert" not in AUGMENTATIONS:

        @register_augmentation
        class Invert(Augmentation):
            """Negative images (plus the faint noise, so that each seed trains another model): a
            transformation the baseline never sees, made to move the maps."""

            name: ClassVar[str] = "invert"

            def sample_params(self, shape, generator):
                return _faint_noise(shape, generator)

            def apply(self, images, params):
                return (1 - images + params["noise"]).clamp_(0.0, 1.0)

    if "faint_noise" not in AUGMENTATIONS:

        @register_augmentation
        class FaintNoise(Augmentation):
            """Invisible noise: a null augmentation."""

            name: ClassVar[str] = "faint_noise"

            def sample_params(self, shape, generator):
                return _faint_noise(shape, generator)

            def apply(self, images, params):
                return (images + params["noise"]).clamp_(0.0, 1.0)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, fashion_mnist_available):
    _register_test_augmentations()
    config = {
        "name": "planted",
        "seeds": SEEDS,
        "augmentations": ["invert", "faint_noise"],
        "data": {"dataset": "fashion-mnist", "train_size": 600, "val_size": 100, "test_size": 200},
        "training": {"epochs": 2, "batch_size": 32},
        "controls": {"sanity_images": 0, "baseline_replicas": 1},
    }
    return run_study(config, tmp_path_factory.mktemp("runs") / "planted", device="cpu")


@pytest.fixture(scope="module")
def model_table(planted_run):
    metrics = pd.read_parquet(planted_run.out / "tables" / "metrics.parquet")
    return metrics, model_level_table(metrics, metrics_cols=MAP_METRICS).set_index(["augmentation", "metric"])


def test_the_null_models_are_twelve_distinct_models_that_share_init_and_order(planted_run):
    import json

    performance = pd.read_parquet(planted_run.out / "tables" / "performance.parquet")
    nulls = performance[performance.augmentation == "identity"]
    assert sorted(nulls.seed.astype(int)) == list(range(12))
    assert nulls.model_id.nunique() == 12
    metas = {
        path.parent.name: json.loads(path.read_text()) for path in (planted_run.out / "models").glob("*/meta.json")
    }
    (baseline,) = [meta for meta in metas.values() if meta["augmentation"] == "baseline" and "replica" not in meta]
    for model_id in nulls.model_id:
        meta = metas[model_id]
        # The random stream is all that differs from the augmented models: same initial weights,
        # same init and ordering seeds, and the noise (a quarter of a grey level) in the model key.
        assert meta["initial_weights_sha256"] == baseline["initial_weights_sha256"]
        assert meta["key"]["training"] == baseline["key"]["training"]
        assert meta["key"]["augmentation"]["params"] == {"noise_std": 1e-3}


def test_the_null_models_have_a_spread(model_table):
    # Without noise every seed would train the very same model: identical summaries, no spread.
    metrics, _ = model_table
    nulls = metrics[metrics.augmentation == "identity"]
    summaries = nulls.groupby("model_id")[MAP_METRICS].mean()
    assert len(summaries) == 12
    assert (summaries.std(ddof=1) > 0).all(), summaries
    # The pearson of each null model with the baseline is high but below 1: close, yet other models.
    assert ((summaries["pearson"] > 0.5) & (summaries["pearson"] < 0.999)).all(), summaries["pearson"]


def test_planted_effect_is_found_at_the_model_level(model_table):
    metrics, table = model_table
    # Four models, not one model four times: the seeds' spread is part of what is tested.
    assert metrics[metrics.augmentation == "invert"].groupby("model_id").pearson.mean().nunique() == len(SEEDS)
    invert = table.loc["invert"]
    assert (invert.n_models == len(SEEDS)).all() and (invert.n_null == 12).all()
    assert np.allclose(invert.min_p, min_p_value(len(SEEDS), 12))
    assert invert.significant.all(), invert[["effect", "p_value", "p_adjusted"]]
    # The direction is the planted one: further from the baseline than the null models in every
    # map metric, and the CI of the effect excludes 0.
    assert (invert.direction == "further").all(), invert.direction
    assert ((invert.effect_ci_low > 0) | (invert.effect_ci_high < 0)).all()
    assert (invert.loc[["pearson", "spearman", "overlap_20"], "effect"] < 0).all()


def test_a_null_augmentation_is_not_significant(model_table):
    _, table = model_table
    faint = table.loc["faint_noise"]
    assert not faint.significant.any(), faint[["effect", "p_value", "p_adjusted"]]
    # Its models sit among the null models: their effect is a fraction of the planted one.
    invert = table.loc["invert"]
    assert (faint.effect.abs() < invert.effect.abs() / 3).all(), pd.concat([faint.effect, invert.effect], axis=1)


def test_report_marks_the_controls(planted_run):
    html = (planted_run.out / "report.html").read_text()
    assert "identity" in html and "null model" in html.lower()
    assert (planted_run.out / "tables" / "model_tests.csv").exists()
