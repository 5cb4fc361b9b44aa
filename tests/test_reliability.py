"""Issue #5: a study survives crashes, reruns and bad input (docs/reliability.md lists the promises).

The crash tests run the real command in subprocesses and kill it with SIGKILL, either at a precise
point named by the test-only AUGCAM_TEST_KILL_AT hook (reproducible on a loaded machine) or from
outside at whatever moment a checkpoint file shows up; the finished tables must then be
bit-identical to those of an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import sigkill_once_a_checkpoint_appears, sigkill_when
from rich.console import Console
from safetensors.torch import load as safetensors_load
from safetensors.torch import save
from typer.testing import CliRunner

from augcam.atomic import read_tensor_metadata, tensor_file_bytes
from augcam.augment import Augmentation, register_augmentation
from augcam.cli import app
from augcam.config import load_config
from augcam.errors import AugcamError
from augcam.metrics.cam_sets import compare_cam_sets
from augcam.pipeline import run_study
from augcam.pipeline.kill_points import KILL_AT_ENV
from augcam.pipeline.plan import model_key, plan
from augcam.pipeline.stages.aggregate import aggregate_over_seeds
from augcam.rundir import RunDir, RunLock

AUGCAM = [sys.executable, "-m", "augcam"]
STUDY = {
    "name": "reliability",
    "data": {"dataset": "fashion-mnist", "train_size": 400, "val_size": 100, "test_size": 200},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 2, "batch_size": 64},
    "augmentations": ["affine"],
    "seeds": [0, 1],
    "cam": {"batch_size": 64},  # 4 CAM batches per model, so a kill can land between two of them
    # One baseline replica (plan position 3) and a short sanity check keep the control stages in every
    # test at little cost; the identity control would only add models like affine's.
    "controls": {"identity": False, "baseline_replicas": 1, "sanity_images": 20},
}
TABLES = ("performance", "metrics", "aggregated", "noise_floor")
TIMING_COLUMNS = ["train_seconds"]  # wall-clock time: the one thing a rerun may not reproduce


def run_cli(study_file: Path, out: Path, kill_at: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != KILL_AT_ENV}
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run(
        [*AUGCAM, "run", str(study_file), "--out", str(out), "--device", "cpu", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_tables(out: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_parquet(out / "tables" / f"{name}.parquet").drop(columns=TIMING_COLUMNS, errors="ignore")
        for name in TABLES
    }


def assert_identical_tables(out: Path, reference: Path) -> None:
    """Same rows, columns, dtypes and bit-identical values (NaN where the reference has NaN)."""
    got, expected = read_tables(out), read_tables(reference)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True)
        for column in expected[name].columns:
            values = expected[name][column]
            if values.dtype.kind == "f":
                assert got[name][column].to_numpy().tobytes() == values.to_numpy().tobytes(), (name, column)


def assert_clean_finish(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert not list(out.rglob("checkpoint.safetensors")), "checkpoints are deleted once their model is complete"
    assert not list(out.rglob("*.tmp")), "no temporary file is left behind"
    assert not (out / ".augcam.lock").exists(), "the lock is released on exit"


@pytest.fixture(scope="module")
def study_file(tmp_path_factory, fashion_mnist_available) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    return path


@pytest.fixture(scope="module")
def reference(study_file, tmp_path_factory) -> Path:
    """An uninterrupted run, in its own process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    done = run_cli(study_file, out)
    assert done.returncode == 0, done.stderr
    assert_clean_finish(out)
    return out


def model_dirs(out: Path) -> dict[str, Path]:
    return {
        path.name.split("-")[0] + ("" if path.name.startswith("baseline") else path.name.split("-")[1]): path
        for path in (out / "models").iterdir()
    }


# --- 1. resume after SIGKILL -------------------------------------------------------------------

# (kill point, what the run directory holds after the kill, what the next run must say it resumes)
# Model positions in the plan: 0 = baseline, 1 = affine seed 0, 2 = affine seed 1, 3 = baseline replica.
KILL_CHAIN = [
    ("train:0:2", "baseline checkpointed after its last epoch, weights not yet written", None),
    ("train:1:1", "mid-training: affine seed 0 checkpointed after epoch 1 of 2", "resume: baseline after epoch 2/2"),
    ("explain:2:2", "mid-CAM: batch 2 of 4 of affine seed 1's CAMs computed", "resume: affine seed 0 after epoch 1/2"),
    (
        "compare:2",
        "mid-metrics: every metric computed, metrics.parquet not yet written",
        "2 CAM sets reused, 2 to compute",
    ),
    ("stage:performance", "performance.parquet written, aggregated.parquet not", "4 CAM sets reused, 0 to compute"),
    ("stage:sanity", "every table written, the report not", "4 CAM sets reused, 0 to compute"),
]


def test_sigkill_at_each_stage_then_rerun_gives_bit_identical_tables(study_file, reference, tmp_path):
    out = tmp_path / "out"
    previous_stderr = ""
    for kill_at, state, expected_resume in KILL_CHAIN:
        done = run_cli(study_file, out, kill_at)
        assert done.returncode == -signal.SIGKILL, f"{kill_at}: {done.returncode}\n{done.stderr}"
        if expected_resume:
            assert expected_resume in done.stderr, f"{kill_at}: the rerun says what it resumes\n{done.stderr}"
        if previous_stderr:
            assert "taking over the lock of a run that ended without releasing it" in done.stderr
        previous_stderr = done.stderr
        models = model_dirs(out)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "running", "a killed run leaves its manifest saying it was running"
        if kill_at == "train:0:2":
            assert sorted(p.name for p in models["baseline"].iterdir()) == ["checkpoint.safetensors"], state
        elif kill_at == "train:1:1":
            assert (models["baseline"] / "weights.safetensors").exists() and not (
                models["baseline"] / "checkpoint.safetensors"
            ).exists(), state
            assert sorted(p.name for p in models["affines0"].iterdir()) == ["checkpoint.safetensors"], state
        elif kill_at == "explain:2:2":
            assert len(list((out / "cams").iterdir())) == 2 and not (out / "tables").exists(), state
        elif kill_at == "compare:2":
            assert len(list((out / "cams").iterdir())) == 4 and not (out / "tables").exists(), state
        elif kill_at == "stage:performance":
            assert sorted(p.name for p in (out / "tables").iterdir()) == ["metrics.parquet", "performance.parquet"]
        elif kill_at == "stage:sanity":
            assert {"aggregated.parquet", "noise_floor.parquet", "sanity.csv"} <= {
                p.name for p in (out / "tables").iterdir()
            } and not (out / "report.html").exists(), state
    done = run_cli(study_file, out)
    assert done.returncode == 0, done.stderr
    assert "4 reused" in done.stderr and "4 CAM sets reused, 0 to compute" in done.stderr
    assert (out / "report.html").is_file()
    assert_identical_tables(out, reference)
    assert_clean_finish(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["previous_run"]["status"] == "running", "the manifest records that the last run was killed"
    # The resumed models record it, and were trained for all their epochs.
    meta = json.loads((model_dirs(out)["affines0"] / "meta.json").read_text())
    assert meta["resumed_after_epoch"] == 1 and meta["epochs"] == 2


def test_sigkill_from_outside_mid_training_then_rerun_gives_bit_identical_tables(study_file, reference, tmp_path):
    """No hook: the process is killed whenever a model's first checkpoint shows up."""
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != KILL_AT_ENV}
    # Usually the kill lands within the model's last epochs; rarely just after it was finished.
    left_checkpoint = sigkill_once_a_checkpoint_appears(
        [*AUGCAM, "run", str(study_file), "--out", str(out), "--device", "cpu"], out, env
    )
    assert (out / ".augcam.lock").exists(), "the killed run left its lock"
    done = run_cli(study_file, out)
    assert done.returncode == 0, done.stderr
    assert ("resume: affine seed" in done.stderr) == left_checkpoint, done.stderr
    assert_identical_tables(out, reference)
    assert_clean_finish(out)


def test_sigkill_mid_report_then_rerun_gives_the_same_csv_tables(reference, tmp_path):
    """`augcam report` (stage 5, a separate command) killed from outside while it draws figures."""
    from augcam.analysis import analyse, load_run

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    figures = out / "figures"
    sigkill_when([*AUGCAM, "report", str(out)], lambda: figures.is_dir() and any(figures.iterdir()), "a figure")
    assert_identical_tables(out, reference)  # the run's own tables are untouched
    done = subprocess.run([*AUGCAM, "report", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").is_file()
    expected = analyse(load_run(reference)).csv_files()
    assert {name: (out / "tables" / name).read_text() for name in expected} == expected


# --- 2. caching by content ------------------------------------------------------------------------


def _ids(config: dict) -> list[str]:
    return [run.model_id for run in plan(load_config(config), "fingerprint")]


WEIGHT_SETTINGS = [
    ("training.epochs", 3),
    ("training.batch_size", 32),
    ("training.lr", 2e-3),
    ("training.weight_decay", 0.0),
    ("training.init_seed", 1),
    ("training.ordering_seed", 1),
    ("training.eval_batch_size", 100),
    ("model.name", "resnet18"),
    ("data.image_size", 32),
    ("training.base_augmentations", ["horizontal_flip"]),
]
ANALYSIS_SETTINGS = [
    ("metrics.overlap_percentages", [50]),
    ("metrics.kld_eps", 1e-6),
    ("cam.target", "label"),
    ("cam.batch_size", 16),
    ("model.target_layer", "features.0"),
    ("name", "renamed"),
    ("description", "x"),
    ("device", "cpu"),
]


def _with(config: dict, dotted: str, value) -> dict:
    changed = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return changed


@pytest.mark.parametrize("dotted,value", WEIGHT_SETTINGS, ids=[s[0] for s in WEIGHT_SETTINGS])
def test_every_setting_that_determines_weights_changes_every_model_id(dotted, value):
    before, after = _ids(STUDY), _ids(_with(STUDY, dotted, value))
    assert not set(before) & set(after)


@pytest.mark.parametrize("dotted,value", ANALYSIS_SETTINGS, ids=[s[0] for s in ANALYSIS_SETTINGS])
def test_analysis_settings_keep_every_model_id(dotted, value):
    assert _ids(STUDY) == _ids(_with(STUDY, dotted, value))


def test_model_id_covers_data_augmentation_parameters_seed_copies_and_code_version(monkeypatch):
    config = load_config(STUDY)
    baseline, affine0, affine1 = plan(config, "fingerprint")
    assert affine0.model_id != affine1.model_id, "the seed"
    assert [r.model_id for r in plan(config, "other data")] != [baseline.model_id, affine0.model_id, affine1.model_id]
    params = _ids(_with(STUDY, "augmentations", [{"name": "affine", "degrees": 5}]))
    assert params[0] == baseline.model_id and params[1] != affine0.model_id, "augmentation parameters"
    copies = _ids(_with(STUDY, "training.copies", 2))
    assert copies[0] == baseline.model_id and copies[1] != affine0.model_id, "copies change augmented models only"
    key = model_key(config, "fingerprint", config.augmentations[0], 0)
    assert key["training_code"] == 1
    monkeypatch.setattr("augcam.pipeline.plan.TRAINING_CODE_VERSION", 2)
    assert not set(_ids(STUDY)) & {baseline.model_id, affine0.model_id, affine1.model_id}, "code version"


def _run_in_process(config: dict, out: Path) -> tuple[object, str]:
    buffer = io.StringIO()
    result = run_study(config, out, device="cpu", console=Console(file=buffer, width=200))
    return result, buffer.getvalue()


def test_adding_an_augmentation_and_a_seed_trains_only_the_new_models(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    stamps = {
        path: (path.stat().st_mtime_ns, path.read_bytes()) for path in (out / "models").rglob("*") if path.is_file()
    }
    bigger = {**STUDY, "augmentations": ["affine", "gaussian_blur"], "seeds": [0, 1, 2]}
    result, log = _run_in_process(bigger, out)
    train = result.manifest["stages"]["train"]
    assert (train["reused"], train["trained"], train["resumed"]) == (4, 4, 0)
    assert (
        "4 reused" in log
        and "train on cpu: 4 (affine seed 2, gaussian_blur seed 0, gaussian_blur seed 1, gaussian_blur seed 2)" in log
    )
    assert "4 CAM sets reused, 4 to compute" in log
    for path, stamp in stamps.items():
        assert (path.stat().st_mtime_ns, path.read_bytes()) == stamp, f"{path} was rewritten"
    # The reused models' metric rows are those of the smaller study.
    metrics = read_tables(out)["metrics"].set_index(["model_id", "image_index"])
    old = read_tables(reference)["metrics"].set_index(["model_id", "image_index"])
    pd.testing.assert_frame_equal(metrics.loc[old.index], old, check_exact=True)


def test_changing_only_analysis_settings_retrains_nothing(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    result, log = _run_in_process({**STUDY, "metrics": {"overlap_percentages": [50, 25]}}, out)
    assert result.manifest["stages"]["train"]["trained"] == 0 and result.manifest["stages"]["explain"]["computed"] == 0
    assert "train: 4 models — 4 reused" in log and "4 CAM sets reused, 0 to compute" in log
    assert {"overlap_50", "overlap_25"} <= set(result.metrics.columns) and "overlap_20" not in result.metrics.columns
    result, log = _run_in_process({**STUDY, "cam": {"batch_size": 64, "target": "label"}}, out)
    assert result.manifest["stages"]["train"]["trained"] == 0
    assert "4 CAM sets reused" not in log and "0 CAM sets reused, 4 to compute" in log


# --- 3. determinism and the manifest --------------------------------------------------------------

# Files that record wall-clock times or the process id; everything else in a run directory must be
# the same bytes in a rerun.
TIMED_FILES = (
    "manifest.json",
    "report.html",
    "tables/performance.parquet",
    "models/*/meta.json",
    "models/*/history.parquet",
)


def test_tensor_files_are_the_same_bytes_whatever_the_metadata_order(tmp_path):
    tensors = {"raw": torch.arange(6.0).reshape(2, 3), "labels": torch.tensor([1, 2])}
    metadata = {f"key{index}": str(index) for index in range(8)}
    files = {
        tensor_file_bytes(tensors, dict(reversed(list(metadata.items())) if turn % 2 else metadata.items()))
        for turn in range(20)
    }
    # safetensors' own writer orders the metadata differently from call to call.
    assert len({save(tensors, metadata=metadata) for _ in range(20)}) > 1
    assert len(files) == 1
    data = files.pop()
    assert int.from_bytes(data[:8], "little") % 8 == 0
    assert safetensors_load(data).keys() == tensors.keys()
    assert all(torch.equal(safetensors_load(data)[name], tensor) for name, tensor in tensors.items())
    path = tmp_path / "file.safetensors"
    path.write_bytes(data)
    assert read_tensor_metadata(path) == metadata


def test_two_fresh_runs_give_bit_identical_files_and_a_complete_manifest(reference, tmp_path):
    result, _ = _run_in_process(STUDY, tmp_path / "again")
    assert_identical_tables(result.out, reference)
    files = sorted(path.relative_to(reference) for path in reference.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(result.out) for path in result.out.rglob("*") if path.is_file())
    compared = [path for path in files if not any(path.match(pattern) for pattern in TIMED_FILES)]
    assert len(compared) > 50 and any(path.suffix == ".safetensors" for path in compared)
    different = [str(path) for path in compared if (reference / path).read_bytes() != (result.out / path).read_bytes()]
    assert not different, f"a rerun wrote other bytes to {different}"
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["config_hash"] == load_config({**STUDY, "device": "cpu"}).config_hash()  # --device cpu
    assert {"augcam", "python", "torch", "torchvision", "numpy", "pandas", "safetensors"} <= set(manifest["versions"])
    assert manifest["device"] == "cpu" and manifest["device_name"]
    assert manifest["deterministic"]["use_deterministic_algorithms"] is True
    assert manifest["deterministic"]["cudnn_benchmark"] is False
    assert manifest["seeds"] == {"split": 0, "init": 0, "ordering": 0, "augmentation": [0, 1]}
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
    for stage in manifest["stages"].values():
        assert stage["status"] == "complete" and stage["seconds"] >= 0
    assert {model["status"] for model in manifest["models"].values()} == {"complete"}
    assert manifest["status"] == "complete" and manifest["finished"] and manifest["seconds"] > 0


# --- 4. storage: locks, temporary files, formats ---------------------------------------------------


def test_a_directory_in_use_is_refused_and_a_stale_lock_is_taken_over(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    with (
        RunLock(out / ".augcam.lock"),
        pytest.raises(
            AugcamError,
            match=rf"{re.escape(str(out))}: in use by another augcam run "
            rf"\(pid {os.getpid()} on host ",
        ),
    ):
        _run_in_process(STUDY, out)
    assert not (out / ".augcam.lock").exists()
    # A lock file whose holder died (no flock on it) is taken over.
    (out / ".augcam.lock").write_text(json.dumps({"pid": 999999999, "host": "elsewhere", "started": "then"}))
    # ... as are the temporary files a killed writer left.
    stale = out / "tables" / ".metrics.parquet.abc123.tmp"
    stale.write_bytes(b"half a file")
    _, log = _run_in_process(STUDY, out)
    assert "taking over the lock of a run that ended without releasing it (pid 999999999 on host elsewhere" in log
    assert "removed 1 temporary file(s) left by an interrupted run" in log
    assert not stale.exists() and not (out / ".augcam.lock").exists()


def test_lock_is_released_when_the_run_fails(reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference, out)

    def broken_compare(self, ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("augcam.pipeline.stages.compare.CompareStage.run", broken_compare)
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run_in_process(STUDY, out)
    assert not (out / ".augcam.lock").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "RuntimeError: disk on fire"
    assert manifest["stages"]["explain"]["status"] == "complete" and "aggregate" not in manifest["stages"]
    with RunLock(out / ".augcam.lock"):
        pass  # free again


def test_run_lock_excludes_a_second_holder_in_the_same_process(tmp_path):
    path = tmp_path / ".augcam.lock"
    with RunLock(path) as first:
        assert json.loads(path.read_text())["pid"] == os.getpid() and first.previous_holder is None
        with pytest.raises(AugcamError, match="in use by another augcam run"):
            RunLock(path).acquire()
    assert not path.exists()
    with RunLock(path):
        pass


def test_damaged_stored_files_are_recomputed_not_trusted(reference, tmp_path):
    """Atomic writes rule out half-written files; damage from outside costs a recomputation."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    cams = sorted((out / "cams").glob("affine-s1-*.safetensors"))[0]
    cams.write_bytes(b"garbage")
    meta = sorted((out / "models").glob("affine-s0-*/meta.json"))[0]
    meta.write_text("{not json")
    result, log = _run_in_process(STUDY, out)
    log = " ".join(log.split())  # undo the console's line wrapping
    assert (
        "unreadable" in log and "training affine seed 0 again" in log and "recomputing the CAMs of affine seed 1" in log
    )
    assert result.manifest["stages"]["train"]["trained"] == 1
    # Only the damaged CAM set: the retrained model has the same id (same key), so its stored CAMs still apply.
    assert result.manifest["stages"]["explain"]["computed"] == 1
    assert_identical_tables(out, reference)


def test_stored_files_are_safetensors_parquet_and_json_and_nothing_is_pickled(reference):
    files = [path for path in reference.rglob("*") if path.is_file()]
    suffixes = {path.suffix for path in files}
    # Stored data: tensors, tables, metadata; the rest is the report (HTML, CSV, figures).
    assert suffixes == {".safetensors", ".parquet", ".json", ".yaml", ".csv", ".png", ".svg", ".html"}, suffixes
    source = Path(__file__).parents[1] / "src" / "augcam"
    loads = [
        f"{path}:{number}"
        for path in source.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "torch.load(" in line and "weights_only=True" not in line
    ]
    assert not loads, f"torch.load without weights_only=True: {loads}"


# --- 5. bad input at the command line: one message, exit 2, no traceback, nothing written ----------


def _write_idx(path: Path, array: np.ndarray, magic: bytes | None = None) -> None:
    header = magic or struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_fashion_root(root: Path, damage: str | None = None) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 200), ("t10k", 50)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    if damage == "truncated":
        data = (root / "t10k-images-idx3-ubyte").read_bytes()
        (root / "t10k-images-idx3-ubyte").write_bytes(data[: len(data) // 2])
    elif damage == "wrong-magic":
        _write_idx(root / "train-labels-idx1-ubyte", np.arange(200) % 10, magic=b"\x08\x00\x00\x01")
    return root


def _fake_cifar_root(root: Path) -> Path:
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        width = 3000 if name == "data_batch_3" else 3072  # one batch of 3000-byte images: wrong shape
        batch = {b"data": rng.integers(0, 256, (20, width), dtype=np.uint8), b"labels": [i % 10 for i in range(20)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    return root


def _unwritable_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "read-only"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "out"
    # root writes through file modes; sysfs refuses new entries even to root.
    return Path("/sys/augcam-test-out")


# id: (config changes, extra CLI arguments, how `out` is set up, expected message)
BAD_INPUT = {
    "yaml-syntax": ({"__text__": "name: [unclosed\n"}, [], None, r"study\.yaml:\d+:\d+: invalid YAML"),
    "misspelled-key": ({"training": {"epocs": 2}}, [], None, r"training\.epocs: unknown key; did you mean 'epochs'"),
    "wrong-type": ({"training": {"batch_size": "big"}}, [], None, r"training\.batch_size: .*valid integer.*'big'"),
    "boolean-for-number": ({"training": {"epochs": True}}, [], None, r"training\.epochs: expected .*int.*boolean"),
    "negative-epochs": ({}, ["--set", "training.epochs=-1"], None, r"training\.epochs: Input should be greater than 0"),
    "overlap-outside-0-100": (
        {"metrics": {"overlap_percentages": [20, 0]}},
        [],
        None,
        r"metrics\.overlap_percentages: each percentage must be in \(0, 100\], got 0",
    ),
    "empty-augmentations": ({"augmentations": []}, [], None, r"augmentations: List should have at least 1 item"),
    "duplicate-augmentation": ({"augmentations": ["affine", "affine"]}, [], None, r"'affine' is listed more than once"),
    "duplicate-label": (
        {"augmentations": [{"name": "affine", "label": "x"}, {"name": "cutmix", "label": "x"}]},
        [],
        None,
        r"'x' is listed more than once",
    ),
    "same-augmentation-twice": (
        {"augmentations": [{"name": "affine", "label": "a"}, {"name": "affine", "label": "b"}]},
        [],
        None,
        r"'a' and 'b' are the same augmentation",
    ),
    "unknown-augmentation": (
        {"augmentations": ["affine", "rotate"]},
        [],
        None,
        r"unknown augmentation 'rotate' \(valid: affine, .*\)",
    ),
    "unknown-model": (
        {"model": {"name": "resnet81"}},
        [],
        None,
        r"model\.name: unknown model 'resnet81'; did you mean 'resnet18'\? \(valid: .*small_cnn",
    ),
    "unknown-layer": (
        {"model": {"name": "small_cnn", "target_layer": "conv9"}},
        [],
        None,
        r"model\.target_layer: .* no layer 'conv9'.*\(its last convolutional layers and blocks: .*features",
    ),
    "bad-set-syntax": ({}, ["--set", "training.epochs"], None, r"--set 'training\.epochs': expected KEY=VALUE"),
    "unknown-preset": (
        {"__source__": "quik"},
        [],
        None,
        r"'quik' is neither a study file nor a preset; did you mean 'quick'",
    ),
    "missing-study-file": ({"__source__": "missing.yaml"}, [], None, r"missing\.yaml: no such study file"),
    "missing-data": (
        {"data": {"root": "__nowhere__"}},
        [],
        None,
        r"Fashion-MNIST not found: looked for train-images-idx3-ubyte.*does not exist",
    ),
    "truncated-idx": (
        {"data": {"root": "__truncated__"}},
        [],
        None,
        r"t10k-images-idx3-ubyte: truncated: header says 50×28×28 = 39200 bytes of data, file has",
    ),
    "idx-wrong-magic": (
        {"data": {"root": "__wrong-magic__"}},
        [],
        None,
        r"train-labels-idx1-ubyte: not an IDX file \(magic bytes 0x08000001, expected 0x0000TTNN",
    ),
    "cifar-wrong-shape": (
        {"data": {"dataset": "cifar10", "root": "__cifar__"}},
        [],
        None,
        r"data_batch_3: 'data' should be a uint8 array of shape \(n, 3072\), found uint8 array "
        r"of shape \(20, 3000\)",
    ),
    "other-study-dir": ({}, [], "other-study", r"holds the run of study 'someone-else', not 'tiny'.*--force"),
    "out-is-a-file": ({}, [], "file", r"out: is a file, not a directory"),
    "unwritable-out": (
        {},
        [],
        "unwritable",
        r"cannot (create|write) the run directory \((Permission denied|"
        r"Operation not permitted)\)",
    ),
    "dir-in-use": ({}, [], "locked", r"in use by another augcam run \(pid \d+ on host .*wait for it to finish"),
    "cuda-without-gpu": ({}, ["--device", "cuda"], None, r"device 'cuda' was requested but no CUDA GPU is available"),
    "bad-device-name": ({}, ["--device", "gpu"], None, r"device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
}


def _listing(out: Path) -> list | None:
    if out.is_file():
        return [out.read_bytes()]
    return sorted((str(p.relative_to(out)), p.stat().st_size) for p in out.rglob("*")) if out.exists() else None


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_bad_input(tmp_path, case):
    changes, extra, out_setup, expected = BAD_INPUT[case]
    if case == "cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    roots = {
        "__nowhere__": tmp_path / "nowhere",
        "__truncated__": _fake_fashion_root(tmp_path / "t", "truncated"),
        "__wrong-magic__": _fake_fashion_root(tmp_path / "m", "wrong-magic"),
        "__cifar__": _fake_cifar_root(tmp_path / "cifar"),
    }
    config = {
        "name": "tiny",
        "data": {
            "dataset": "fashion-mnist",
            "root": str(_fake_fashion_root(tmp_path / "ok")),
            "train_size": 100,
            "val_size": 20,
            "test_size": 20,
        },
        "model": {"name": "small_cnn"},
        "training": {"epochs": 1, "batch_size": 32},
        "augmentations": ["affine"],
        "seeds": [0],
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        elif not key.startswith("__"):
            config[key] = value
    if str(config["data"].get("root")) in roots:
        config["data"]["root"] = str(roots[config["data"]["root"]])
    study = tmp_path / "study.yaml"
    study.write_text(changes.get("__text__") or yaml.safe_dump(config))
    source = (
        str(tmp_path / changes["__source__"])
        if changes.get("__source__", "").endswith(".yaml")
        else changes.get("__source__", str(study))
    )
    out = tmp_path / "out"
    lock = None
    if out_setup == "other-study":
        out.mkdir()
        (out / "study.yaml").write_text(yaml.safe_dump({"name": "someone-else"}))
        (out / "manifest.json").write_text(json.dumps({"augcam_version": "0.1.0"}))  # an augcam run's
    elif out_setup == "file":
        out.write_text("not a directory")
    elif out_setup == "unwritable":
        out = _unwritable_dir(tmp_path)
    elif out_setup == "locked":
        out.mkdir()
        lock = RunLock(out / ".augcam.lock")
        lock.acquire()
    before = _listing(out)
    try:
        result = CliRunner().invoke(app, ["run", source, "--out", str(out), *extra])
    finally:
        if lock is not None:
            lock.release()
    message = result.stderr.replace("\n", " ")
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), "no traceback: the error is reported, not raised"
    assert re.search(expected, message), message
    assert result.stderr.count("error:") == 1 and result.stdout == ""
    if lock is None:
        assert _listing(out) == before, "a refused run writes nothing"


def test_real_command_exits_2_without_traceback_and_debug_shows_it(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "t", "augmentations": ["afine"]}))
    plain = subprocess.run(
        [*AUGCAM, "run", str(study), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "unknown augmentation 'afine'; did you mean 'affine'?" in plain.stderr
    debug = subprocess.run(
        [*AUGCAM, "run", str(study), "--out", str(tmp_path / "out"), "--debug"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    assert not (tmp_path / "out").exists()


def test_force_reuses_a_directory_that_holds_another_study(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    renamed = {**STUDY, "name": "renamed"}
    with pytest.raises(AugcamError, match="holds the run of study 'reliability', not 'renamed'"):
        _run_in_process(renamed, out)
    result = run_study(renamed, out, device="cpu", force=True, console=Console(file=io.StringIO()))
    assert result.manifest["stages"]["train"]["reused"] == 4, "model ids do not depend on the study's name"
    assert RunDir(out).read_study()["name"] == "renamed"


# --- 6. numerical edge cases ----------------------------------------------------------------------


@register_augmentation
class NanPixels(Augmentation):
    """Test-only: poisons its copies with NaN, so the model that trains on them diverges."""

    name = "test_nan_pixels"

    def __call__(self, images, generator):
        return images * float("nan")


def test_a_diverging_model_is_reported_and_the_study_goes_on(tmp_path, fashion_mnist_available):
    study = {
        **STUDY,
        "data": {**STUDY["data"], "train_size": 200, "test_size": 100},
        "seeds": [0],
        "augmentations": ["affine", "test_nan_pixels"],
    }
    result, log = _run_in_process(study, tmp_path / "out")
    assert "model test_nan_pixels seed 0" in log and "diverged" in log and "the study goes on without it" in log
    statuses = {m["augmentation"]: m for m in result.manifest["models"].values()}
    assert statuses["test_nan_pixels"]["status"] == "diverged"
    assert "training loss became nan in epoch 1" in statuses["test_nan_pixels"]["error"]
    assert statuses["affine"]["status"] == statuses["baseline"]["status"] == "complete"
    assert result.manifest["status"] == "complete" and result.manifest["stages"]["train"]["failed"] == 1
    performance = result.performance.set_index("augmentation")
    assert performance.loc["test_nan_pixels", "status"] == "diverged"
    assert np.isnan(performance.loc["test_nan_pixels", "test_accuracy"])
    assert performance.loc["affine", "status"] == "complete" and performance.loc["affine", "test_accuracy"] > 0
    assert set(result.metrics.augmentation) == {"affine"} and set(result.aggregated.augmentation) == {"affine"}
    assert not list((tmp_path / "out").rglob("checkpoint.safetensors"))
    # A rerun does not train it again: with the same settings it would diverge again.
    again, log = _run_in_process(study, tmp_path / "out")
    assert again.manifest["stages"]["train"]["trained"] == 0
    assert "1 of them failed earlier: test_nan_pixels seed 0" in log


def test_a_diverging_baseline_stops_the_study_with_a_clear_message(tmp_path, fashion_mnist_available):
    study = {
        **STUDY,
        "data": {**STUDY["data"], "train_size": 100, "test_size": 20},
        "seeds": [0],
        "training": {"epochs": 1, "batch_size": 64, "lr": 1e30},
    }
    with pytest.raises(AugcamError, match=r"the baseline model failed \(diverged: training loss became nan"):
        _run_in_process(study, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and not (tmp_path / "out" / ".augcam.lock").exists()


def _cam_set(raw, logits):
    raw = torch.as_tensor(raw, dtype=torch.float32)
    logits = torch.as_tensor(logits, dtype=torch.float32)
    return {"raw": raw, "logits": logits, "predictions": logits.argmax(1)}


def test_constant_and_all_zero_cams_give_nan_correlations_not_errors():
    rng = torch.Generator().manual_seed(0)
    varied = torch.rand(4, 7, 7, generator=rng)
    base = _cam_set(varied, torch.zeros(4, 3))
    other_maps = varied.clone()
    other_maps[0] = 0.0  # all zero
    other_maps[1] = 0.5  # constant
    values = compare_cam_sets(
        base, _cam_set(other_maps, torch.zeros(4, 3)), (28, 28), [20, 10], 1e-10, torch.device("cpu")
    )
    for metric in ("pearson", "spearman"):
        assert np.isnan(values[metric][:2]).all() and np.isfinite(values[metric][2:]).all()
    for metric in ("mad", "msd", "overlap_20", "overlap_10", "class_kld"):
        assert np.isfinite(values[metric]).all(), metric
    assert values["pearson"][2] == pytest.approx(1.0) and values["mad"][3] == 0.0


def test_nan_and_inf_logits_and_zero_probabilities_in_class_kld():
    maps = torch.rand(4, 7, 7, generator=torch.Generator().manual_seed(1))
    base_logits = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -800.0, 0.0], [0.0, 0.0, 0.0]]
    other_logits = [[float("nan"), 0.0, 0.0], [float("inf"), 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -800.0, 0.0]]
    values = compare_cam_sets(
        _cam_set(maps, base_logits), _cam_set(maps, other_logits), (28, 28), [20], 1e-10, torch.device("cpu")
    )
    kld = values["class_kld"]
    assert np.isnan(kld[0]) and np.isnan(kld[1]), "non-finite logits make the divergence undefined"
    assert kld[2] == np.inf, "the baseline gives a class probability 0 (exp(-800) underflows), the model does not"
    assert np.isfinite(kld[3]), "a zero probability in the model's distribution contributes 0"
    assert (values["mad"] == 0).all(), "the maps themselves are unaffected"


def test_aggregate_skips_undefined_values_of_single_seeds():
    metrics = pd.DataFrame(
        {
            "model_id": ["a0", "a1", "a0", "a1"],
            "augmentation": "a",
            "seed": [0, 1, 0, 1],
            "image_index": [5, 5, 6, 6],
            "label": [1, 1, 2, 2],
            "baseline_pred": [1, 1, 2, 2],
            "model_pred": [1, 1, 2, 2],
            "pearson": [np.nan, 0.5, np.nan, np.nan],
            "class_kld": [0.1, np.inf, 0.2, 0.4],
        }
    )
    aggregated = aggregate_over_seeds(metrics).set_index("image_index")
    assert aggregated.loc[5, "pearson"] == 0.5, "the mean over the seeds where it is defined"
    assert np.isnan(aggregated.loc[6, "pearson"]), "NaN only where no seed defines it"
    assert aggregated.loc[5, "class_kld"] == np.inf and aggregated.loc[6, "class_kld"] == pytest.approx(0.3)
    assert (aggregated.n_models == 2).all()
