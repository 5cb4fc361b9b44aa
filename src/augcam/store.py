"""The run directory: its layout, and writes that are atomic (a temporary file, then a rename),
so a killed run never leaves a half-written file under a final name.

    OUT/study.yaml                 resolved config
    OUT/manifest.json              versions, config hash, device, per-stage timings and status
    OUT/models/<model_id>/         weights.safetensors, history.parquet, meta.json
    OUT/cams/<model_id>.safetensors  raw CAMs (layer resolution), logits, predictions, targets
    OUT/tables/*.parquet
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import torch
import yaml
from safetensors.torch import load_file, save_file

from augcam.errors import AugcamError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def read_tensor_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


class RunDir:
    """Paths of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    study_file = property(lambda self: self.root / "study.yaml")
    manifest_file = property(lambda self: self.root / "manifest.json")
    tables = property(lambda self: self.root / "tables")

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def weights_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "weights.safetensors"

    def meta_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "meta.json"

    def history_file(self, model_id: str) -> Path:
        return self.model_dir(model_id) / "history.parquet"

    def cams_file(self, model_id: str) -> Path:
        return self.root / "cams" / f"{model_id}.safetensors"

    def table(self, name: str) -> Path:
        return self.tables / name

    def read_study(self) -> dict | None:
        if not self.study_file.exists():
            return None
        return yaml.safe_load(self.study_file.read_text())

    def prepare(self, study_name: str, resolved: dict, force: bool) -> None:
        """Create the directory, refusing one that holds another study's run."""
        existing = self.read_study() if self.root.exists() else None
        if existing is not None and existing.get("name") != study_name and not force:
            raise AugcamError(
                f"{self.root}: holds the run of study {existing.get('name')!r}, not {study_name!r}; "
                "choose another --out directory, or pass --force to reuse it")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".augcam-write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise AugcamError(f"{self.root}: cannot write the run directory ({err.strerror})") from None
        write_text(self.study_file, yaml.safe_dump(resolved, sort_keys=False))
