"""CIFAR-10 in its official python layout (what torchvision's CIFAR10 reads).

`cifar-10-batches-py/` holds `data_batch_1` … `data_batch_5`, `test_batch` and `batches.meta`,
each a pickled dict. Pickle can run arbitrary code, so the files are read with an unpickler that
only rebuilds what a batch contains (numpy arrays, lists, bytes) and refuses anything else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augcam.data.base import DATASETS, ImageSet, download_dir, search_dirs
from augcam.errors import DataError

__all__ = ["read_cifar_batch", "read_cifar_meta", "load_cifar10", "CIFAR_DIR", "TRAIN_BATCHES", "TEST_BATCH", "META"]

CIFAR_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
_ALL_FILES = [*TRAIN_BATCHES, TEST_BATCH, META]
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # stored as the R plane, then G, then B, each 32×32 row-major


def _numpy_attr(modules: tuple[str, ...], name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; take the object from whichever exists, without
    # importing the deprecated alias (that warns).
    import importlib

    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for `_codecs.encode`, which Python 3 pickles (protocol < 3) use to store bytes.
    Only the latin-1 round trip is needed; other codecs are refused rather than looked up."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    scalar = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    import copyreg

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 2's name and Python 3's; the fix_imports mapping is applied after find_class.
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct  # array rebuilt from a (shape, dtype, bytes) state
        allowed[(module, "scalar")] = scalar  # numpy integers in a list of labels
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = frombuffer  # arrays pickled with protocol 5
    return {key: value for key, value in allowed.items() if value is not None}


class _BatchUnpickler(pickle.Unpickler):
    """Resolves only the globals a CIFAR batch refers to; anything else is a DataError."""

    def __init__(self, file: Any, path: Path):
        # encoding="bytes": the official files were pickled by Python 2, whose str become bytes.
        super().__init__(file, encoding="bytes")
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.path}: refusing to load: the pickle refers to {module}.{name}, which a "
                "CIFAR-10 batch never contains (only numpy arrays, lists and bytes are allowed)"
            ) from None


def _unpickle(path: Path) -> dict[str, Any]:
    """The dict in a CIFAR pickle, keys decoded to str."""
    try:
        with path.open("rb") as file:
            obj = _BatchUnpickler(file, path).load()
    except DataError:
        raise
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    except Exception as err:  # malformed pickles fail in many ways (EOFError, ValueError, …)
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else str(key): value for key, value in obj.items()}


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 3, 32, 32) uint8 and labels (n,) int64 from one batch file, checked."""
    path = Path(path)
    batch = _unpickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{path}: expected keys 'data' and 'labels', found {sorted(batch)}")
    data = batch["data"]
    row = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' should be a uint8 array of shape (n, {row}), found {found}")
    try:
        labels = np.asarray(batch["labels"])
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: 'labels' is not a list of integers ({err})") from None
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: expected {data.shape[0]} labels (one per image), found shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels should be integers, found {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = int(np.argmax((labels < 0) | (labels >= NUM_CLASSES)))
        raise DataError(
            f"{path}: label {int(labels[bad])} at position {bad} is out of range: expected 0..{NUM_CLASSES - 1}"
        )
    # Copy: the unpickled array may be a read-only view of the pickle's bytes.
    return data.reshape(-1, *IMAGE_SHAPE).copy(), labels.astype(np.int64)


def read_cifar_meta(path: str | Path) -> tuple[str, ...]:
    """The class names from `batches.meta`."""
    path = Path(path)
    meta = _unpickle(path)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        found = f"{len(names)} names" if isinstance(names, (list, tuple)) else repr(type(names).__name__)
        raise DataError(f"{path}: expected 'label_names' with {NUM_CLASSES} class names, found {found}")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def _read_dir(directory: Path) -> tuple[ImageSet, ImageSet]:
    classes = read_cifar_meta(directory / META)
    parts = [read_cifar_batch(directory / name) for name in TRAIN_BATCHES]
    train = ImageSet(
        images=torch.from_numpy(np.concatenate([p[0] for p in parts])),
        labels=torch.from_numpy(np.concatenate([p[1] for p in parts])),
        classes=classes,
    )
    images, labels = read_cifar_batch(directory / TEST_BATCH)
    test = ImageSet(images=torch.from_numpy(images), labels=torch.from_numpy(labels), classes=classes)
    return train, test


@DATASETS.register("cifar10")
def load_cifar10(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """CIFAR-10: 50000 + 10000 colour 32×32 images of 10 classes."""
    layouts = [CIFAR_DIR, ".", f"cifar10/{CIFAR_DIR}", "cifar10"]
    searched: list[str] = []
    for directory, why in search_dirs(root, layouts):
        missing = [name for name in _ALL_FILES if not (directory / name).is_file()]
        if not missing:
            return _read_dir(directory)
        if why == "data.root" and len(missing) < len(_ALL_FILES):
            raise DataError(
                f"CIFAR-10: {directory} (data.root) holds only some of the files; missing: {', '.join(missing)}"
            )
        if not directory.is_dir():
            state = "does not exist"
        elif len(missing) == len(_ALL_FILES):
            state = "none of the files"
        else:
            state = f"missing {', '.join(missing)}"
        searched.append(f"  - {directory} ({why}): {state}")
    if download:
        target = root if root is not None else download_dir()
        import torchvision.datasets

        try:
            target.mkdir(parents=True, exist_ok=True)
            # torchvision checks the archive's and each batch's MD5 before using them.
            torchvision.datasets.CIFAR10(root=str(target), train=True, download=True)
        except (OSError, RuntimeError) as err:
            raise DataError(
                f"CIFAR-10: download into {target} failed ({err}); fetch "
                "cifar-10-python.tar.gz by hand, unpack it and set data.root"
            ) from None
        return _read_dir(target / CIFAR_DIR)
    raise DataError(
        f"CIFAR-10 not found: looked for {CIFAR_DIR}/ ({', '.join(_ALL_FILES)}) in:\n"
        + "\n".join(searched)
        + "\nTo fix: set data.root (or $AUGCAM_DATA) to the directory holding cifar-10-batches-py/ "
        "(unpacked from cifar-10-python.tar.gz), or set data.download: true to fetch it with torchvision"
    )
