"""The run directory: every path in it, the names of the models it holds, and its lock.

    OUT/study.yaml                    resolved config
    OUT/manifest.json                 versions, config hash, device, per-stage timings and status
    OUT/models/<model_id>/            weights.safetensors, history.parquet, meta.json
                                      (checkpoint.safetensors while the model is in training;
                                      predictions.safetensors when the test set is monitored)
    OUT/cams/<model_id>[.<method>].safetensors   raw CAMs (layer resolution), logits, predictions, targets
    OUT/faithfulness/<model_id>.safetensors      the faithfulness stage's per-model results
    OUT/tables/*.parquet, *.csv       the stages' tables and the report's analyses
    OUT/figures/                      the report's figures
    OUT/report.html                   the report
    OUT/.augcam.lock                  who holds the directory's lock (an flock on OUT itself): pid, host, start time

Every other module asks `RunDir` for a path instead of spelling it. A run that is killed (even
with SIGKILL) leaves only complete files under their final names (augcam.atomic), plus perhaps a
`.<name>.<random>.tmp` file; the next run of the directory, holding its lock, removes those — only
those, of the files augcam writes.

A directory augcam did not make is the user's: a run writes only into a new or empty directory or
into one of its own runs (`check_owned`), and only the same study may continue a run
(`check_study`; docs/reliability.md states the rule).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from augcam.atomic import TEMP_NAME, write_text
from augcam.errors import AugcamError

try:
    import fcntl
except ImportError:  # not Linux or macOS: RunLock says why it cannot run
    fcntl = None  # type: ignore[assignment]

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
# An architecture selection's tables (SelectionDir), each written as .parquet and .csv.
SELECTION_EPOCHS = "selection_epochs"  # one row per (candidate, seed, epoch)
SELECTION_SUMMARY = "selection_summary"  # one row per candidate


# What augcam writes at the top of a run directory; anything else there is not augcam's.
ROOT_FILES = ("study.yaml", "manifest.json", "report.html", ".augcam.lock", "selection.yaml", "chosen.yaml")
ROOT_DIRS = ("models", "cams", "faithfulness", "tables", "figures", "candidates")
WRITTEN_SUFFIXES = (".safetensors", ".parquet", ".json", ".yaml", ".csv", ".png", ".svg", ".html")
# The settings that make a study's models what they are: with another value the run directory
# holds another study (check_study). Where the data files lie, and the analysis layer, do not count.
STUDY_IDENTITY = {"data": {"root", "download"}, "model": {"target_layer"}, "training": set()}


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

    def predictions_file(self, model_id: str) -> Path:
        """Every epoch's validation and test predictions, with their labels (a model trained with
        its test set monitored: architecture selection)."""
        return self.model_dir(model_id) / "predictions.safetensors"

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

    def check_owned(self) -> None:
        """Refuse a directory that is not empty and is not an augcam run directory (no manifest.json
        written by augcam): its files are the user's, and a run would overwrite or delete some."""
        if not self.root.is_dir():
            return
        entries = sorted(path.name for path in self.root.iterdir())
        # A run killed before its first manifest leaves at most its lock file and their temporaries.
        lock = self.lock_file.name
        if all(name == lock or _temp_of(name, (lock, "manifest.json")) for name in entries):
            return
        shown = ", ".join(entries[:5]) + (f", … ({len(entries) - 5} more)" if len(entries) > 5 else "")
        if not self.manifest_file.is_file():
            raise AugcamError(
                f"{self.root}: not empty and not an augcam run directory (no manifest.json; it holds {shown}); "
                "augcam writes only into a new or empty directory or one of its own runs, so that nothing of "
                "yours is overwritten: choose another --out directory, or pass --force to write into this one"
            )
        problem = _not_a_manifest(self.manifest_file)
        if problem is not None:
            raise AugcamError(
                f"{self.manifest_file}: not a manifest augcam wrote ({problem}), so {self.root} is not "
                "taken for an augcam run directory; choose another --out directory, or, if it is a run whose "
                "manifest.json was damaged, pass --force to reuse it (the manifest is rewritten)"
            )

    def check_study(self, resolved: dict, fingerprints: dict[str, str], force: bool) -> None:
        """Refuse a directory that holds another study's run (unless `force`): another name, or the
        same name with other data, model or training settings (`STUDY_IDENTITY`), whose tables,
        report and study.yaml this run would replace. Other changes (augmentations, seeds, controls,
        CAM and metric settings, …) extend or re-analyse the run, reusing what it stored."""
        existing = self.read_study() if self.root.exists() else None
        if existing is None or force:
            return
        name = resolved.get("name")
        if existing.get("name") != name:
            raise AugcamError(
                f"{self.root}: holds the run of study {existing.get('name')!r}, not {name!r}; "
                "choose another --out directory, or pass --force to reuse it"
            )
        changed = study_differences(existing, resolved)
        recorded = (_read_json_object(self.manifest_file) or {}).get("data")
        if isinstance(recorded, dict):
            changed += [
                f"{what} (another SHA-256)"
                for key, what in (("fingerprint", "the training images"), ("test_fingerprint", "the test images"))
                if recorded.get(key) not in (None, fingerprints.get(key))
            ]
        if changed:
            raise AugcamError(
                f"{self.root}: holds a run of another study named {name!r} ({'; '.join(changed)}), whose "
                "tables, report and study.yaml this run would replace; choose another --out directory, or "
                "pass --force to replace them"
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
        """Delete the temporary files a killed run left behind: `.<name>.<random>.tmp` where `<name>`
        is one of augcam's files at the top of the directory, or a file of a kind augcam writes in its
        own folders (ROOT_DIRS). Nothing else is touched. Only safe while holding the lock: another
        live run's temporary files would be deleted too."""
        stale = [path for path in self.root.iterdir() if path.is_file() and _temp_of(path.name, ROOT_FILES)]
        for folder in ROOT_DIRS:
            if (self.root / folder).is_dir():
                stale += [
                    path
                    for path in (self.root / folder).rglob(".*")
                    if path.is_file() and _temp_of(path.name, suffixes=WRITTEN_SUFFIXES)
                ]
        for path in stale:
            path.unlink()
        return stale


class SelectionDir(RunDir):
    """Paths of an architecture selection's directory (`augcam select`): its own files at the top,
    and one run directory per candidate, holding that candidate's models.

        OUT/selection.yaml, manifest.json, report.html, chosen.yaml, .augcam.lock
        OUT/candidates/<label>/    a run directory (study.yaml, manifest.json, models/<model_id>/)
        OUT/tables/selection_{epochs,summary}.{parquet,csv}
        OUT/figures/selection_*.png, *.svg
    """

    selection_file = property(lambda self: self.root / "selection.yaml")
    chosen_file = property(lambda self: self.root / "chosen.yaml")

    def candidate(self, label: str) -> RunDir:
        return RunDir(self.root / "candidates" / label)


def _temp_of(name: str, names: tuple[str, ...] = (), suffixes: tuple[str, ...] = ()) -> bool:
    """Whether `name` is augcam's temporary file (augcam.atomic.atomic_path) for one of `names`, or
    for a file with one of `suffixes`."""
    match = TEMP_NAME.fullmatch(name)
    if match is None:
        return False
    return match["name"] in names or (bool(suffixes) and match["name"].endswith(suffixes))


def _read_json_object(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _not_a_manifest(path: Path) -> str | None:
    """Why the file `path` is not a manifest.json augcam wrote (None if it is one)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"unreadable JSON: {err}"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    return None if "augcam_version" in value else "no augcam_version"


def study_differences(existing: dict, resolved: dict) -> list[str]:
    """`section.key: old → new` for each STUDY_IDENTITY setting the two resolved configs both have
    and give different values (a setting one of them lacks, e.g. from another augcam version, is
    not compared)."""
    changed = []
    for section, ignored in STUDY_IDENTITY.items():
        old, new = existing.get(section), resolved.get(section)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        changed += [
            f"{section}.{key}: {old[key]!r} → {new[key]!r}"
            for key in new
            if key in old and key not in ignored and old[key] != new[key]
        ]
    return changed


class RunLock:
    """Exclusive use of a run directory by one process.

    An `flock` on the run directory itself, held on an open descriptor for the run's life: the
    kernel releases it when the process dies, however it dies (SIGKILL included), so a lock left
    behind by a dead run is stale by construction and is taken over; and removing a file by hand
    cannot let a second run in. `OUT/.augcam.lock` names the holder (pid, host, start time) for the
    message a second run gets; `release` (also called on exceptions, via `with`) removes it.
    `check`, if given, runs once the lock is held and before anything is written.
    """

    def __init__(self, path: Path, check: Callable[[], None] | None = None):
        self.path = Path(path)
        self.check = check
        self.fd: int | None = None
        self.previous_holder: dict | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        directory = self.path.parent
        if fcntl is None:
            raise AugcamError(
                f"{directory}: cannot lock the run directory: this platform has no flock "
                "(augcam runs on Linux and macOS)"
            )
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as err:
            raise AugcamError(f"{directory}: cannot open the run directory ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AugcamError(
                    f"{directory}: in use by another augcam run ({describe_holder(_read_holder(self.path))}, "
                    f"lock file {self.path.name}); wait for it to finish, or choose another --out directory"
                ) from None
            raise AugcamError(f"{directory}: cannot lock the run directory ({err.strerror})") from None
        try:
            if self.check is not None:
                self.check()
            # Held: what the file says is the holder of a lock that died with its process.
            self.previous_holder = _read_holder(self.path) or None
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            try:
                write_text(self.path, json.dumps(holder) + "\n")
            except OSError as err:
                raise AugcamError(f"{directory}: cannot write the run directory ({err.strerror})") from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        # Removed while still locked: the next holder finds no file, or its own.
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def _read_holder(path: Path) -> dict:
    try:
        text = path.read_bytes()[:4096].decode("utf-8", "replace").strip()
    except OSError:
        return {}
    if not text:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"unparsed": text[:200]}
    return holder if isinstance(holder, dict) else {"unparsed": text[:200]}


def describe_holder(holder: dict) -> str:
    if "pid" not in holder:
        return f"holder unknown: {holder.get('unparsed', 'no lock file')!r}"
    return f"pid {holder['pid']} on host {holder.get('host', '?')}, since {holder.get('started', '?')}"
