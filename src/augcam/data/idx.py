"""The IDX format (MNIST, Fashion-MNIST) and the two datasets stored in it.

An IDX file is a 4-byte magic number — two zero bytes, a type byte, the number of dimensions —
then one big-endian uint32 per dimension, then the values in row-major order. Files are often
gzipped; that is detected from the content, not from the file name.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from augcam.data.base import DATASETS, ImageSet, download_dir, search_dirs
from augcam.errors import DataError

__all__ = ["read_idx", "read_idx_set", "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "IDX_FILES", "DEBIAN_FASHION_MNIST"]

# type byte -> (big-endian numpy dtype, name for messages); the types the IDX format defines.
IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "unsigned byte"),
    0x09: (">i1", "signed byte"),
    0x0B: (">i2", "short"),
    0x0C: (">i4", "int"),
    0x0D: (">f4", "float"),
    0x0E: (">f8", "double"),
}

GZIP_MAGIC = b"\x1f\x8b"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))

# split -> (images file, labels file), without the optional ".gz"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALL_FILES = [name for pair in IDX_FILES.values() for name in pair]

# Where Debian's `dataset-fashion-mnist` package installs the (gzipped) files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's content, decompressed if it is gzip; and whether it was."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as err:
        # BadGzipFile is an OSError; a cut-off stream is an EOFError; bad deflate data a zlib.error.
        raise DataError(f"{path}: corrupt gzip file ({err})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not), in native byte order and writable.

    Strict: anything but an exact IDX file — wrong magic, unknown type, a data size that is not
    the product of the dimensions — is a DataError naming the file.
    """
    path = Path(path)
    data, gzipped = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: not an IDX file ({len(data)} bytes, shorter than the 4-byte magic number)")
    magic = data[:4]
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (magic bytes 0x{magic.hex()}, expected 0x0000TTNN: "
            "two zero bytes, a type byte TT and the number of dimensions NN, e.g. 0x00000803)"
        )
    type_byte, ndim = magic[2], magic[3]
    if type_byte not in IDX_TYPES:
        supported = ", ".join(f"0x{t:02x} ({name})" for t, (_, name) in IDX_TYPES.items())
        raise DataError(
            f"{path}: unsupported IDX data type 0x{type_byte:02x} (magic bytes 0x{magic.hex()}; "
            f"supported types: {supported})"
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header says 0 dimensions (magic bytes 0x{magic.hex()}), expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated: the IDX header of {ndim} dimensions needs {header_size} bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = np.dtype(IDX_TYPES[type_byte][0])
    count = math.prod(dims)
    expected = count * dtype.itemsize
    found = len(data) - header_size
    if found != expected:
        shape = "×".join(str(d) for d in dims)
        item = f" × {dtype.itemsize} bytes" if dtype.itemsize > 1 else ""
        what = "truncated" if found < expected else f"{found - expected} bytes of trailing data"
        after = " after decompression" if gzipped else ""
        raise DataError(
            f"{path}: {what}: header says {shape}{item} = {expected} bytes of data, file has {found}{after}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size).reshape(dims)
    # astype copies: the result is writable (torch.from_numpy warns on read-only arrays) and native-endian.
    return array.astype(dtype.newbyteorder("="))


def read_idx_set(images_path: str | Path, labels_path: str | Path, classes: tuple[str, ...]) -> ImageSet:
    """An ImageSet from an images file (N×H×W unsigned bytes) and a labels file (N unsigned bytes)."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    for path, array, dims, what in (
        (images_path, images, 3, "(count, rows, columns)"),
        (labels_path, labels, 1, "(count,)"),
    ):
        if array.dtype != np.uint8:
            raise DataError(f"{path}: expected unsigned bytes (IDX type 0x08), found {array.dtype}")
        if array.ndim != dims:
            raise DataError(f"{path}: expected {dims} dimension(s) {what}, found shape {array.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; expected the same count (are the files from one dataset?)"
        )
    if labels.size and int(labels.max()) >= len(classes):
        bad = int(np.argmax(labels >= len(classes)))
        raise DataError(
            f"{labels_path}: label {int(labels[bad])} at position {bad} is out of range: "
            f"expected 0..{len(classes) - 1} ({len(classes)} classes)"
        )
    return ImageSet(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=tuple(classes),
    )


def _find_file(directory: Path, name: str) -> Path | None:
    # The plain file first: torchvision leaves both and the plain one skips decompression.
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_dir(files: dict[str, Path], classes: tuple[str, ...]) -> tuple[ImageSet, ImageSet]:
    train, test = (
        read_idx_set(files[images], files[labels], classes)
        for images, labels in (IDX_FILES["train"], IDX_FILES["test"])
    )
    return train, test


def _load(
    display: str,
    key: str,
    torchvision_name: str,
    classes: tuple[str, ...],
    root: Path | None,
    download: bool,
    extra: list[Path],
    install_hint: str,
) -> tuple[ImageSet, ImageSet]:
    """Find the four files (see `search_dirs`), fall back to torchvision's downloader, or explain."""
    # `<dir>/<key>` for a shared data directory; `<dir>/<Name>/raw` is where torchvision puts them.
    layouts = [".", key, f"{torchvision_name}/raw"]
    searched: list[str] = []
    for directory, why in search_dirs(root, layouts, extra):
        files = {name: _find_file(directory, name) for name in _ALL_FILES}
        missing = [name for name, path in files.items() if path is None]
        if not missing:
            return _read_dir(files, classes)  # type: ignore[arg-type]
        if why == "data.root" and len(missing) < len(_ALL_FILES):
            # An explicit location holding part of the dataset is a mistake to report, not to skip.
            raise DataError(
                f"{display}: {directory} (data.root) holds only some of the files; missing: "
                f"{', '.join(missing)} (each may end in .gz)"
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
        _download(display, torchvision_name, target)
        raw = target / torchvision_name / "raw"
        files = {name: _find_file(raw, name) for name in _ALL_FILES}
        missing = [name for name, path in files.items() if path is None]
        if missing:
            raise DataError(f"{display}: torchvision's download into {target} left no {', '.join(missing)} in {raw}")
        return _read_dir(files, classes)  # type: ignore[arg-type]
    raise DataError(
        f"{display} not found: looked for {', '.join(_ALL_FILES)} (each may end in .gz) in:\n"
        + "\n".join(searched)
        + f"\nTo fix: {install_hint}set data.root (or $AUGCAM_DATA) to a directory holding the files, "
        "or set data.download: true to fetch them with torchvision"
    )


def _download(display: str, torchvision_name: str, target: Path) -> None:
    """Let torchvision fetch (and checksum) the IDX files into `<target>/<Name>/raw`; we read them."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, torchvision_name)
    try:
        target.mkdir(parents=True, exist_ok=True)
        dataset_class(root=str(target), train=True, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises RuntimeError
        raise DataError(
            f"{display}: download into {target} failed ({err}); fetch the files by hand and set data.root"
        ) from None


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """Fashion-MNIST: 60000 + 10000 grayscale 28×28 images of 10 kinds of clothing."""
    return _load(
        "Fashion-MNIST",
        "fashion-mnist",
        "FashionMNIST",
        FASHION_MNIST_CLASSES,
        root,
        download,
        [DEBIAN_FASHION_MNIST],
        "install Debian's package (apt-get install dataset-fashion-mnist), or ",
    )


@DATASETS.register("mnist")
def load_mnist(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    """MNIST: 60000 + 10000 grayscale 28×28 handwritten digits."""
    return _load("MNIST", "mnist", "MNIST", MNIST_CLASSES, root, download, [], "")
