"""Writes that are atomic (a temporary file beside the target, then a rename), so a killed run
never leaves a half-written file under a final name, and safetensors files whose bytes do not
depend on the process that wrote them."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save

TEMP_SUFFIX = ".tmp"
# What atomic_path adds to a file name: "." before it, then ".", mkstemp's 8 random characters, TEMP_SUFFIX.
TEMP_NAME_EXTRA = 2 + 8 + len(TEMP_SUFFIX)


def _default_file_mode() -> int:
    # mkstemp creates files readable by their owner only; a run directory's files get the mode any
    # other new file would get, so that colleagues can read the results.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _default_file_mode()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.filename is None or err.filename == str(tmp_path):
            # A full disk fails a write() that names no file; the user needs the file being written.
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
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


def tensor_file_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file of `tensors` and `metadata`, the same bytes in every process.

    safetensors writes the metadata in its hash map's order, which changes from process to process,
    so two runs would store identical CAMs in files that differ. The JSON header is rewritten with
    sorted keys (same content, so readers see no difference) and padded as safetensors pads it."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header_bytes = header.encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the tensor data stays 8-byte aligned
    # join with a view of the tensor bytes: one copy of a large file, not two.
    return b"".join((len(header_bytes).to_bytes(8, "little"), header_bytes, memoryview(data)[8 + size :]))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(tensor_file_bytes(tensors, metadata))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def read_tensor_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
