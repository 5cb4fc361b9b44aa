"""A directory augcam did not make is the user's, and every file read back from a run directory is
checked before it is trusted (docs/reliability.md, sections 7 and 8, lists the promises).

One tiny real study (baseline + affine seed 0, no controls) is run once; each test works on a copy.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import save
from typer.testing import CliRunner

from augcam.atomic import DIGEST_KEY, DamagedFileError, read_tensor_file, sealed, tensor_file_bytes, unseal
from augcam.cli import app
from augcam.config import load_config
from augcam.errors import AugcamError
from augcam.pipeline import run_study
from augcam.rundir import RunDir, RunLock
from augcam.training import TrainState, train_state_from_bytes, train_state_to_bytes

STUDY = {
    "name": "safety",
    "data": {"dataset": "fashion-mnist", "train_size": 200, "val_size": 50, "test_size": 64},
    "model": {"name": "small_cnn"},
    "training": {"epochs": 1, "batch_size": 64},
    "augmentations": ["affine"],
    "seeds": [0],
    "controls": {"identity": False, "baseline_replicas": 0, "sanity_images": 0},
}
TABLES = ("performance", "metrics", "aggregated")


def run_in_process(out: Path, config: dict = STUDY, **options) -> tuple[object, str]:
    buffer = io.StringIO()
    result = run_study(config, out, device="cpu", console=Console(file=buffer, width=400), **options)
    return result, buffer.getvalue()


def tables(out: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_parquet(out / "tables" / f"{name}.parquet").drop(columns=["train_seconds"], errors="ignore")
        for name in TABLES
    }


def assert_same_tables(out: Path, reference: Path) -> None:
    got, expected = tables(out), tables(reference)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (what a refused run must leave as it was)."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, fashion_mnist_available) -> Path:
    out = tmp_path_factory.mktemp("safety") / "run"
    run_in_process(out)
    return out


@pytest.fixture
def copy(reference, tmp_path, monkeypatch) -> Path:
    """A copy of the reference run, rerun without redrawing its figures (the report is not what
    these tests check, and it is most of a rerun's time)."""
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    monkeypatch.setattr(
        "augcam.pipeline.stages.reporting.ReportStage.run", lambda self, ctx: {"file": "not redrawn in this test"}
    )
    return out


def model_file(out: Path, augmentation: str, name: str) -> Path:
    return next((out / "models").glob(f"{augmentation}-*/{name}"))


def cam_file(out: Path, augmentation: str) -> Path:
    return next((out / "cams").glob(f"{augmentation}-*.safetensors"))


# --- 1. a directory augcam did not create is the user's ------------------------------------------


def _users_directory(root: Path) -> Path:
    """Files a user could have where they point --out: a study file, an HTML page, notes, and
    hidden temporary files of their own editors and tools (at the top and deeper down)."""
    (root / "tables").mkdir(parents=True)
    (root / "study.yaml").write_text(yaml.safe_dump(STUDY))
    (root / "report.html").write_text("<h1>my own report</h1>")
    (root / "notes.md").write_text("do not lose me")
    (root / ".draft.md.a1b2c3.tmp").write_text("an editor's swap file")
    (root / "tables" / ".~lock.results.csv#").write_text("a spreadsheet editor's lock")
    (root / "tables" / "results.csv").write_text("a,b\n1,2\n")
    return root


@pytest.mark.parametrize("where", ["named", "current-directory"])
def test_a_non_empty_directory_augcam_did_not_make_is_refused_and_left_as_it_was(
    where, tmp_path, monkeypatch, fashion_mnist_available
):
    users = _users_directory(tmp_path / "mine")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    before = snapshot(users)
    if where == "current-directory":
        monkeypatch.chdir(users)  # --out "" is the current directory
    out = str(users) if where == "named" else ""
    result = CliRunner().invoke(app, ["run", str(study), "--out", out, "--device", "cpu"])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert "not empty and not an augcam run directory (no manifest.json; it holds" in message
    assert ".draft.md.a1b2c3.tmp" in message and "pass --force" in message
    assert result.stderr.count("error:") == 1
    assert snapshot(users) == before, "a refused run writes, overwrites and deletes nothing"
    assert sorted(path.name for path in users.iterdir()) == sorted(
        [".draft.md.a1b2c3.tmp", "notes.md", "report.html", "study.yaml", "tables"]
    )


def test_an_empty_directory_or_one_only_a_killed_run_touched_is_taken(tmp_path):
    empty = RunDir(tmp_path / "empty")
    empty.root.mkdir()
    empty.check_owned()
    killed = RunDir(tmp_path / "killed")  # killed before its first manifest was complete
    killed.root.mkdir()
    (killed.root / ".augcam.lock").write_text('{"pid": 1}')
    (killed.root / ".manifest.json.k2j4l5x_.tmp").write_text("{")
    killed.check_owned()
    (killed.root / "manifest.json").write_text('{"name": "a web app manifest"}')
    with pytest.raises(AugcamError, match=r"manifest\.json: not a manifest augcam wrote \(no augcam_version\)"):
        killed.check_owned()


def test_the_stale_temporary_sweep_removes_only_augcam_temporaries(tmp_path):
    run_dir = RunDir(_users_directory(tmp_path / "run"))
    (run_dir.root / "models" / "baseline-x").mkdir(parents=True)
    (run_dir.root / "notes").mkdir()
    theirs = [
        run_dir.root / ".draft.md.a1b2c3.tmp",
        run_dir.root / "tables" / ".results.txt.zz9.tmp",
        run_dir.root / "notes" / ".metrics.parquet.abcdefgh.tmp",  # not a folder augcam writes into
        run_dir.root / ".swap.tmp",
    ]
    ours = [
        run_dir.root / ".manifest.json.abcdefgh.tmp",
        run_dir.root / ".report.html.x1y2z3_a.tmp",
        run_dir.root / "tables" / ".metrics.parquet.q1w2e3r4.tmp",
        run_dir.root / "models" / "baseline-x" / ".checkpoint.safetensors.abc_1234.tmp",
    ]
    for path in theirs + ours:
        path.write_text("x")
    before = snapshot(run_dir.root)
    removed = run_dir.remove_stale_temp_files()
    assert sorted(removed) == sorted(ours)
    assert all(path.exists() for path in theirs)
    assert snapshot(run_dir.root) == {name: data for name, data in before.items() if run_dir.root / name not in ours}, (
        "everything else is untouched, the user's report.html, study.yaml and temporaries included"
    )


def test_another_study_with_the_same_name_does_not_replace_the_run(copy):
    before = snapshot(copy)
    other = {**STUDY, "training": {"epochs": 2, "batch_size": 64}, "data": {**STUDY["data"], "train_size": 100}}
    with pytest.raises(AugcamError) as refused:
        run_in_process(copy, other)
    message = str(refused.value)
    assert f"{copy}: holds a run of another study named 'safety'" in message
    assert "training.epochs: 1 → 2" in message and "data.train_size: 200 → 100" in message
    assert "would replace" in message and "--force" in message
    assert snapshot(copy) == before, "tables, report, study.yaml, manifest and lock: nothing written"
    # Through the command: one message, exit 2.
    study = copy.parent / "other.yaml"
    study.write_text(yaml.safe_dump(other))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(copy), "--device", "cpu"])
    assert result.exit_code == 2 and "holds a run of another study named 'safety'" in " ".join(result.stderr.split())
    assert snapshot(copy) == before


def test_the_same_study_may_grow_or_be_reanalysed_and_data_that_changed_is_another_study(reference):
    run_dir = RunDir(reference)
    manifest = json.loads(run_dir.manifest_file.read_text())
    fingerprints = {key: manifest["data"][key] for key in ("fingerprint", "test_fingerprint")}
    same = [
        {**STUDY, "augmentations": ["affine", "gaussian_blur"], "seeds": [0, 1]},
        {**STUDY, "metrics": {"overlap_percentages": [50]}, "cam": {"target": "label"}, "description": "x"},
        {**STUDY, "controls": {"identity": True}, "model": {"name": "small_cnn", "target_layer": "features.0"}},
        {**STUDY, "data": {**STUDY["data"], "root": "/usr/share/datasets/fashion-mnist"}},  # where, not what
    ]
    for config in same:
        run_dir.check_study(load_config(config).resolved(), fingerprints, force=False)
    resolved = load_config(STUDY).resolved()
    for key in fingerprints:
        with pytest.raises(AugcamError, match="the t(raining|est) images \\(another SHA-256\\)"):
            run_dir.check_study(resolved, {**fingerprints, key: "other data"}, force=False)
    changed = load_config({**STUDY, "model": {"name": "resnet18"}}).resolved()
    with pytest.raises(AugcamError, match=r"model\.name: 'small_cnn' → 'resnet18'"):
        run_dir.check_study(changed, fingerprints, force=False)
    run_dir.check_study(changed, fingerprints, force=True)


_HOLDER = textwrap.dedent(
    """
    import sys
    from augcam.rundir import RunLock
    lock = RunLock(sys.argv[1])
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    lock.release()
    """
)


def test_the_lock_holds_when_its_file_is_removed_by_hand(tmp_path, fashion_mnist_available):
    out = tmp_path / "out"
    out.mkdir()
    lock_file = out / ".augcam.lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert json.loads(lock_file.read_text())["pid"] == holder.pid
        lock_file.unlink()  # by hand, while the holder runs
        with pytest.raises(AugcamError, match=r"in use by another augcam run \(holder unknown"):
            RunLock(lock_file).acquire()
        study = tmp_path / "study.yaml"
        study.write_text(yaml.safe_dump(STUDY))
        result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--device", "cpu"])
        assert result.exit_code == 2 and "in use by another augcam run" in result.stderr
        assert list(out.iterdir()) == [], "the refused run wrote nothing"
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    with RunLock(lock_file) as lock:  # free once the holder has gone
        assert lock.previous_holder is None


def test_without_flock_the_lock_says_why_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr("augcam.rundir.fcntl", None)
    with pytest.raises(AugcamError, match=r"cannot lock the run directory: this platform has no flock"):
        RunLock(tmp_path / ".augcam.lock").acquire()
    assert list(tmp_path.iterdir()) == []


# --- 2. every file read back is verified before it is trusted ------------------------------------


def flip_payload_byte(path: Path) -> None:
    """Change one byte of a safetensors file's tensor data: still a valid file, other numbers."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + (len(data) - 8 - header) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_cam_set_with_altered_tensor_bytes_is_recomputed_not_reused(copy, reference):
    cams = cam_file(copy, "affine")
    flip_payload_byte(cams)
    result, log = run_in_process(copy)
    assert f"{cams}: damaged (its content does not match the SHA-256 it was written with); " in log
    assert "recomputing the CAMs of affine seed 0" in log
    assert result.manifest["stages"]["explain"]["computed"] == 1 and result.manifest["stages"]["explain"]["reused"] == 1
    assert cams.read_bytes() == cam_file(reference, "affine").read_bytes()
    assert_same_tables(copy, reference)


def test_a_model_with_damaged_weights_is_trained_again_not_counted_as_reused(copy, reference):
    weights = model_file(copy, "affine", "weights.safetensors")
    flip_payload_byte(weights)
    result, log = run_in_process(copy)
    assert (
        f"{weights}: damaged (its content does not match the SHA-256 in meta.json); training affine seed 0 again"
        in (log)
    )
    train = result.manifest["stages"]["train"]
    assert (train["reused"], train["trained"]) == (1, 1)
    assert weights.read_bytes() == model_file(reference, "affine", "weights.safetensors").read_bytes()
    assert_same_tables(copy, reference)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))


def _meta_of_another_model(path: Path) -> None:
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(sealed({**meta, "model_id": "baseline-000000000000"})))


def _edited_accuracy(path: Path) -> None:
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "best_val_accuracy": 0.99}))  # valid JSON, digest left as it was


# (file, how it is damaged, what the rerun says, what it does again)
DAMAGE = {
    "cams-truncated": ("cams", _truncate, "does not match the SHA-256", "recomputing the CAMs of affine seed 0"),
    "cams-png": ("cams", _png, "not a safetensors file", "recomputing the CAMs of affine seed 0"),
    "weights-truncated": ("weights", _truncate, "does not match the SHA-256 in meta.json", "training affine"),
    "meta-truncated": ("meta", _truncate, "unreadable JSON", "training affine seed 0 again"),
    "meta-a-list": ("meta", lambda p: p.write_text("[1, 2]"), "expected a JSON object, found list", "training"),
    "meta-another-model": ("meta", _meta_of_another_model, "it describes model 'baseline-000000000000'", "training"),
    "meta-edited": ("meta", _edited_accuracy, "does not match the SHA-256 it was written with", "training"),
    "meta-missing-fields": (
        "meta",
        lambda p: p.write_text(json.dumps(sealed({"model_id": p.parent.name, "status": "complete"}))),
        "'best_epoch' should be a number, found None",
        "training affine seed 0 again",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_each_damaged_artefact_is_reported_in_one_line_and_recomputed(case, copy, reference):
    kind, damage, reason, consequence = DAMAGE[case]
    path = {
        "cams": lambda: cam_file(copy, "affine"),
        "weights": lambda: model_file(copy, "affine", "weights.safetensors"),
        "meta": lambda: model_file(copy, "affine", "meta.json"),
    }[kind]()
    damage(path)
    result, log = run_in_process(copy)
    lines = [line for line in log.splitlines() if ": damaged (" in line]
    assert len(lines) == 1 and str(path) in lines[0] and reason in lines[0] and consequence in lines[0], log
    assert list(result.manifest["stored_files"]["damaged"]) == [str(path)]
    train, explain = result.manifest["stages"]["train"], result.manifest["stages"]["explain"]
    # A model trained again has the same id and the same weights, so its stored CAM set still applies.
    assert (train["reused"], explain["computed"]) == ((2, 1) if kind == "cams" else (1, 0))
    assert_same_tables(copy, reference)
    rerun, log = run_in_process(copy)  # repaired for good: nothing reported, everything reused
    assert ": damaged (" not in log and rerun.manifest["stages"]["train"]["reused"] == 2


def test_a_damaged_manifest_stops_the_run_with_what_to_do_and_force_rewrites_it(copy, reference):
    manifest = copy / "manifest.json"
    manifest.write_text("[1, 2]")  # valid JSON of the wrong shape
    with pytest.raises(
        AugcamError, match=r"manifest\.json: not a manifest augcam wrote \(a JSON list, not an object\)"
    ):
        run_in_process(copy)
    _, log = run_in_process(copy, force=True)
    assert "damaged manifest of the previous run (expected a JSON object, found list); replacing it" in log
    assert_same_tables(copy, reference)
    fields, verified = unseal(json.loads(manifest.read_text()), manifest)
    assert verified and fields["status"] == "complete"
    # Edited by hand (still augcam's, but not what it wrote): reported, replaced, the run goes on.
    manifest.write_text(manifest.read_text().replace('"status": "complete"', '"status": "running"'))
    result, log = run_in_process(copy)
    assert "damaged manifest of the previous run (its content does not match the SHA-256" in log
    assert "previous_run" not in result.manifest


def test_the_report_refuses_a_damaged_cam_set_or_manifest_with_one_message(copy, reference):
    cams = cam_file(copy, "affine")
    flip_payload_byte(cams)
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 2 and "damaged (its content does not match" in result.stderr
    assert "rerun `augcam run` on this directory" in " ".join(result.stderr.split())
    shutil.copy(cam_file(reference, "affine"), cams)
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"status": "complete"', '"status": "running"'))
    result = CliRunner().invoke(app, ["report", str(copy)])
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2 and f"{manifest}: damaged (its content does not match" in message
    assert result.stderr.count("error:") == 1


def test_every_stored_file_carries_its_digest(reference):
    for path in reference.rglob("*.safetensors"):
        _, _, verified = read_tensor_file(path)
        assert verified, path
    for path in [*reference.glob("models/*/meta.json"), reference / "manifest.json"]:
        assert DIGEST_KEY in json.loads(path.read_text()), path
    for meta in reference.glob("models/*/meta.json"):
        assert "weights_sha256" in json.loads(meta.read_text())


def test_files_of_an_older_augcam_without_digests_are_used_and_reported_as_unverified(copy, reference):
    for path in list(copy.rglob("*.safetensors")):
        tensors, metadata, _ = read_tensor_file(path)
        path.write_bytes(save(tensors, metadata=metadata or None))  # as an older augcam wrote it: no digest
    for meta in copy.glob("models/*/meta.json"):
        fields, _ = unseal(json.loads(meta.read_text()), meta)
        fields.pop("weights_sha256")
        meta.write_text(json.dumps(fields))
    result, log = run_in_process(copy)
    assert "4 stored model files predate content digests (an older augcam): used unverified" in log
    assert result.manifest["stored_files"] == {"damaged": {}, "unverified": 6}
    assert "2 stored CAM sets predate content digests (an older augcam): used unverified" in log
    assert result.manifest["stages"]["train"]["reused"] == 2 and result.manifest["stages"]["explain"]["computed"] == 0
    assert_same_tables(copy, reference)


def test_a_checkpoint_with_altered_bytes_is_not_resumed_from():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = TrainState(
        1,
        model.state_dict(),
        optimizer.state_dict(),
        {name: value.clone() for name, value in model.state_dict().items()},
        1,
        0.5,
        [],
        {"cpu": torch.get_rng_state()},
        "x",
        1.0,
    )
    data = bytearray(train_state_to_bytes(state, {"model_id": "m"}))
    assert train_state_from_bytes(bytes(data), {"model_id": "m"}).best_val_accuracy == 0.5
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 4] ^= 0x01  # one bit of the weights
    with pytest.raises(ValueError, match="checkpoint: its content does not match the SHA-256 it was written with"):
        train_state_from_bytes(bytes(data), {"model_id": "m"})
    with pytest.raises(ValueError, match="checkpoint: not a safetensors file"):
        train_state_from_bytes(bytes(data[:6]), {"model_id": "m"})


def test_damaged_file_error_names_the_file_and_what_to_do(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(tensor_file_bytes({"a": torch.zeros(3)}))
    flip_payload_byte(path)
    with pytest.raises(DamagedFileError, match=rf"{path}: damaged \(.*\); delete it and rerun to recompute it"):
        read_tensor_file(path)
