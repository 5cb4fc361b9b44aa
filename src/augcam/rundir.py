"""The run directory: every path in it, the names of the models it holds, and its lock.

    OUT/study.yaml                    resolved config
    OUT/manifest.json                 versions, config hash, device, per-stage timings and status
    OUT/models/<model_id>/            weights.safetensors, history.parquet, meta.json
                                      (checkpoint.safetensors while the model is in training)
    OUT/cams/<model_id>[.<method>].safetensors   raw CAMs (layer resolution), logits, predictions, targets
    OUT/faithfulness/<model_id>.safetensors      the faithfulness stage's per-model results
    OUT/tables/*.parquet, *.csv       the stages' tables and the report's analyses
    OUT/figures/                      the report's figures
    OUT/report.html                   the report
    OUT/.augcam.lock                  held (flock) by the run using the directory: pid, host, start time

Every other module asks `RunDir` for a path instead of spelling it. A run that is killed (even
with SIGKILL) leaves only complete files under their final names (augcam.atomic), plus perhaps a
`.<name>.<random>.tmp` file; the next run of the directory, holding its lock, removes those.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

import yaml

from augcam.atomic import TEMP_SUFFIX, write_text
from augcam.errors import AugcamError

# How the run directory and its tables name the two reference models of every study: the
# un-augmented baseline, and the `identity` augmentation (an unchanged copy of each image: the
# extra training steps of an augmented model without any transformation).
BASELINE = "baseline"
IDENTITY = "identity"


def model_id(stem: str, seed: int | None, key: str) -> str:
    """How the run directory names a model: `<stem>-s<seed>-<hash>` (`<stem>-<hash>` without a
    seed), the hash being the first 12 hex digits of its model key's digest."""
    return f"{stem}-{key[:12]}" if seed is None else f"{stem}-s{seed}-{key[:12]}"


# The tables the pipeline's stages write (the report's own analyses are named where they are made).
METRICS_TABLE = "metrics.parquet"  # one row per (augmented model, test image)
METHOD_METRICS_TABLE = "method_metrics.parquet"  # the same with each of cam.extra_methods
PERFORMANCE_TABLE = "performance.parquet"  # one row per model
LOCALISATION_TABLE = "localisation.parquet"  # one row per (model, test image), datasets with masks
AGGREGATED_TABLE = "aggregated.parquet"  # one row per (augmentation, test image)
NOISE_FLOOR_TABLE = "noise_floor.parquet"  # one row per (baseline replica, test image)
BETWEEN_TABLE = "between_augmentations.parquet"  # one row per (pair of augmentations, seed, image)
SANITY_TABLE = "sanity.csv"
FAITHFULNESS_TABLE = "faithfulness.parquet"  # one row per (model, fill, test image)
FAITHFULNESS_MODELS_TABLE = "faithfulness_models.parquet"  # their means per (model, fill)


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    study_file = property(lambda self: self.root / "study.yaml")
    manifest_file = property(lambda self: self.root / "manifest.json")
    lock_file = property(lambda self: self.root / ".augcam.lock")
    tables = property(lambda self: self.root / "tables")
    figures = property(lambda self: self.root / "figures")
    report_file = property(lambda self: self.root / "report.html")

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def weights_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "weights.safetensors"

    def meta_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "meta.json"

    def history_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "history.parquet"

    def checkpoint_file(self, model_id: str) -> Path:
        """The state after the last finished epoch of a model still in training; removed once the
        model is complete."""
        return self.model_dir(model_id) / "checkpoint.safetensors"

    def cams_file(self, model_id: str, method: str | None = None) -> Path:
        """The model's CAM set by the study's main CAM method, or by `method`, one of cam.extra_methods."""
        return (
            self.root / "cams" / (f"{model_id}.safetensors" if method is None else f"{model_id}.{method}.safetensors")
        )

    def faithfulness_file(self, model_id: str) -> Path:
        """The model's faithfulness-stage results (one tensor per fill and column), keyed like a CAM set."""
        return self.root / "faithfulness" / f"{model_id}.safetensors"

    def table(self, name: str) -> Path:
        return self.tables / name

    def read_study(self) -> dict | None:
        if not self.study_file.exists():
            return None
        try:
            study = yaml.safe_load(self.study_file.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise AugcamError(
                f"{self.study_file}: cannot read the study file of the existing run ({err}); "
                "choose another --out directory, or pass --force to reuse it"
            ) from None
        return study if isinstance(study, dict) else {}

    def check_study(self, study_name: str, force: bool) -> None:
        """Refuse a directory that holds another study's run (unless `force`)."""
        existing = self.read_study() if self.root.exists() else None
        if existing is not None and existing.get("name") != study_name and not force:
            raise AugcamError(
                f"{self.root}: holds the run of study {existing.get('name')!r}, not {study_name!r}; "
                "choose another --out directory, or pass --force to reuse it"
            )

    def create(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise AugcamError(f"{self.root}: is a file, not a directory; choose another --out directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AugcamError(f"{self.root}: cannot create the run directory ({err.strerror})") from None

    def write_study(self, resolved: dict) -> None:
        write_text(self.study_file, yaml.safe_dump(resolved, sort_keys=False))

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the temporary files a killed run left behind. Only safe while holding the lock:
        another live run's temporary files would be deleted too."""
        stale = [path for path in self.root.rglob(f".*{TEMP_SUFFIX}") if path.is_file()]
        for path in stale:
            path.unlink()
        return stale


class RunLock:
    """Exclusive use of a run directory by one process.

    An `flock` on `OUT/.augcam.lock`, whose content names the holder (pid, host, start time) for the
    message a second run gets. The kernel releases an flock when its process dies, however it dies
    (SIGKILL included), so a lock left behind by a dead run is stale by construction and is taken
    over; `release` (also called on exceptions, via `with`) removes the file.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.previous_holder: dict | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        directory = self.path.parent
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise AugcamError(f"{directory}: cannot write the run directory ({err.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_holder(fd)
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise AugcamError(
                        f"{directory}: in use by another augcam run ({describe_holder(holder)}, "
                        f"lock file {self.path.name}); wait for it to finish, or choose another "
                        "--out directory"
                    ) from None
                raise AugcamError(f"{self.path}: cannot lock the run directory ({err.strerror})") from None
            # The run we raced with may have released and removed the file between our open and our
            # flock: we would then hold a lock on a deleted file. Only a lock on the file the path
            # names counts.
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:
                os.close(fd)
                continue
            break
        previous = _read_holder(fd)
        self.previous_holder = previous or None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlink before unlocking: a run waiting on this file then sees it gone and starts over.
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def _read_holder(fd: int) -> dict:
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    if not text:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"unparsed": text[:200]}
    return holder if isinstance(holder, dict) else {"unparsed": text[:200]}


def describe_holder(holder: dict) -> str:
    if "pid" not in holder:
        return f"holder unknown: {holder.get('unparsed', 'empty lock file')!r}"
    return f"pid {holder['pid']} on host {holder.get('host', '?')}, since {holder.get('started', '?')}"
