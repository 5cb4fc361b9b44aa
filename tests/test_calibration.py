"""The fast version of benchmarks/calibration.py: in a small real study, an augmentation that only
perturbs pixels far below one grey level is not declared different from retraining noise, and
one that blanks the garment is (docs/trustworthy.md has the measured rates over many studies)."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
import pytest
import torch

from augcam.augment import AUGMENTATIONS, Augmentation, register_augmentation
from augcam.pipeline import run_study

pytestmark = pytest.mark.slow


class NullNoise(Augmentation):
    name: ClassVar[str] = "test_null_noise"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (images + torch.randn(images.shape, generator=generator).to(images.device) * 1e-4).clamp_(0, 1)


class BlankCentre(Augmentation):
    name: ClassVar[str] = "test_blank_centre"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = images.clone()
        h, w = images.shape[-2:]
        out[..., h // 4 : h - h // 4, w // 4 : w - w // 4] = 0.0
        return out


@pytest.fixture(scope="module")
def model_tests(tmp_path_factory, fashion_mnist_available):
    for cls in (NullNoise, BlankCentre):
        register_augmentation(cls)
    try:
        study = {
            "name": "calibration-small",
            "data": {"dataset": "fashion-mnist", "train_size": 1200, "val_size": 200, "test_size": 200},
            "model": {"name": "small_cnn"},
            "training": {"epochs": 2, "batch_size": 64},
            "augmentations": [NullNoise.name, BlankCentre.name],
            "seeds": [0, 1, 2],
            "controls": {"baseline_replicas": 0, "sanity_images": 0},  # the default 12 null models
            "device": "cpu",
        }
        out = tmp_path_factory.mktemp("calibration") / "run"
        run_study(study, out)
        return pd.read_csv(out / "tables" / "model_tests.csv")
    finally:
        for cls in (NullNoise, BlankCentre):
            AUGMENTATIONS.pop(cls.name, None)


def test_a_null_augmentation_is_not_declared_different_from_retraining_noise(model_tests):
    null = model_tests[model_tests["augmentation"] == NullNoise.name]
    assert len(null) >= 8
    assert not null["significant"].astype(bool).any(), null[["metric", "effect", "p_value", "p_adjusted"]]


def test_a_planted_effect_is_found_in_the_same_study(model_tests):
    planted = model_tests[model_tests["augmentation"] == BlankCentre.name]
    assert planted["significant"].astype(bool).sum() >= len(planted) // 2, planted[["metric", "p_value"]]
