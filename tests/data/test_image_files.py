"""CIFAR-10 binary batches and MNIST IDX files: round trips of small files written in those
formats by the tests, through the readers and load_dataset, and clear errors on bad files."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from widenet import WidenetError
from widenet.data import (
    load_dataset,
    read_cifar10,
    read_cifar10_batch,
    read_idx,
    read_image_folder,
    read_mnist,
)
from widenet.data.image_files import CIFAR10_TEST, CIFAR10_TRAIN, MNIST_FILES

RNG = np.random.default_rng(0)


def _cifar_records(count: int, labels: np.ndarray | None = None) -> tuple[bytes, np.ndarray,
                                                                          np.ndarray]:
    """``count`` CIFAR-10 records written by hand, byte by byte: the label, then the red,
    green and blue planes, each row by row; returns the bytes, images and labels."""
    images = RNG.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
    labels = RNG.integers(0, 10, size=count, dtype=np.uint8) if labels is None else labels
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for channel in range(3):
            for row in range(32):
                out.extend(int(v) for v in image[channel, row])
    return bytes(out), images, labels


def _cifar_folder(folder: Path, sizes: tuple[int, ...] = (3, 2, 1, 2, 3, 4)
                  ) -> dict[str, np.ndarray]:
    """A CIFAR-10 binary folder with tiny batches (five train, one test); its arrays."""
    folder.mkdir(exist_ok=True)
    parts = []
    for name, size in zip((*CIFAR10_TRAIN, CIFAR10_TEST), sizes, strict=True):
        data, images, labels = _cifar_records(size)
        (folder / name).write_bytes(data)
        parts.append((images, labels))
    return {"x": np.concatenate([x for x, _ in parts[:5]]),
            "y": np.concatenate([y for _, y in parts[:5]]),
            "x_test": parts[5][0], "y_test": parts[5][1]}


def _idx(array: np.ndarray, type_byte: int) -> bytes:
    """``array`` in the IDX format: magic 0x0000TTDD, big-endian sizes and elements."""
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _mnist_folder(folder: Path, train: int = 7, test: int = 4, size: int = 5,
                  zipped: bool = False) -> dict[str, np.ndarray]:
    """An MNIST folder of four IDX files (optionally gzipped) with small images; its arrays."""
    folder.mkdir(exist_ok=True)
    arrays = {"x": RNG.integers(0, 256, size=(train, size, size), dtype=np.uint8),
              "y": np.arange(train, dtype=np.uint8) % 3,
              "x_test": RNG.integers(0, 256, size=(test, size, size), dtype=np.uint8),
              "y_test": np.arange(test, dtype=np.uint8) % 3}
    for key, array in arrays.items():
        data = _idx(array, 0x08)
        name = MNIST_FILES[key] + (".gz" if zipped else "")
        (folder / name).write_bytes(gzip.compress(data) if zipped else data)
    return arrays


def test_cifar10_batch_layout(tmp_path: Path) -> None:
    data, images, labels = _cifar_records(4)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(data)
    x, y = read_cifar10_batch(path)
    assert x.shape == (4, 3, 32, 32)
    assert x.dtype == np.uint8
    assert np.array_equal(x, images)
    assert np.array_equal(y, labels)


def test_cifar10_folder_round_trip(tmp_path: Path) -> None:
    arrays = _cifar_folder(tmp_path / "cifar-10-batches-bin")
    read = read_cifar10(tmp_path / "cifar-10-batches-bin")
    assert {key: value.shape for key, value in read.items()} == {
        "x": (11, 3, 32, 32), "y": (11,), "x_test": (4, 3, 32, 32), "y_test": (4,)}
    assert all(np.array_equal(read[key], arrays[key]) for key in arrays)
    ds = load_dataset(str(tmp_path / "cifar-10-batches-bin"), n=6, seed=2)
    assert ds.images
    assert ds.input_shape == (3, 32, 32)
    assert ds.dim == 3072
    values = np.unique(np.concatenate([arrays["y"], arrays["y_test"]]))
    assert ds.classes == len(values)
    order = torch.randperm(11, generator=torch.Generator().manual_seed(2)).numpy()[:6]
    assert np.array_equal(ds.x.numpy(), arrays["x"][order].astype(np.float64))
    assert np.array_equal(ds.y.numpy(), np.searchsorted(values, arrays["y"][order]))
    assert np.array_equal(ds.x_test.numpy(), arrays["x_test"].astype(np.float64))


def test_mnist_folder_round_trip_plain_and_gzipped(tmp_path: Path) -> None:
    plain = _mnist_folder(tmp_path / "plain")
    zipped = _mnist_folder(tmp_path / "zipped", zipped=True)
    for folder, arrays in ((tmp_path / "plain", plain), (tmp_path / "zipped", zipped)):
        read = read_mnist(folder)
        assert read["x"].shape == (7, 1, 5, 5)
        assert np.array_equal(read["x"][:, 0], arrays["x"])
        assert np.array_equal(read["y_test"], arrays["y_test"])
    ds = load_dataset(tmp_path / "zipped", n=5, n_test=3, seed=1, normalize="sphere")
    assert ds.x.shape == (5, 1, 5, 5)
    assert ds.x_test.shape == (3, 1, 5, 5)
    assert ds.classes == 3
    assert np.allclose((ds.x.flatten(1) ** 2).sum(1).numpy(), 25.0)


def test_idx_element_types_and_the_dotted_mnist_spelling(tmp_path: Path) -> None:
    for type_byte, dtype in ((0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"),
                             (0x0E, "f8")):
        array = (RNG.standard_normal((2, 3, 4)) * 100).astype(dtype)
        path = tmp_path / f"a{type_byte}.idx"
        path.write_bytes(_idx(array, type_byte))
        assert np.array_equal(read_idx(path), array)
    arrays = _mnist_folder(tmp_path / "dotted")
    for name in MNIST_FILES.values():
        (tmp_path / "dotted" / name).rename(tmp_path / "dotted" / name.replace("-idx", ".idx"))
    assert np.array_equal(read_image_folder(tmp_path / "dotted")["y"], arrays["y"])


def test_fixed_test_split_subset(tmp_path: Path) -> None:
    arrays = _mnist_folder(tmp_path / "m", test=6)
    full = load_dataset(tmp_path / "m", seed=3)
    part = load_dataset(tmp_path / "m", seed=3, n_test=2)
    assert full.x_test.shape[0] == 6
    assert part.x_test.shape[0] == 2
    tests = {image.tobytes() for image in arrays["x_test"][:, None].astype(np.float64)}
    assert all(image.tobytes() in tests for image in part.x_test.numpy())
    assert np.array_equal(full.x.numpy(), part.x.numpy())
    with pytest.raises(WidenetError, match="has 6 points, fewer than n_test=7"):
        load_dataset(tmp_path / "m", n_test=7)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:-5], r"not a positive multiple of 3073 .* truncated"),
    (lambda data: b"", "has 0 bytes"),
    (lambda data: bytes([200]) + data[1:], "record 0 has label 200, outside 0..9"),
])
def test_bad_cifar_batches(tmp_path: Path, damage: object, message: str) -> None:
    _cifar_folder(tmp_path / "c")
    path = tmp_path / "c" / "data_batch_3.bin"
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(WidenetError, match=message):
        load_dataset(tmp_path / "c")


def _with_magic(data: bytes, magic: bytes) -> bytes:
    return magic + data[4:]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:-1], r"is truncated: shape \(7, 5, 5\) needs 175 bytes .* it has 174"),
    (lambda data: data + b"\0", "is longer than announced"),
    (lambda data: data[:10], r"is truncated: its header announces 3 sizes"),
    (lambda data: _with_magic(data, b"\x00\x00\x08\x00"), "not an IDX file: its magic number "
                                                          "is 00000800"),
    (lambda data: _with_magic(data, b"\x00\x00\x07\x03"), "magic number is 00000703"),
    (lambda data: _with_magic(data, b"\x08\x03\x00\x00"), "magic number is 08030000"),
    (lambda data: data[:2], "only 2 byte"),
    (lambda data: gzip.compress(data)[:-8], "damaged or truncated gzip file"),
])
def test_bad_idx_files(tmp_path: Path, damage: object, message: str) -> None:
    _mnist_folder(tmp_path / "m")
    path = tmp_path / "m" / MNIST_FILES["x"]
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(WidenetError, match=message):
        load_dataset(tmp_path / "m")


def test_mismatched_mnist_files(tmp_path: Path) -> None:
    _mnist_folder(tmp_path / "m")
    labels = tmp_path / "m" / MNIST_FILES["y"]
    labels.write_bytes(_idx(np.zeros(6, dtype=np.uint8), 0x08))
    with pytest.raises(WidenetError, match=r"not one label per image .* do not belong together"):
        read_mnist(tmp_path / "m")
    (tmp_path / "m" / MNIST_FILES["x"]).write_bytes(_idx(np.zeros(7, dtype=np.uint8), 0x08))
    with pytest.raises(WidenetError, match=r"not uint8 images .* not swapped"):
        read_mnist(tmp_path / "m")


def test_incomplete_unknown_and_pickled_folders(tmp_path: Path) -> None:
    _cifar_folder(tmp_path / "c")
    (tmp_path / "c" / "data_batch_4.bin").unlink()
    with pytest.raises(WidenetError, match=r"lacks the CIFAR-10 file\(s\) data_batch_4.bin"):
        load_dataset(tmp_path / "c")
    _mnist_folder(tmp_path / "m")
    (tmp_path / "m" / MNIST_FILES["y_test"]).unlink()
    with pytest.raises(WidenetError, match=r"lacks the MNIST file\(s\) t10k-labels-idx1-ubyte"):
        load_dataset(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WidenetError, match=r"holds neither CIFAR-10 binary batches \(.*\) "
                                           "nor MNIST"):
        load_dataset(tmp_path / "empty")
    pickled = tmp_path / "cifar-10-batches-py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(pickle.dumps({"labels": [0]}))
    with pytest.raises(WidenetError, match="python version, whose files are pickles; widenet "
                                           "does not unpickle"):
        load_dataset(pickled)
    with pytest.raises(WidenetError, match="does not exist"):
        read_cifar10(tmp_path / "absent")
    with pytest.raises(WidenetError, match="is a file, not a folder"):
        read_mnist(tmp_path / "c" / CIFAR10_TEST)
    with pytest.raises(WidenetError, match=r"IDX file .* does not exist"):
        read_idx(tmp_path / "absent.idx")
