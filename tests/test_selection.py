"""Architecture selection (`augcam select`): per-epoch scores against scikit-learn on the stored
predictions, the choosing rule on planted histories, the small preset end to end (its report in a
real browser, its chosen.yaml run as a study), resume and reuse after kills, bad input, and the
thesis preset against CIFAR-10 files in the official layout."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from test_report import _chrome
from test_study import _write_cifar
from typer.testing import CliRunner

from augcam import load_config, load_selection, run_study, select
from augcam.atomic import read_tensors
from augcam.cli import app
from augcam.errors import AugcamError
from augcam.pipeline.kill_points import KILL_AT_ENV
from augcam.selection import summarise
from augcam.training import TrainingData, TrainSettings, train_model, train_state_from_bytes, train_state_to_bytes

AUGCAM = [sys.executable, "-m", "augcam"]
# The small preset, smaller: two candidates × two seeds, 300 training images, 2 epochs.
SMALL = {
    "study.data.train_size": 300,
    "study.data.val_size": 100,
    "study.data.test_size": 200,
    "study.training.epochs": 2,
    "study.device": "cpu",
    "seeds": [0, 1],
    "candidates": ["small_cnn", "tang_cnn"],
}
SECONDS = ["seconds", "test_seconds", "cumulative_seconds"]  # wall-clock: the only columns a rerun changes


def _set_args(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def selected(tmp_path_factory, fashion_mnist_available):
    out = tmp_path_factory.mktemp("select") / "small"
    result = select(load_selection("quick-selection", overrides=SMALL), out)
    return out, result


# --- the training loop's monitoring -----------------------------------------------------------------


def _tiny_data(with_test: bool) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(48, 1, 8, 8, generator=g), torch.arange(48) % 3
    test = {"test_images": images[:12] * 0.5, "test_labels": labels[:12]} if with_test else {}
    return TrainingData(images[:36], labels[:36], images[36:], labels[36:], (0.5,), (0.25,), **test)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))


def test_monitoring_the_test_set_changes_no_weight_and_keeps_every_epochs_predictions():
    settings = TrainSettings(3, 8, 1e-2, 0.0, 0, 1, 16)
    plain = train_model(_tiny_model(), _tiny_data(False), settings, None, 0)
    states = []
    watched = train_model(_tiny_model(), _tiny_data(True), settings, None, 0, on_checkpoint=states.append)
    for name, tensor in plain.best_state.items():
        assert torch.equal(tensor, watched.best_state[name])
    assert [r["val_accuracy"] for r in plain.history] == [r["val_accuracy"] for r in watched.history]
    assert plain.predictions == {} and watched.predictions["test"].shape == (3, 12)
    assert watched.predictions["val"].shape == (3, 12)
    for row, predictions in zip(watched.history, watched.predictions["test"]):
        assert row["test_accuracy"] == accuracy_score(_tiny_data(True).test_labels.numpy(), predictions.numpy())
    # The checkpoint carries the predictions so far, and resuming from it gives the same ones.
    restored = train_state_from_bytes(train_state_to_bytes(states[0], {"m": 1}), {"m": 1})
    assert torch.equal(restored.predictions["test"], watched.predictions["test"][:1])
    resumed = train_model(_tiny_model(), _tiny_data(True), settings, None, 0, resume=restored)
    assert torch.equal(resumed.predictions["test"], watched.predictions["test"])


# --- the rule ----------------------------------------------------------------------------------------


def _planted(rows: dict[str, list[tuple[list[float], float]]]) -> pd.DataFrame:
    """candidate → per seed (validation accuracy per epoch, seconds per epoch); test scores are the
    opposite of validation, so a rule that read them would choose otherwise."""
    frames = []
    for label, seeds in rows.items():
        for seed, (accuracies, seconds) in enumerate(seeds):
            for epoch, accuracy in enumerate(accuracies, start=1):
                frames.append(
                    {
                        "candidate": label,
                        "seed": seed,
                        "model_id": f"{label}-{seed}",
                        "epoch": epoch,
                        "val_accuracy": accuracy,
                        "seconds": seconds,
                        **{f"test_{s}": 1 - accuracy for s in ("accuracy", "precision", "recall", "f1")},
                    }
                )
    return pd.DataFrame(frames)


@pytest.mark.parametrize(
    "rows, tolerance, chosen",
    [
        # Best validation accuracy wins, even slower and with the worse test curve.
        ({"a": [([0.5, 0.6], 1.0)], "b": [([0.6, 0.9], 9.0)]}, 0.0, "b"),
        # The best epoch counts, not the last.
        ({"a": [([0.9, 0.4], 5.0)], "b": [([0.5, 0.85], 5.0)]}, 0.0, "a"),
        # A tie: the faster candidate wins, wherever it is listed.
        ({"a": [([0.5, 0.8], 3.0)], "b": [([0.8, 0.7], 2.0)], "c": [([0.1, 0.2], 0.1)]}, 0.0, "b"),
        # A tie in accuracy and time: the first listed.
        ({"a": [([0.8], 2.0)], "b": [([0.8], 2.0)]}, 0.0, "a"),
        # Means over seeds: 0.9 and 0.7 lose to 0.85 and 0.85.
        ({"a": [([0.9], 1.0), ([0.7], 1.0)], "b": [([0.85], 4.0), ([0.85], 4.0)]}, 0.0, "b"),
        # Within the tolerance, time decides; outside it, accuracy does.
        ({"a": [([0.80], 5.0)], "b": [([0.795], 1.0)]}, 0.01, "b"),
        ({"a": [([0.80], 5.0)], "b": [([0.785], 1.0)]}, 0.01, "a"),
    ],
)
def test_the_rule_chooses_on_validation_accuracy_then_time(rows, tolerance, chosen):
    summary = summarise(_planted(rows), list(rows), tolerance)
    assert summary.loc[summary["chosen"], "candidate"].tolist() == [chosen]
    assert summary.set_index("candidate").loc[chosen, "tied_with_best"]


def test_the_rule_needs_one_complete_candidate():
    with pytest.raises(AugcamError, match="no candidate has a complete model"):
        summarise(pd.DataFrame(), ["a", "b"])


# --- the small preset end to end -----------------------------------------------------------------


def test_per_epoch_scores_equal_scikit_learn_on_the_stored_predictions(selected):
    out, _ = selected
    epochs = pd.read_parquet(out / "tables" / "selection_epochs.parquet")
    assert len(epochs) == 2 * 2 * 2  # candidates × seeds × epochs
    for (label, model_id), rows in epochs.groupby(["candidate", "model_id"]):
        stored = read_tensors(out / "candidates" / label / "models" / model_id / "predictions.safetensors")
        history = pd.read_parquet(out / "candidates" / label / "models" / model_id / "history.parquet")
        for _, row in rows.iterrows():
            for part in ("val", "test"):
                y, p = stored[f"{part}_labels"].numpy(), stored[f"{part}_predictions"][row["epoch"] - 1].numpy()
                macro = {"average": "macro", "labels": list(range(10)), "zero_division": 0}
                assert row[f"{part}_accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
                assert row[f"{part}_precision"] == pytest.approx(precision_score(y, p, **macro), abs=1e-12)
                assert row[f"{part}_recall"] == pytest.approx(recall_score(y, p, **macro), abs=1e-12)
                assert row[f"{part}_f1"] == pytest.approx(f1_score(y, p, **macro), abs=1e-12)
            # The training loop's own accuracies (from its logits) agree with the stored predictions.
            recorded = history.set_index("epoch").loc[row["epoch"]]
            assert (recorded["val_accuracy"], recorded["test_accuracy"]) == (row["val_accuracy"], row["test_accuracy"])


def test_the_stored_predictions_are_the_kept_models(selected):
    out, _ = selected
    from augcam.models import build_model
    from augcam.selection.runner import prepare_candidates
    from augcam.training import evaluate_predictions

    candidate = prepare_candidates(load_selection("quick-selection", overrides=SMALL))[0]
    p, run = candidate.prepared, candidate.prepared.runs[0]
    folder = out / "candidates" / candidate.label / "models" / run.model_id
    meta = json.loads((folder / "meta.json").read_text())
    model = build_model("small_cnn", 1, 10, 0)
    model.load_state_dict(read_tensors(folder / "weights.safetensors"))
    images = p.test_set.images[p.split.test].float() / 255
    mean, std = torch.tensor(p.mean).view(1, -1, 1, 1), torch.tensor(p.std).view(1, -1, 1, 1)
    _, predictions = evaluate_predictions(model, images, p.test_set.labels[p.split.test], mean, std, None, 64)
    stored = read_tensors(folder / "predictions.safetensors")
    assert torch.equal(predictions, stored["test_predictions"][meta["best_epoch"] - 1])
    assert candidate.parameters == sum(t.numel() for t in model.parameters())


def test_the_small_preset_writes_tables_figures_report_and_a_chosen_study(selected):
    out, result = selected
    for name in ("selection_epochs", "selection_summary"):
        assert (out / "tables" / f"{name}.csv").exists() and (out / "tables" / f"{name}.parquet").exists()
    figures = {p.name for p in (out / "figures").iterdir()}
    stems = [f"selection_test_{s}" for s in ("accuracy", "precision", "recall", "f1")] + ["selection_time"]
    assert figures == {f"{stem}.{suffix}" for stem in stems for suffix in ("png", "svg")}
    summary = pd.read_csv(out / "tables" / "selection_summary.csv")
    assert summary["seeds"].tolist() == [2, 2]
    assert summary.set_index("candidate")["layer_height"].to_dict() == {"small_cnn": 7, "tang_cnn": 7}
    assert summary.loc[summary["chosen"], "candidate"].item() == result.chosen
    best = summary.sort_values(["val_accuracy", "train_seconds"], ascending=[False, True]).iloc[0]
    assert best["candidate"] == result.chosen
    chosen = load_config(out / "chosen.yaml")  # a study file `augcam run` accepts as is
    assert chosen.model.name == result.chosen and chosen.name == "quick-chosen"
    expected = load_selection("quick-selection", overrides=SMALL).study
    assert chosen.training == expected.training and chosen.data == expected.data
    html = (out / "report.html").read_text()
    assert "Only validation data choose" in html and result.chosen in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and set(manifest["stages"]) == {"candidates", "tables", "report"}


def test_the_selection_report_opens_in_a_headless_browser(selected):
    from selenium.webdriver.support.ui import WebDriverWait

    out, _ = selected
    driver = _chrome()
    try:
        driver.get((out / "report.html").as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
            )
        )
        images = driver.execute_script("return Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])")
        assert len(images) == 5 and all(w > 0 and h > 0 for w, h in images)
        assert driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)") == []
        assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
        assert "architecture" in driver.execute_script("return document.querySelector('h1').textContent")
    finally:
        driver.quit()


def test_the_chosen_study_runs_end_to_end(selected, tmp_path):
    out, _ = selected
    tiny = {
        "augmentations": ["affine"],
        "seeds": [0],
        "training.epochs": 1,
        "controls": {"identity": False, "baseline_replicas": 0, "sanity_images": 0},
    }
    result = run_study(load_config(out / "chosen.yaml", overrides=tiny), tmp_path / "chosen")
    assert result.manifest["status"] == "complete" and (tmp_path / "chosen" / "report.html").exists()


# --- resume, reuse, bad input ----------------------------------------------------------------------


def _select_cli(out: Path, kill_at: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != KILL_AT_ENV}
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    command = [*AUGCAM, "select", "quick-selection", "--out", str(out), *_set_args(SMALL), *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_a_killed_selection_reuses_finished_candidates_and_resumes_the_others(selected, tmp_path):
    out = tmp_path / "killed"
    first = _select_cli(out, "candidate:0")  # small_cnn done, tang_cnn not started
    assert first.returncode == -9, first.stderr
    second = _select_cli(out, "train:0:1")  # tang_cnn seed 0 killed after its first epoch's checkpoint
    assert second.returncode == -9, second.stderr
    assert list((out / "candidates" / "tang_cnn" / "models").glob("*/checkpoint.safetensors"))
    third = _select_cli(out)
    assert third.returncode == 0, third.stderr
    records = json.loads((out / "manifest.json").read_text())["stages"]["candidates"]["candidates"]
    assert (records["small_cnn"]["reused"], records["small_cnn"]["trained"]) == (2, 0)
    tang = records["tang_cnn"]
    assert (tang["reused"], tang["resumed"], tang["trained"]) == (0, 1, 1)  # seed 0 resumed, seed 1 new
    # Bit for bit what the uninterrupted selection gave.
    got = pd.read_parquet(out / "tables" / "selection_epochs.parquet").drop(columns=SECONDS)
    want = pd.read_parquet(selected[0] / "tables" / "selection_epochs.parquet").drop(columns=SECONDS)
    pd.testing.assert_frame_equal(got, want)
    assert (out / "chosen.yaml").read_text() == (selected[0] / "chosen.yaml").read_text()


def test_the_ray_executor_gives_the_local_tables(selected, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    result = select(load_selection("quick-selection", overrides=SMALL), out, executor="ray")
    got = result.epochs.drop(columns=SECONDS)
    want = pd.read_parquet(selected[0] / "tables" / "selection_epochs.parquet").drop(columns=SECONDS)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
    assert json.loads((out / "manifest.json").read_text())["executor"] == "ray"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"candidates": ["no_such_net"]}, r"candidates\[0\]\.name: .*no_such_net"),
        ({"candidates": [{"name": "small_cnn", "image_sise": 56}]}, r"candidates\[0\]\.image_sise: unknown key"),
        ({"study.training.epoks": 2}, r"study\.training\.epoks: unknown key.*did you mean 'epochs'"),
        ({"tie_tolerance": -1}, r"tie_tolerance: "),
        ({"candidates": ["small_cnn", "small_cnn"]}, r"candidate 'small_cnn' is listed more than once"),
        ({"candidates": [{"name": "small_cnn", "target_layer": "nowhere"}]}, r"candidates\[small_cnn\] .*nowhere"),
    ],
)
def test_bad_input_is_one_message_exit_2_and_writes_nothing(tmp_path, fashion_mnist_available, overrides, message):
    out = tmp_path / "out"
    done = CliRunner().invoke(app, ["select", "quick-selection", "--out", str(out), *_set_args(overrides)])
    assert done.exit_code == 2, done.output
    assert re.search(message, " ".join(done.output.split())), done.output
    assert not out.exists()


def test_a_study_is_not_a_selection_and_back(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["select", "quick", "--out", str(tmp_path / "a")])
    assert done.exit_code == 2 and "not an architecture selection" in done.output
    done = runner.invoke(app, ["run", "quick-selection", "--out", str(tmp_path / "b")])
    assert done.exit_code == 2 and "augcam select" in done.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_both_selection_presets_are_listed():
    done = CliRunner().invoke(app, ["presets"])
    lines = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "(augcam select)" in lines["thesis-selection"] and "(augcam select)" in lines["quick-selection"]
    assert "(augcam select)" not in lines["thesis-cifar10"]


# --- the thesis preset -----------------------------------------------------------------------------


def test_the_thesis_selection_is_the_published_one_and_validates_on_cifar10_files(tmp_path, monkeypatch):
    selection = load_selection("thesis-selection")
    t, d = selection.study.training, selection.study.data
    assert (d.dataset, d.val_fraction, d.image_size) == ("cifar10", 0.1, 224)
    assert (t.epochs, t.batch_size, t.lr, t.weight_decay, t.optimizer) == (30, 32, 1e-3, 1e-5, "adam")
    assert [c.name for c in selection.candidates] == ["efficientnet_b0", "resnet18", "densenet121"]
    assert not selection.study.training.base_augmentations  # trained without augmentation
    _write_cifar(tmp_path)
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path))
    runner = CliRunner()
    done = runner.invoke(app, ["validate", "thesis-selection"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "3 candidates" in text and text.count("224×224 inputs") == 3
    for label in ("EfficientNet-B0", "ResNet-18", "DenseNet-121"):
        assert label in text
    assert runner.invoke(app, ["validate", "thesis-cifar10"]).exit_code == 0


def test_a_selection_study_may_be_a_file_next_to_it(tmp_path):
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"name": "mine", "augmentations": ["affine"]}))
    (tmp_path / "select.yaml").write_text(
        yaml.safe_dump({"name": "s", "study": "mine.yaml", "candidates": ["tang_cnn"]})
    )
    selection = load_selection(tmp_path / "select.yaml", overrides={"study.training.epochs": 3})
    assert selection.study.name == "mine" and selection.study.training.epochs == 3
    assert np.isclose(selection.tie_tolerance, 0.0) and selection.seeds == [0]
