"""Writes that are atomic (a temporary file beside the target, then a rename), so a killed run
never leaves a half-written file under a final name; safetensors files whose bytes do not depend on
the process that wrote them; and content digests, so that what is read back is what was written.

Every safetensors file augcam writes carries a SHA-256 of its tensors and metadata in its own
metadata (`DIGEST_KEY`), and a JSON record written with `sealed` carries one of its other fields;
`read_tensor_file` and `unseal` check them. A file from an older augcam has none: it is read as it
is and reported as unverified, so the caller can say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from augcam.errors import AugcamError

TEMP_SUFFIX = ".tmp"
# What atomic_path adds to a file name: "." before it, then ".", mkstemp's 8 random characters, TEMP_SUFFIX.
TEMP_NAME_EXTRA = 2 + 8 + len(TEMP_SUFFIX)
# The name of a temporary file `atomic_path` makes for `<name>`: `.<name>.<random>.tmp`.
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]+" + re.escape(TEMP_SUFFIX))
# The metadata entry of a safetensors file, and the field of a sealed JSON record, that hold its digest.
DIGEST_KEY = "augcam_sha256"


class DamagedFileError(AugcamError, ValueError):
    """A file augcam stored cannot be trusted: unreadable, of the wrong format or shape, or its
    content no longer matches the digest it was written with."""

    def __init__(self, path: Path | str, why: str):
        self.path, self.why = Path(path), why
        super().__init__(f"{path}: damaged ({why}); delete it and rerun to recompute it")


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
    parsed = json.loads(data[8 : 8 + size])
    payload = memoryview(data)[8 + size :]
    parsed.setdefault("__metadata__", {})[DIGEST_KEY] = _tensor_digest(parsed, payload)
    header = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header_bytes = header.encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the tensor data stays 8-byte aligned
    # join with a view of the tensor bytes: one copy of a large file, not two.
    return b"".join((len(header_bytes).to_bytes(8, "little"), header_bytes, payload))


def _tensor_digest(header: dict, payload: bytes | memoryview) -> str:
    """SHA-256 over a safetensors file's tensor table (names, dtypes, shapes, offsets), its metadata
    but the digest itself, and its tensor bytes."""
    metadata = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != DIGEST_KEY}
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    digest = hashlib.sha256(json.dumps([table, metadata], sort_keys=True, ensure_ascii=False).encode())
    digest.update(payload)
    return digest.hexdigest()


def check_tensor_bytes(data: bytes, where: Path | str) -> tuple[dict[str, str], bool]:
    """The metadata of the safetensors file `data`, and whether it carries a digest (False: written
    by an older augcam). Raises DamagedFileError if it is not a safetensors file or does not match
    its digest."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < size <= len(data) - 8:
        raise DamagedFileError(where, f"not a safetensors file: {len(data)} bytes, header of {size}")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, ValueError) as err:
        raise DamagedFileError(where, f"unreadable safetensors header: {err}") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__") or {}, dict):
        raise DamagedFileError(where, "the safetensors header is not a mapping")
    metadata = dict(header.get("__metadata__") or {})
    stored = metadata.pop(DIGEST_KEY, None)
    if stored is None:
        return metadata, False
    if stored != _tensor_digest(header, memoryview(data)[8 + size :]):
        raise DamagedFileError(where, "its content does not match the SHA-256 it was written with")
    return metadata, True


def read_tensor_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], bool]:
    """The tensors and metadata of a safetensors file augcam wrote, checked against its digest, and
    whether it had one. DamagedFileError for a file that is unreadable, not safetensors, or altered."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DamagedFileError(path, f"cannot read it: {err.strerror}") from None
    metadata, verified = check_tensor_bytes(data, path)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as err:
        raise DamagedFileError(path, f"not a valid safetensors file: {err}") from None
    return tensors, metadata, verified


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write the file atomically; returns the SHA-256 of its bytes."""
    data = tensor_file_bytes(tensors, metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a file augcam wrote (checked: DamagedFileError if it was altered)."""
    return read_tensor_file(path)[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sealed(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with a SHA-256 of its other fields under DIGEST_KEY (for a JSON file)."""
    fields = {k: v for k, v in record.items() if k != DIGEST_KEY}
    return {**fields, DIGEST_KEY: json_digest(fields)}


def unseal(value: Any, where: Path | str) -> tuple[dict[str, Any], bool]:
    """A JSON record read back: its fields without the digest, and whether it had one (False:
    written by an older augcam). DamagedFileError if it is not a mapping or was altered."""
    if not isinstance(value, dict):
        raise DamagedFileError(where, f"expected a JSON object, found {type(value).__name__}")
    fields = {k: v for k, v in value.items() if k != DIGEST_KEY}
    if DIGEST_KEY not in value:
        return fields, False
    if value[DIGEST_KEY] != json_digest(fields):
        raise DamagedFileError(where, "its content does not match the SHA-256 it was written with")
    return fields, True


def read_sealed_json(path: Path) -> tuple[dict[str, Any], bool]:
    """`unseal` of a JSON file; DamagedFileError if it cannot be read or parsed."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DamagedFileError(path, f"unreadable JSON: {err}") from None
    return unseal(value, path)


def json_digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form (sorted keys, no spaces): what seals
    a JSON record here, and what names a model (`augcam.config.digest` of its key)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_tensor_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    metadata.pop(DIGEST_KEY, None)
    return metadata
