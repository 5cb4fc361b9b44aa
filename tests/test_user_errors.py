"""What `augcam validate` catches before any training, and how the command reports every error a
user or the machine can cause (docs/reliability.md, "Bad input" and "Errors while running").

Each case is one a run used to accept and then fail on, after training, with a traceback (a seed
of 2**63 trained every model and stopped in the compare stage), or one it ran silently wrong.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import augcam.atomic
from augcam.augment import AUGMENTATIONS, Augmentation, register_augmentation
from augcam.cli import app
from augcam.config import load_config, parse_overrides
from augcam.errors import ConfigError
from augcam.pipeline.kill_points import INTERRUPT_AT_ENV, KILL_AT_ENV

# Small, so that a check that let a case through would cost a short run, not a study.
CONFIG = {
    "name": "t",
    "data": {"train_size": 100, "val_size": 20, "test_size": 20},
    "training": {"epochs": 1},
    "augmentations": ["affine"],
    "seeds": [0],
    "controls": {"identity": False, "baseline_replicas": 0, "sanity_images": 0},
    "device": "cpu",
}
LONG_NAME = "x" * 230  # a user-registered augmentation whose model files would pass NAME_MAX


def _with(changes: dict) -> dict:
    config = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result, result.stderr.replace("\n", " ")


def _assert_one_error(result, message: str, pattern: str, code: int = 2) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), "no traceback: the error is reported, not raised"
    assert re.search(pattern, message), message
    assert result.stderr.count("error:") == 1


# dotted key → value; the expected message. Checked from the config alone (`validate --no-data`).
CONFIG_CASES = {
    "seed-negative": ({"seeds": [-1]}, r"seeds\[0\]: a seed must be an integer from 0 to 2\*\*63 - 1"),
    "seed-2**63": ({"seeds": [2**63]}, r"seeds: 9223372036854775808 does not fit in a 64-bit integer"),
    "init-seed-2**64": ({"training.init_seed": 2**64}, r"training\.init_seed: 18446744073709551616 does not fit"),
    "split-seed-negative": ({"data.split_seed": -1}, r"data\.split_seed: a seed must be an integer from 0"),
    "ordering-seed-negative": ({"training.ordering_seed": -5}, r"training\.ordering_seed: a seed must be"),
    "batch-size-beyond-int64": ({"cam.batch_size": 2**63}, r"cam\.batch_size: 9223372036854775808 does not fit"),
    "name-path-separator": ({"name": "runs/a"}, r"name: must not contain '/'"),
    "name-line-break": ({"name": "a\nb"}, r"name: must not contain '\\n'"),
    "name-nul": ({"name": "a\x00b"}, r"name: must not contain '\\x00'"),
    "name-blank": ({"name": "  "}, r"name: must not be empty or blank"),
    "name-too-long": ({"name": "é" * 128}, r"name: is 256 bytes long in UTF-8; at most 255"),
    "label-console-markup": (
        {"augmentations": [{"name": "affine", "label": "[/x]"}]},
        r"augmentations\[0\]\.label: must not contain '\['",
    ),
    "label-figure-math": (
        {"augmentations": [{"name": "affine", "label": "$\\qq$"}]},
        r"augmentations\[0\]\.label: must not contain '\$'",
    ),
    "guided-label-tab": ({"guided": [{"loss": "rrr", "label": "a\tb"}]}, r"guided\[0\]\.label: must not contain '\\t'"),
    "model-file-name-too-long": (
        {"augmentations": [LONG_NAME]},
        rf"augmentations\[{LONG_NAME}\]: its models' CAM sets would be written as '{LONG_NAME}-s0-0+\.safetensors', "
        r"\d+ bytes with the temporary name's additions; a file name has at most 255 bytes",
    ),
}


@pytest.fixture
def long_named_augmentation():
    saved = dict(AUGMENTATIONS)

    @register_augmentation
    class LongNamed(Augmentation):
        name: ClassVar[str] = LONG_NAME

        def __call__(self, images, generator):
            return images

    yield
    AUGMENTATIONS.clear()
    AUGMENTATIONS.update(saved)


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_validate_refuses_what_a_run_could_not_carry(tmp_path, case, long_named_augmentation):
    changes, pattern = CONFIG_CASES[case]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(_with(changes)))
    result, message = _invoke("validate", str(study), "--no-data")
    _assert_one_error(result, message, pattern)
    assert result.stdout == ""


def test_run_refuses_a_seed_the_tables_cannot_store_before_writing_anything(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(_with({"seeds": [2**63]})))
    result, message = _invoke("run", str(study), "--out", str(tmp_path / "out"), "--device", "cpu")
    _assert_one_error(result, message, r"seeds: 9223372036854775808 does not fit in a 64-bit integer")
    assert not (tmp_path / "out").exists()


def test_the_largest_seeds_are_accepted():
    config = load_config(_with({"seeds": [0, 2**63 - 1], "training.init_seed": 2**63 - 1, "data.split_seed": 0}))
    assert config.seeds == [0, 2**63 - 1]


# --- --set ------------------------------------------------------------------------------------------

SET_CASES = {
    "invalid-yaml": ("training.epochs=[1", r"--set training\.epochs: '\[1' is not a valid YAML value: expected"),
    "python-tag": (
        "training.epochs=!!python/object:os.system x",
        r"--set training\.epochs: YAML tags \(!!python/object:os\.system\) are not accepted",
    ),
    # safe_load builds bytes from it, and pydantic would quietly take them as the study's name.
    "binary-tag": ("name=!!binary aGVsbG8=", r"--set name: YAML tags \(!!binary\) are not accepted"),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(SET_CASES))
def test_a_bad_set_value_is_a_config_error_not_a_traceback(tmp_path, case, command):
    option, pattern = SET_CASES[case]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(CONFIG))
    extra = ["--no-data"] if command == "validate" else ["--out", str(tmp_path / "out")]
    result, message = _invoke(command, str(study), "--set", option, *extra)
    _assert_one_error(result, message, pattern)
    assert not (tmp_path / "out").exists()


def test_a_set_mapping_merges_into_the_section_the_file_set(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(_with({"training.batch_size": 7, "data.train_size": 50, "data.split_seed": 3})))
    config = load_config(study, overrides=parse_overrides(["training={epochs: 3}", "data={val_size: 9}"]))
    assert (config.training.epochs, config.training.batch_size) == (3, 7), "the file's batch_size is kept"
    assert (config.data.val_size, config.data.train_size, config.data.split_seed) == (9, 50, 3)
    # A dotted key and a mapping say the same thing; a list still replaces the file's list.
    assert load_config(study, overrides={"training.epochs": 3}).training == config.training
    assert load_config(study, overrides={"augmentations": ["cutmix"]}).augmentations[0].name == "cutmix"
    with pytest.raises(ConfigError, match=r"--set 'training': expected KEY=VALUE"):
        parse_overrides(["training"])


# --- checks that need the data ----------------------------------------------------------------------


def _image_folder(root: Path, classes: int, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for c in range(classes):
            folder = root / part / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _folder_study(tmp_path: Path, classes: int, **changes) -> Path:
    config = {
        "name": "folder",
        "data": {"dataset": "image-folder", "root": str(_image_folder(tmp_path / "data", classes, 10))},
        "training": {"epochs": 1, "batch_size": 8},
        "cam": {"batch_size": 8},
        "augmentations": ["affine"],
        "seeds": [0],
        "controls": {"identity": False, "baseline_replicas": 0, "sanity_images": 0},
        "device": "cpu",
    }
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(config))
    return study


DATA_CASES = {
    "one-class": (
        1,
        {},
        r"data\.dataset 'image-folder' \(.*data\): 1 class \('class0'\); a classifier needs at least two",
    ),
    "train-split-smaller-than-classes": (
        3,
        {"data.train_size": 2},
        r"data\.train_size: the training split has 2 images for 3 classes, and 1 class\(es\) have none "
        r"\('class\d'\), so no model could learn them; set data\.train_size >= 3",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_a_study_cannot_learn_from_is_refused_before_training(tmp_path, case, command):
    classes, changes, pattern = DATA_CASES[case]
    study = _folder_study(tmp_path, classes, **changes)
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    result, message = _invoke(command, str(study), *extra)
    _assert_one_error(result, message, pattern)
    assert not (tmp_path / "out").exists()


def test_a_batch_larger_than_the_training_set_is_a_warning(tmp_path):
    study = _folder_study(tmp_path, 2, **{"training.batch_size": 64})
    result, _ = _invoke("validate", str(study))
    assert result.exit_code == 0, result.stderr
    assert re.search(
        r"warning: training\.batch_size 64 is larger than the 18 training images: every epoch of the "
        r"baseline is a single step",
        result.stdout.replace("\n", " "),
    ), result.stdout
    # With a fixed number of steps per epoch a batch may be larger than the set (Tang et al.'s 110 of 100).
    fixed = _folder_study(tmp_path / "fixed", 2, **{"training.batch_size": 64, "training.steps_per_epoch": 2})
    result, _ = _invoke("validate", str(fixed))
    assert result.exit_code == 0 and "warning: training.batch_size" not in result.stdout


# --- errors of the machine, and Ctrl-C --------------------------------------------------------------


def test_a_full_disk_is_one_message_naming_the_file_and_the_run_resumes(tmp_path, monkeypatch):
    study = _folder_study(tmp_path, 2)
    out = tmp_path / "out"
    original = augcam.atomic.atomic_path

    @contextmanager
    def full_disk(path: Path):
        with original(path) as tmp:
            yield tmp
            if path.name == "metrics.parquet":
                # As write() raises it when the disk is full: with no file name.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(augcam.atomic, "atomic_path", full_disk)
    result, message = _invoke("run", str(study), "--out", str(out))
    _assert_one_error(
        result,
        message,
        rf"error: {re.escape(str(out / 'tables' / 'metrics.parquet'))}: No space left on device; "
        rf"{re.escape(str(out))} keeps everything finished so far: rerun the same command to resume",
        code=1,
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left on device" in manifest["error"]
    assert not list(out.rglob("*.tmp")) and not (out / ".augcam.lock").exists()

    monkeypatch.setattr(augcam.atomic, "atomic_path", original)
    result, _ = _invoke("run", str(study), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stages"]["train"]["reused"] == 2


def test_ctrl_c_says_what_it_interrupted_and_that_a_rerun_resumes(tmp_path):
    study = _folder_study(tmp_path, 2, **{"training.epochs": 2})
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != KILL_AT_ENV}
    env[INTERRUPT_AT_ENV] = "train:1:1"  # Ctrl-C once affine seed 0 has its epoch-1 checkpoint
    done = subprocess.run(
        [sys.executable, "-m", "augcam", "run", str(study), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 128 + signal.SIGINT, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(
        r"interrupted while training affine seed 0 \(stage train\); rerun the same command to resume",
        done.stderr.replace("\n", " "),
    ), done.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert list((out / "models").glob("affine-s0-*/checkpoint.safetensors")), "the rerun resumes from it"
    assert not (out / ".augcam.lock").exists()
