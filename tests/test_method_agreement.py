"""cam.extra_methods: every metric once per CAM method, and the rank agreement of the methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from augcam.analysis.method_agreement import method_agreement, method_medians
from augcam.pipeline import run_study

AUGMENTATIONS = ["a", "b", "c", "d", "e"]


def _metrics(values_by_aug: dict[str, np.ndarray], method: str | None = None) -> pd.DataFrame:
    frames = []
    for aug, values in values_by_aug.items():
        for seed, seed_values in enumerate(values):
            frames.append(
                pd.DataFrame(
                    {
                        "model_id": f"{aug}-{seed}",
                        "augmentation": aug,
                        "seed": seed,
                        "image_index": np.arange(len(seed_values)),
                        "label": 0,
                        "baseline_pred": 0,
                        "model_pred": 0,
                        "pearson": seed_values,
                        "mad": 1 - seed_values,
                    }
                )
            )
    table = pd.concat(frames, ignore_index=True)
    return (
        table if method is None else table.drop(columns=["label", "baseline_pred", "model_pred"]).assign(method=method)
    )


def test_medians_are_of_seed_means_and_agreement_is_scipy_spearman():
    rng = np.random.default_rng(0)
    centres = dict(zip(AUGMENTATIONS, [0.9, 0.8, 0.7, 0.6, 0.5]))
    main = {aug: centre + rng.normal(0, 0.01, (2, 40)) for aug, centre in centres.items()}
    same_order = {aug: values * 0.5 for aug, values in main.items()}  # a monotone change keeps the ranking
    reversed_order = {aug: 1.5 - values for aug, values in main.items()}
    shuffled = {aug: main[other] for aug, other in zip(AUGMENTATIONS, ["c", "a", "e", "b", "d"])}
    extra = pd.concat(
        [_metrics(same_order, "same"), _metrics(reversed_order, "reversed"), _metrics(shuffled, "shuffled")],
        ignore_index=True,
    )
    medians = method_medians(_metrics(main), extra, "gradcam")
    assert list(dict.fromkeys(medians.method)) == ["gradcam", "same", "reversed", "shuffled"]
    # The median over images of the mean over seeds, computed by hand for one cell.
    by_hand = float(np.median(main["c"].mean(axis=0)))
    cell = medians[(medians.method == "gradcam") & (medians.augmentation == "c") & (medians.metric == "pearson")]
    assert float(cell["median"].iloc[0]) == pytest.approx(by_hand, abs=1e-12)
    agreement = method_agreement(medians).set_index(["metric", "method_a", "method_b"])["spearman"]
    assert agreement[("pearson", "gradcam", "same")] == pytest.approx(1.0)
    assert agreement[("pearson", "gradcam", "reversed")] == pytest.approx(-1.0)
    wide = medians[medians.metric == "pearson"].pivot(index="augmentation", columns="method", values="median")
    expected = stats.spearmanr(wide["gradcam"], wide["shuffled"]).statistic
    assert agreement[("pearson", "gradcam", "shuffled")] == pytest.approx(expected)
    assert len(agreement) == 2 * 6  # 2 metrics × C(4, 2) pairs of methods


def test_agreement_is_nan_when_a_ranking_is_undefined():
    flat = {aug: np.full((1, 5), 0.5) for aug in AUGMENTATIONS}
    medians = method_medians(_metrics(flat), _metrics(flat, "other"), "gradcam")
    assert method_agreement(medians)["spearman"].isna().all()


def test_study_computes_every_metric_with_each_extra_method(tmp_path, fashion_mnist_available):
    config = {
        "name": "methods",
        "seeds": [0],
        "augmentations": ["affine", "cutmix"],
        "data": {"dataset": "fashion-mnist", "train_size": 300, "val_size": 100, "test_size": 60},
        "training": {"epochs": 1, "batch_size": 32},
        # One null model (the identity control under seed 0): 3 compared models, as the counts below.
        "controls": {"baseline_replicas": 0, "sanity_images": 0, "null_models": 1},
        "cam": {"extra_methods": ["xgradcam", "gradcampp"]},
    }
    result = run_study(config, tmp_path / "out", device="cpu")
    extra = pd.read_parquet(tmp_path / "out" / "tables" / "method_metrics.parquet")
    assert extra.groupby("method").size().to_dict() == {"gradcampp": 3 * 60, "xgradcam": 3 * 60}
    assert len(list((tmp_path / "out" / "cams").glob("*.xgradcam.safetensors"))) == 1 + 3
    # small_cnn's target layer feeds global average pooling and a linear layer, so XGrad-CAM's
    # channel weights equal Grad-CAM's and so do the maps: an oracle for the extra-method path.
    xgrad = extra[extra.method == "xgradcam"].reset_index(drop=True)
    main = result.metrics.reset_index(drop=True)
    for column in ("mad", "msd", "pearson"):
        np.testing.assert_allclose(xgrad[column], main[column], atol=1e-5, equal_nan=True)
    # Overlap rates count pixels above a percentile: float-level differences in the maps may move a
    # tied pixel across it, so most, not all, values are equal.
    assert np.isclose(xgrad["overlap_20"], main["overlap_20"], atol=1e-9).mean() > 0.9
    # Re-running reuses every CAM set of every method.
    again = run_study(config, tmp_path / "out", device="cpu")
    assert again.manifest["stages"]["explain"]["computed"] == 0
