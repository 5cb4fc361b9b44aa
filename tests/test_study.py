"""End to end on real Fashion-MNIST: a small study through the Python API and the CLI."""

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from augcam.atomic import read_tensors
from augcam.cams import upsample
from augcam.config import load_config
from augcam.pipeline import prepare, run_study
from augcam.rundir import RunDir

TINY = {
    "name": "tiny",
    "data": {"dataset": "fashion-mnist", "train_size": 600, "val_size": 100, "test_size": 120},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 3, "batch_size": 32},
    "augmentations": ["affine", "cutmix"],
    "seeds": [0, 1],
    # Two null models keep the tiny study small (the model-level test has its own tests).
    "controls": {"null_models": 2},
}
METRIC_COLUMNS = ["mad", "msd", "pearson", "spearman", "overlap_20", "overlap_10", "overlap_5", "class_kld"]
AUGCAM = [sys.executable, "-m", "augcam"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fashion_mnist_available):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return run_study(TINY, out, device="cpu")


def test_tables_have_the_contracted_rows_and_columns(tiny_run):
    out = tiny_run.out
    performance = pd.read_parquet(out / "tables/performance.parquet")
    metrics = pd.read_parquet(out / "tables/metrics.parquet")
    aggregated = pd.read_parquet(out / "tables/aggregated.parquet")
    # The identity control is trained like any augmentation, after the listed ones.
    assert len(performance) == 1 + 3 * 2
    assert list(performance.augmentation) == [
        "baseline",
        "affine",
        "affine",
        "cutmix",
        "cutmix",
        "identity",
        "identity",
    ]
    assert performance.seed.isna().tolist() == [True] + [False] * 6
    for column in (
        "model_id",
        "test_accuracy",
        "precision",
        "recall",
        "f1",
        "best_epoch",
        "best_val_accuracy",
        "train_seconds",
    ):
        assert column in performance.columns
    assert list(metrics.columns) == [
        "model_id",
        "augmentation",
        "seed",
        "image_index",
        "label",
        "baseline_pred",
        "model_pred",
        *METRIC_COLUMNS,
    ]
    assert len(metrics) == 6 * 120
    assert metrics.groupby("model_id").image_index.apply(lambda s: s.is_unique and len(s) == 120).all()
    assert len(aggregated) == 3 * 120
    assert set(aggregated.columns) >= {
        "augmentation",
        "image_index",
        "label",
        "baseline_pred",
        "n_models",
        *METRIC_COLUMNS,
    }
    assert (aggregated.n_models == 2).all()
    # The run directory holds what the contract says.
    for path in ("study.yaml", "manifest.json"):
        assert (out / path).is_file()
    for model_id in performance.model_id:
        assert (out / "models" / model_id / "weights.safetensors").is_file()
        assert (out / "models" / model_id / "history.parquet").is_file()
        assert (out / "cams" / f"{model_id}.safetensors").is_file()
    assert not list(out.rglob("*.tmp")), "no temporary files left behind"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert set(manifest["stages"]) == {
        "train",
        "explain",
        "compare",
        "performance",
        "aggregate",
        "controls",
        "sanity",
        "report",
    }
    assert (out / "report.html").is_file() and (out / "tables" / "sanity.csv").is_file()


def test_every_model_started_from_the_same_weights_on_the_same_split(tiny_run):
    metas = [json.loads(p.read_text()) for p in sorted((tiny_run.out / "models").glob("*/meta.json"))]
    replicas = {m["replica"]: m for m in metas if "replica" in m}
    metas = [m for m in metas if "replica" not in m]
    assert len(metas) == 7
    assert len({m["initial_weights_sha256"] for m in metas}) == 1
    assert len({m["key"]["data"]["fingerprint"] for m in metas}) == 1
    assert len({m["key"]["training"]["ordering_seed"] for m in metas}) == 1
    # The two default baseline replicas differ from the baseline by one source of randomness each.
    baseline = next(m for m in metas if m["augmentation"] == "baseline")
    assert sorted(replicas) == ["init+1", "ordering+1"]
    ordering, init = replicas["ordering+1"], replicas["init+1"]
    assert ordering["initial_weights_sha256"] == baseline["initial_weights_sha256"]
    assert ordering["key"]["training"]["ordering_seed"] == baseline["key"]["training"]["ordering_seed"] + 1
    assert init["initial_weights_sha256"] != baseline["initial_weights_sha256"]
    assert init["key"]["training"]["init_seed"] == baseline["key"]["training"]["init_seed"] + 1
    assert init["key"]["training"]["ordering_seed"] == baseline["key"]["training"]["ordering_seed"]


def test_performance_equals_scikit_learn(tiny_run):
    labels = tiny_run.metrics.groupby("image_index").label.first()
    for row in tiny_run.performance.itertuples():
        stored = read_tensors(tiny_run.out / "cams" / f"{row.model_id}.safetensors")
        assert torch.equal(stored["image_index"], torch.tensor(labels.index.values))
        y_pred = stored["predictions"].numpy()
        y_true = labels.values
        kw = {"average": "macro", "labels": list(range(10)), "zero_division": 0}
        assert row.test_accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        assert row.precision == pytest.approx(precision_score(y_true, y_pred, **kw), abs=1e-12)
        assert row.recall == pytest.approx(recall_score(y_true, y_pred, **kw), abs=1e-12)
        assert row.f1 == pytest.approx(f1_score(y_true, y_pred, **kw), abs=1e-12)
    # Models learnt something: well above chance (10%) after two short epochs.
    assert (tiny_run.performance.test_accuracy > 0.4).all()


def test_metric_rows_match_oracles_on_stored_cams(tiny_run):
    metrics = tiny_run.metrics
    base_id = tiny_run.performance.model_id[0]
    base = read_tensors(tiny_run.out / "cams" / f"{base_id}.safetensors")
    row_model = metrics.model_id.iloc[-1]
    other = read_tensors(tiny_run.out / "cams" / f"{row_model}.safetensors")
    rows = metrics[metrics.model_id == row_model].reset_index(drop=True)
    b = upsample(base["raw"], (28, 28)).flatten(1).double().numpy()
    o = upsample(other["raw"], (28, 28)).flatten(1).double().numpy()
    for i in range(0, 120, 17):
        assert rows.mad[i] == pytest.approx(np.abs(b[i] - o[i]).mean(), abs=1e-9)
        if b[i].std() > 0 and o[i].std() > 0:
            assert rows.pearson[i] == pytest.approx(pearsonr(b[i], o[i])[0], abs=1e-6)
            assert rows.spearman[i] == pytest.approx(spearmanr(b[i], o[i])[0], abs=1e-6)
    p = torch.softmax(base["logits"].double(), 1).numpy()
    q = torch.softmax(other["logits"].double(), 1).numpy()
    expected = (q * np.log(1e-10 + q / p)).sum(1)
    np.testing.assert_allclose(rows.class_kld, expected, rtol=1e-9)
    # The aggregated table is the mean over seeds.
    agg = tiny_run.aggregated.set_index(["augmentation", "image_index"])
    by_hand = metrics.groupby(["augmentation", "image_index"])[["mad", "overlap_20"]].mean()
    pd.testing.assert_frame_equal(agg[["mad", "overlap_20"]].sort_index(), by_hand.sort_index())


def test_rerun_reuses_everything_and_gives_identical_tables(tiny_run):
    again = run_study(TINY, tiny_run.out, device="cpu")
    assert again.manifest["stages"]["train"]["reused"] == 9
    assert again.manifest["stages"]["explain"]["reused"] == 9
    for name in ("performance", "metrics", "aggregated"):
        first = getattr(tiny_run, name).drop(columns=["train_seconds"], errors="ignore")
        pd.testing.assert_frame_equal(first, getattr(again, name).drop(columns=["train_seconds"], errors="ignore"))


def _stored_maps(out: Path, model_id: str) -> dict[str, torch.Tensor]:
    return read_tensors(out / "cams" / f"{model_id}.safetensors")


def test_noise_floor_rows_are_each_replica_against_the_baseline(tiny_run):
    out = tiny_run.out
    noise = pd.read_parquet(out / "tables" / "noise_floor.parquet")
    assert list(noise.columns) == [
        "model_id",
        "replica",
        "image_index",
        "label",
        "baseline_pred",
        "model_pred",
        *METRIC_COLUMNS,
    ]
    assert noise.groupby("replica").size().to_dict() == {"init+1": 120, "ordering+1": 120}
    base = _stored_maps(out, tiny_run.performance.model_id[0])
    rows = noise[noise.replica == "init+1"].reset_index(drop=True)
    other = _stored_maps(out, rows.model_id[0])
    b = upsample(base["raw"], (28, 28)).flatten(1).double().numpy()
    o = upsample(other["raw"], (28, 28)).flatten(1).double().numpy()
    for i in range(0, 120, 13):
        assert rows.mad[i] == pytest.approx(np.abs(b[i] - o[i]).mean(), abs=1e-9)
        if b[i].std() > 0 and o[i].std() > 0:
            assert rows.spearman[i] == pytest.approx(spearmanr(b[i], o[i])[0], abs=1e-6)
    # Replicas are controls, not augmentations: they stay out of the augmentation tables.
    assert "replica" not in tiny_run.metrics.columns
    assert not set(noise.model_id) & set(tiny_run.performance.model_id)


def test_between_augmentations_compares_models_of_two_augmentations_with_the_same_seed(tiny_run):
    out = tiny_run.out
    between = pd.read_parquet(out / "tables" / "between_augmentations.parquet")
    pairs = between.groupby(["augmentation_a", "augmentation_b", "seed"]).size()
    assert pairs.to_dict() == {
        (a, b, s): 120
        for a, b in [("affine", "cutmix"), ("affine", "identity"), ("cutmix", "identity")]
        for s in (0, 1)
    }
    performance = tiny_run.performance.set_index(["augmentation", "seed"])
    a = _stored_maps(out, performance.loc[("affine", 1), "model_id"])
    b = _stored_maps(out, performance.loc[("cutmix", 1), "model_id"])
    rows = between[
        (between.augmentation_a == "affine") & (between.augmentation_b == "cutmix") & (between.seed == 1)
    ].reset_index(drop=True)
    x = upsample(a["raw"], (28, 28)).flatten(1).double().numpy()
    y = upsample(b["raw"], (28, 28)).flatten(1).double().numpy()
    for i in range(0, 120, 11):
        if x[i].std() > 0 and y[i].std() > 0:
            assert rows.pearson[i] == pytest.approx(pearsonr(x[i], y[i])[0], abs=1e-6)


def test_sanity_check_randomises_every_layer_and_grad_cam_passes(tiny_run):
    sanity = pd.read_csv(tiny_run.out / "tables" / "sanity.csv")
    assert set(sanity.test) == {"cascading"} and (sanity.method == "gradcam").all()
    assert sanity.step.tolist() == list(range(len(sanity)))
    assert sanity.spearman_median[0] == pytest.approx(1.0)
    # small_cnn has 7 layers with parameters; every one is randomised, output layer first.
    assert len(sanity) == 1 + 7 and sanity.layer[1] == "classifier"
    verdict = tiny_run.manifest["stages"]["sanity"]
    assert verdict["passes"] and verdict["final_median"] < 0.5


def test_cli_run_prints_summary(tmp_path, fashion_mnist_available):
    import yaml

    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {**TINY, "augmentations": ["gaussian_blur"], "seeds": [0], "training": {"epochs": 1, "batch_size": 64}}
        )
    )
    done = subprocess.run(
        [*AUGCAM, "run", str(study), "--out", str(tmp_path / "out"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "gaussian_blur" in done.stdout and "Median" in done.stdout and "report.html" in done.stdout
    # The noise floor is a row of the median table, under the augmentations it is compared with.
    assert "noise floor" in done.stdout and "identity" in done.stdout
    assert (tmp_path / "out/tables/metrics.parquet").exists()


# Bad input at the command line: tests/test_reliability.py (test_cli_bad_input).


def test_cli_presets_and_validate(fashion_mnist_available):
    listed = subprocess.run([*AUGCAM, "presets"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    for name in ("quick", "fashion-mnist", "thesis-cifar10"):
        assert name in listed.stdout
    checked = subprocess.run([*AUGCAM, "validate", "quick"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    # baseline + 7 augmentations × 3 seeds + 12 null models + 2 baseline replicas
    assert "36 models" in checked.stdout and "6000 train / 1000 val / 2000 test" in checked.stdout


# --- the reference study's preset on generated CIFAR-10 files ---------------------------------


def _write_cifar(root: Path, per_batch: int = 20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(i % 10) for i in range(per_batch)],
            b"batch_label": name.encode(),
        }
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, handle, protocol=2)


def test_thesis_preset_loads_cifar_format_and_takes_a_training_step(tmp_path):
    from augcam.models import build_model
    from augcam.training import TrainingData, TrainSettings, train_model

    _write_cifar(tmp_path)
    config = load_config(
        "thesis-cifar10",
        overrides={
            "data.root": str(tmp_path),
            "data.train_size": 10,  # one image per class: fewer is refused
            "data.val_size": 2,
            "data.test_size": 2,
            "training.batch_size": 4,
            "training.epochs": 1,
        },
    )
    prepared = prepare(config)
    assert prepared.train_set.images.shape == (100, 3, 32, 32)
    assert prepared.test_set.images.shape == (20, 3, 32, 32)
    assert prepared.input_size == (224, 224) and prepared.layer_size == (7, 7)
    assert prepared.target_layer == "features.8"
    # The published plan (baseline + 7 augmentations × 3 seeds), then the 12 null models (the
    # identity control); the 2 baseline replicas are controls outside `runs`.
    assert len(prepared.runs) == 34 and [r.augmentation for r in prepared.runs[22:]] == ["identity"] * 12
    assert len(prepared.controls) == 2
    t = config.training
    images = prepared.train_set.images.float() / 255
    train = prepared.split.train[:2]  # one batch of EfficientNet-B0 at 224² is enough to see it learn
    data = TrainingData(
        images[train],
        prepared.train_set.labels[train],
        images[prepared.split.val],
        prepared.train_set.labels[prepared.split.val],
        prepared.mean,
        prepared.std,
        image_size=224,
    )
    model = build_model("efficientnet_b0", 3, 10, t.init_seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_model(
        model,
        data,
        TrainSettings(1, 4, t.lr, t.weight_decay, t.ordering_seed, 1, 4),
        config.augmentations[1].build(),
        seed=0,
    )
    assert result.history[0]["images"] == 4  # 2 originals + 2 cutmix copies: one batch of 4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_stored_cams_are_the_public_api_on_the_stored_weights(tiny_run, monkeypatch):
    """The explain stage is `augcam.cams.raw_cams` on each model's inference copy, made once per
    CAM set (not per batch): the notebook API on the stored weights gives the stored maps bit for
    bit, and the model as given (optimize=False) the same maps up to float rounding."""
    import augcam.pipeline.chain as chain
    from augcam.cams import inference_copy, raw_cams
    from augcam.models import MODELS
    from augcam.pipeline.plan import plan
    from augcam.training import prepare_inputs

    prepared = prepare(TINY)
    model_id = tiny_run.performance.model_id.iloc[-1]
    stored = read_tensors(tiny_run.out / "cams" / f"{model_id}.safetensors")
    model = chain.load_model(prepared, read_tensors(RunDir(tiny_run.out).weights_file(model_id)), torch.device("cpu"))
    mean = torch.tensor(prepared.mean).view(1, -1, 1, 1)
    std = torch.tensor(prepared.std).view(1, -1, 1, 1)
    images = prepare_inputs(
        chain.images_on(prepared.test_set.images[prepared.split.test], torch.device("cpu")), mean, std, None
    )
    batch = prepared.config.cam.batch_size
    head = MODELS["small_cnn"].head
    raw, logits = raw_cams("gradcam", model, prepared.target_layer, images, batch_size=batch, head=head)
    assert torch.equal(raw, stored["raw"]) and torch.equal(logits, stored["logits"])
    plain, _ = raw_cams("gradcam", model, prepared.target_layer, images, batch_size=batch, head=head, optimize=False)
    torch.testing.assert_close(upsample(plain, (28, 28)), upsample(stored["raw"], (28, 28)), rtol=0, atol=1e-5)

    copies = []

    def counting(*args, **kwargs):
        copies.append(1)
        return inference_copy(*args, **kwargs)

    monkeypatch.setattr(chain, "inference_copy", counting)
    run = next(r for r in plan(prepared.config, prepared.data_fingerprint) if r.model_id == model_id)
    in_batches = dataclasses.replace(prepared, config=load_config({**TINY, "cam": {"batch_size": 32}}))
    batches = []
    tensors, _ = chain.compute_cam_set(
        in_batches, run, model, torch.device("cpu"), after_batch=lambda number, size: batches.append(size)
    )
    assert batches == [32, 32, 32, 24] and copies == [1]  # one copy for the four batches
    torch.testing.assert_close(upsample(tensors["raw"], (28, 28)), upsample(stored["raw"], (28, 28)), rtol=0, atol=1e-5)
