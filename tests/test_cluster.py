"""A study on a Ray cluster gives the local executor's tables, and survives lost workers.

The cluster is a real one of two Ray nodes of one CPU each on this machine
(`ray.cluster_utils.Cluster`), so tasks run in separate worker processes that are scheduled,
killed and retried by Ray. The config and command-line checks need no Ray.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import sigkill_once_a_checkpoint_appears
from rich.console import Console
from typer.testing import CliRunner

from augcam.cli import app
from augcam.config import load_config
from augcam.errors import AugcamError
from augcam.pipeline import run_study
from augcam.pipeline.kill_points import KILL_AT_ENV
from augcam.pipeline.plan import plan

AUGCAM = [sys.executable, "-m", "augcam"]
STUDY = {
    "name": "cluster",
    "data": {"dataset": "fashion-mnist", "train_size": 300, "val_size": 100, "test_size": 100},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 2, "batch_size": 64},
    "augmentations": ["affine"],
    "seeds": [0, 1],
    "cam": {"batch_size": 50},
    # Plan positions: 0 = baseline, 1 = affine seed 0, 2 = affine seed 1, 3 = baseline replica.
    "controls": {"identity": False, "baseline_replicas": 1, "sanity_images": 20},
}
PARQUET = ("performance", "metrics", "aggregated", "noise_floor")


def assert_same_tables(out: Path, reference: Path) -> None:
    """Every table of the run equals the reference's, value for value (wall-clock seconds aside):
    the Parquet tables with bit-identical floats, and every CSV the report writes, byte for byte."""
    for name in PARQUET:
        got = pd.read_parquet(out / "tables" / f"{name}.parquet").drop(columns=["train_seconds"], errors="ignore")
        expected = pd.read_parquet(reference / "tables" / f"{name}.parquet").drop(
            columns=["train_seconds"], errors="ignore"
        )
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        for column in expected.columns:
            if expected[column].dtype.kind == "f":
                assert got[column].to_numpy().tobytes() == expected[column].to_numpy().tobytes(), (name, column)
    csvs = sorted(path.name for path in (reference / "tables").glob("*.csv"))
    assert "sanity.csv" in csvs and len(csvs) > 10
    assert sorted(path.name for path in (out / "tables").glob("*.csv")) == csvs
    for name in csvs:
        assert (out / "tables" / name).read_text() == (reference / "tables" / name).read_text(), name


def meta_of(out: Path, prefix: str) -> dict:
    return json.loads(next((out / "models").glob(f"{prefix}*/meta.json")).read_text())


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


# --- config and command line (no cluster needed) -----------------------------------------------------


def test_resources_are_validated_and_stay_out_of_model_ids():
    config = load_config(STUDY)
    assert (config.resources.cpus_per_model, config.resources.gpus_per_model, config.resources.max_retries) == (
        1.0,
        None,
        3,
    )
    ids = [run.model_id for run in plan(config, "fingerprint")]
    other = load_config({**STUDY, "resources": {"cpus_per_model": 2, "gpus_per_model": 0.25, "max_retries": 0}})
    assert [run.model_id for run in plan(other, "fingerprint")] == ids, "resources do not change the weights"
    for resources, message in [
        ({"cpus_per_model": 0}, r"resources\.cpus_per_model: Input should be greater than 0"),
        ({"gpus_per_model": -0.5}, r"resources\.gpus_per_model: .*greater than or equal to 0"),
        ({"gpus_per_model": 2}, r"resources\.gpus_per_model: .*less than or equal to 1"),
        ({"max_retries": -1}, r"resources\.max_retries: .*greater than or equal to 0"),
        ({"cpu_per_model": 1}, r"unknown key; did you mean 'cpus_per_model'"),
    ]:
        with pytest.raises(AugcamError, match=message):
            load_config({**STUDY, "resources": resources})
    with pytest.raises(AugcamError, match=r"gpus_per_model: 0\.5 asks for GPUs, but device is 'cpu'"):
        load_config({**STUDY, "device": "cpu", "resources": {"gpus_per_model": 0.5}})
    with pytest.raises(AugcamError, match=r"gpus_per_model: 0 gives the models no GPU, but device is 'cuda'"):
        load_config({**STUDY, "device": "cuda", "resources": {"gpus_per_model": 0}})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "case",
    ["address-without-ray", "unknown-executor", "ray-not-installed", "unreachable-address", "ray-client-address"],
)
def test_cli_executor_errors_are_one_line_and_exit_2(case, tmp_path, monkeypatch, fashion_mnist_available):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    args, expected = {
        "address-without-ray": (["--address", "auto"], r"--address names a Ray cluster: use it with --executor ray"),
        "unknown-executor": (["--executor", "dask"], r"--executor: expected local or ray, got 'dask'"),
        "ray-not-installed": (
            ["--executor", "ray"],
            r"--executor ray needs Ray, which is not installed: "
            r"pip install 'augcam\[ray\]'",
        ),
        "unreachable-address": (
            ["--executor", "ray", "--address", f"127.0.0.1:{_free_port()}"],
            r"--address 127\.0\.0\.1:\d+: cannot reach a Ray cluster there \(.*refused",
        ),
        "ray-client-address": (
            ["--executor", "ray", "--address", "ray://head:10001"],
            r"Ray Client addresses \(ray://\) are not supported",
        ),
    }[case]
    if case == "ray-not-installed":
        monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` then raises ImportError
    elif case in ("unreachable-address", "ray-client-address"):
        pytest.importorskip("ray")
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--device", "cpu", *args])
    message = result.stderr.replace("\n", " ")
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), "no traceback"
    assert re.search(expected, message), message
    assert result.stderr.count("error:") == 1 and not out.exists(), "a refused run writes nothing"


# --- on a two-node Ray cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    # cluster_utils gives each node a 150 MiB object store by default; the prepared study alone is
    # ~55 MB (the whole Fashion-MNIST arrays), and a killed driver's objects linger for a while.
    store = 600 * 1024**2
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    nodes.add_node(num_cpus=1, object_store_memory=store)
    ray.init(address=nodes.address, log_to_driver=False)
    yield nodes
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist_available) -> Path:
    """The local executor's run of the study, in this process."""
    out = tmp_path_factory.mktemp("local") / "out"
    run_study(STUDY, out, device="cpu", console=quiet())
    return out


def test_ray_executor_gives_the_local_executors_tables(cluster, reference, tmp_path):
    out = tmp_path / "out"
    log = io.StringIO()
    result = run_study(STUDY, out, device="cpu", executor="ray", console=Console(file=log, width=200))
    assert_same_tables(out, reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["executor"] == "ray"
    info = manifest["ray"]
    assert info["address"] == cluster.address and len(info["nodes"]) == 2
    assert info["cluster_resources"]["CPU"] == 2 and info["cpus_per_model"] == 1 and info["gpus_per_model"] == 0
    assert info["worker_torch_threads"] == manifest["torch_threads"]
    models = manifest["models"].values()
    assert {model["attempts"] for model in models} == {1}
    assert len({model["node_id"] for model in models}) == 2, "the models ran on both nodes"
    assert result.manifest["stages"]["train"]["trained"] == 4 and result.manifest["stages"]["explain"]["computed"] == 4
    assert (
        "train on ray (cpu, 2 node(s)): 4 (baseline, affine seed 0, affine seed 1, baseline replica ordering+1)"
        in log.getvalue()
    )
    assert not list(out.rglob("checkpoint.safetensors")) and not list(out.rglob("*.tmp"))
    # Rerun: everything is reused, nothing is sent to the cluster.
    again = run_study(STUDY, out, device="cpu", executor="ray", console=quiet())
    assert again.manifest["stages"]["train"]["reused"] == 4 and again.manifest["stages"]["explain"]["computed"] == 0
    assert_same_tables(out, reference)


def test_worker_killed_mid_training_is_retried_and_resumes_from_its_checkpoint(
    cluster, reference, tmp_path, monkeypatch
):
    """The test-only hook kills the worker process (SIGKILL) right after affine seed 0's epoch-1
    checkpoint reached the run directory; the retried task does not reach that point again."""
    monkeypatch.setenv(KILL_AT_ENV, "train:1:1")
    out = tmp_path / "out"
    result = run_study(STUDY, out, device="cpu", executor="ray", console=quiet())
    meta = meta_of(out, "affine-s0-")
    assert meta["resumed_after_epoch"] == 1 and meta["epochs"] == 2
    model = result.manifest["models"][meta["model_id"]]
    assert model["attempts"] == 2, "Ray ran the task a second time"
    assert all("resumed_after_epoch" not in meta_of(out, prefix) for prefix in ("baseline-6", "affine-s1-"))
    assert_same_tables(out, reference)
    assert not list(out.rglob("checkpoint.safetensors"))


def test_worker_killed_from_outside_is_retried_and_the_tables_are_the_same(cluster, reference, tmp_path):
    """No hook: SIGKILL to the worker process (its pid reported by the task to the run's coordinator
    actor) of an augmented model while it trains its second epoch."""
    import ray

    from augcam.pipeline.executors.ray import coordinator_name

    out = tmp_path / "out"
    killed: dict = {}
    done = threading.Event()

    def killer() -> None:
        while not done.is_set():
            try:
                coordinator = ray.get_actor(coordinator_name(out))
                status = ray.get(coordinator.snapshot.remote())
            except (ValueError, ray.exceptions.RayError):
                time.sleep(0.01)
                continue
            for model_id, model in status.items():
                if (
                    model_id.startswith("affine")
                    and model.get("state") == "train"
                    and model.get("checkpoint_epoch") == 1
                ):
                    os.kill(model["pid"], signal.SIGKILL)
                    killed.update(model_id=model_id, pid=model["pid"])
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = run_study(STUDY, out, device="cpu", executor="ray", console=quiet())
    finally:
        done.set()
        thread.join(timeout=10)
    assert killed, "no augmented model was seen training its second epoch"
    meta = json.loads((out / "models" / killed["model_id"] / "meta.json").read_text())
    # Killed in epoch 2, or (rarely, on a loaded machine) just after it, while computing CAMs.
    assert meta["resumed_after_epoch"] in (1, 2)
    assert result.manifest["models"][killed["model_id"]]["attempts"] == 2
    assert_same_tables(out, reference)


def test_killed_driver_then_rerun_resumes_from_the_checkpoints_in_the_run_directory(
    cluster, reference, tmp_path, fashion_mnist_available
):
    """The driver (`augcam run --executor ray --address …`) is killed with SIGKILL once an augmented
    model has a checkpoint; its tasks die with it, and the rerun resumes as the local executor does."""
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    command = [
        *AUGCAM,
        "run",
        str(study),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--executor",
        "ray",
        "--address",
        cluster.address,
    ]
    env = {key: value for key, value in os.environ.items() if key != KILL_AT_ENV}
    left_checkpoint = sigkill_once_a_checkpoint_appears(command, out, env)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "taking over the lock of a run that ended without releasing it" in done.stderr
    assert ("resume: affine seed" in " ".join(done.stderr.split())) == left_checkpoint, done.stderr
    assert_same_tables(out, reference)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["previous_run"]["status"] == "running"
    assert not list(out.rglob("checkpoint.safetensors")) and not (out / ".augcam.lock").exists()
