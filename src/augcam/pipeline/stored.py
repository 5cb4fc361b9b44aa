"""Reading back what a run stored (augcam.pipeline.results), checked before it is trusted.

A model's meta.json is a sealed JSON record (augcam.atomic.sealed) that also holds the SHA-256 of
its weights file; every safetensors file carries the digest of its own content. A stored file that
is unreadable, of the wrong shape or altered is reported in one line and recomputed: it is never
reused. A file written by an older augcam carries no digest: it is used if it reads and has the
right shape, and counted as unverified (the run says how many).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from augcam.atomic import DamagedFileError, file_sha256, read_sealed_json, read_tensor_file
from augcam.pipeline.plan import ModelRun
from augcam.rundir import RunDir

# What a stored CAM set must hold to be used (compute_cam_set writes these).
CAM_SET_TENSORS = ("raw", "logits", "predictions", "targets", "image_index")


@dataclass
class StoredFiles:
    """What this run found about the stored files it checked: the ones without a digest (from an
    older augcam) and the damaged ones (path → what is wrong)."""

    unverified: set[Path] = field(default_factory=set)
    damaged: dict[Path, str] = field(default_factory=dict)


def _meta_problem(meta: dict, model_id: str) -> str | None:
    """What makes a parsed meta.json unusable for `model_id`, if anything."""
    if meta.get("model_id") != model_id:
        return f"it describes model {meta.get('model_id')!r}, not {model_id}"
    status = meta.get("status")
    if not isinstance(status, str):
        return f"'status' should be a string, found {status!r}"
    if status != "complete":
        return None if isinstance(meta.get("error"), str) else "a failed model's 'error' is missing"
    for key, kinds in (("best_epoch", int), ("epochs", int), ("best_val_accuracy", (int, float))):
        value = meta.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"{key!r} should be a number, found {value!r}"
    return None


def stored_model(run_dir: RunDir, run: ModelRun, found: StoredFiles) -> dict | None:
    """The meta.json of a finished model (complete, or failed for good) whose files are intact;
    None when there is none, or when meta.json or the weights are damaged (recorded in `found`:
    the model is then trained again)."""
    path = run_dir.meta_file(run.model_id)
    if not path.exists():
        return None
    try:
        meta, sealed = read_sealed_json(path)
        problem = _meta_problem(meta, run.model_id)
        if problem is not None:
            raise DamagedFileError(path, problem)
        if not sealed:
            found.unverified.add(path)
        if meta["status"] != "complete":
            return meta
        weights = run_dir.weights_file(run.model_id)
        if not weights.exists():
            return None  # weights deleted by hand: train again
        expected = meta.get("weights_sha256")
        if expected is None:
            read_tensor_file(weights)  # an older run's: at least it must read
            found.unverified.add(weights)
        elif file_sha256(weights) != expected:
            raise DamagedFileError(weights, "its content does not match the SHA-256 in meta.json")
        predictions = meta.get("predictions_sha256")
        if predictions is not None:
            stored = run_dir.predictions_file(run.model_id)
            if not stored.exists():
                return None  # deleted by hand: train again
            if file_sha256(stored) != predictions:
                raise DamagedFileError(stored, "its content does not match the SHA-256 in meta.json")
    except DamagedFileError as err:
        found.damaged[err.path] = err.why
        return None
    return meta


def stored_cam_set(path: Path, found: StoredFiles) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """The tensors and metadata of a stored CAM set, or None when there is none or it is damaged
    (recorded in `found`: it is then computed again)."""
    if not path.exists():
        return None
    try:
        tensors, metadata, verified = read_tensor_file(path)
        missing = [name for name in CAM_SET_TENSORS if name not in tensors]
        if missing or "cam_key" not in metadata:
            raise DamagedFileError(path, f"not a CAM set: it lacks {', '.join(missing) or 'its cam_key'}")
    except DamagedFileError as err:
        found.damaged[err.path] = err.why
        return None
    if not verified:
        found.unverified.add(path)
    return tensors, metadata
