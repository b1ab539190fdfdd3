"""Image sets in their standard binary formats, read from a folder the user points at.

CIFAR-10's binary version (``cifar-10-binary.tar.gz``, unpacked to ``cifar-10-batches-bin``)
and MNIST's IDX files (also Fashion-MNIST's, same names), optionally gzipped. Nothing is
downloaded. CIFAR-10's python version is refused: its batches are pickles, and unpickling
runs code. Every reader returns a dict of numpy arrays with the keys of
:func:`widenet.data.from_arrays` (``x``, ``y``, ``x_test``, ``y_test``), images in torch's
layout (n, C, H, W) with the raw pixel values 0..255 (uint8).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from widenet.errors import WidenetError

CIFAR10_TRAIN = tuple(f"data_batch_{index}.bin" for index in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_SHAPE = (3, 32, 32)
#: bytes per CIFAR-10 record: one label byte, then 1024 red, 1024 green, 1024 blue pixels
#: (each channel row-major).
CIFAR10_RECORD = 1 + math.prod(CIFAR10_SHAPE)
CIFAR10_CLASSES = 10
#: the files of CIFAR-10's python (pickle) version, which are refused.
CIFAR10_PICKLES = ("data_batch_1", "test_batch", "batches.meta")

#: MNIST's four files (split -> file name as distributed; ``.gz`` optional, and the
#: ``train-images.idx3-ubyte`` spelling is accepted too).
MNIST_FILES = {"x": "train-images-idx3-ubyte", "y": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
#: IDX type byte -> element dtype (stored big-endian).
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def _folder(path: str | os.PathLike[str]) -> Path:
    """``path`` (with ``~`` expanded) if it names an existing folder, else raise."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.is_file() else "does not exist"
        raise WidenetError(f"image folder {str(folder)!r} {what}; point at the folder that "
                           "holds the CIFAR-10 binary batches or the MNIST IDX files")
    return folder


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: images (n, 3, 32, 32) uint8 and labels (n,) in 0..9.

    The file is n records of 3073 bytes: the label byte, then the 32x32 red, green and blue
    planes. A size that is not a multiple of 3073 (a truncated file) or a label above 9 (not
    a CIFAR-10 batch; CIFAR-100's records have two label bytes) is an error.
    """
    file = Path(path).expanduser()
    data = np.fromfile(file, dtype=np.uint8)
    if data.size == 0 or data.size % CIFAR10_RECORD:
        raise WidenetError(f"{str(file)!r} has {data.size} bytes, not a positive multiple of "
                           f"{CIFAR10_RECORD} (one label byte + 3072 pixels per image): the "
                           "file is truncated or not a CIFAR-10 binary batch; download it again")
    records = data.reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]
    if int(labels.max()) >= CIFAR10_CLASSES:
        first = int(np.argmax(labels >= CIFAR10_CLASSES))
        raise WidenetError(f"{str(file)!r}: record {first} has label {int(labels[first])}, "
                           f"outside 0..{CIFAR10_CLASSES - 1}: not a CIFAR-10 binary batch "
                           "(CIFAR-100's files are not read)")
    return records[:, 1:].reshape(-1, *CIFAR10_SHAPE), labels


def read_cifar10(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The CIFAR-10 binary version in folder ``path``: ``data_batch_1.bin`` ..
    ``data_batch_5.bin`` concatenated in order as the train split, ``test_batch.bin`` as the
    test split; images (n, 3, 32, 32) uint8 with values 0..255."""
    folder = _folder(path)
    missing = [name for name in (*CIFAR10_TRAIN, CIFAR10_TEST) if not (folder / name).is_file()]
    if missing:
        raise WidenetError(f"{str(folder)!r} lacks the CIFAR-10 file(s) {', '.join(missing)}; "
                           "unpack cifar-10-binary.tar.gz whole and point at its "
                           "cifar-10-batches-bin folder")
    train = [read_cifar10_batch(folder / name) for name in CIFAR10_TRAIN]
    x_test, y_test = read_cifar10_batch(folder / CIFAR10_TEST)
    return {"x": np.concatenate([x for x, _ in train]),
            "y": np.concatenate([y for _, y in train]), "x_test": x_test, "y_test": y_test}


def _idx_bytes(file: Path) -> bytes:
    """The content of ``file``, gunzipped when it starts with the gzip magic bytes."""
    data = file.read_bytes()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise WidenetError(f"{str(file)!r} is a damaged or truncated gzip file ({error}); "
                           "download it again") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped or not), native byte order.

    Format: the magic number 0x0000TTDD (TT the element type, 0x08 uint8 ... 0x0E float64;
    DD the number of dimensions), DD big-endian uint32 sizes, then the elements row-major and
    big-endian. A wrong magic number or a body that does not hold exactly the announced
    elements (truncated, or trailing bytes) is an error.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WidenetError(f"IDX file {str(file)!r} does not exist; check the path")
    data = _idx_bytes(file)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES or data[3] == 0:
        magic = data[:4].hex() if len(data) >= 4 else f"only {len(data)} byte(s)"
        raise WidenetError(f"{str(file)!r} is not an IDX file: its magic number is {magic}, "
                           "expected 0000TTDD (TT in 08, 09, 0b, 0c, 0d, 0e; DD >= 1 the number "
                           "of dimensions), e.g. 00000803 for MNIST images")
    rank, element = data[3], IDX_TYPES[data[2]]
    header = 4 + 4 * rank
    if len(data) < header:
        raise WidenetError(f"{str(file)!r} is truncated: its header announces {rank} sizes "
                           f"but the file has {len(data)} bytes; download it again")
    shape = struct.unpack(f">{rank}I", data[4:header])
    expected = math.prod(shape) * element.itemsize
    if len(data) - header != expected:
        problem = "truncated" if len(data) - header < expected else "longer than announced"
        raise WidenetError(f"{str(file)!r} is {problem}: shape {shape} needs {expected} bytes "
                           f"of data after the header, it has {len(data) - header}; download "
                           "it again")
    array = np.frombuffer(data, dtype=element, offset=header).reshape(shape)
    return array.astype(element.newbyteorder("="))


def _mnist_file(folder: Path, name: str) -> Path | None:
    """The file of MNIST name ``name`` in ``folder`` (also spelled with '.idx', also .gz)."""
    for stem in (name, name.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def read_mnist(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """MNIST (or Fashion-MNIST) from the four IDX files in folder ``path``: images
    (n, 1, 28, 28) uint8 with values 0..255 and labels (n,), train (60,000) and test (10,000)
    splits as distributed."""
    folder = _folder(path)
    files = {key: _mnist_file(folder, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[key] for key, file in files.items() if file is None]
    if missing:
        raise WidenetError(f"{str(folder)!r} lacks the MNIST file(s) {', '.join(missing)} "
                           "(optionally .gz); put all four IDX files in the folder")
    found = {key: file for key, file in files.items() if file is not None}
    arrays = {key: read_idx(file) for key, file in found.items()}
    for images, labels in (("x", "y"), ("x_test", "y_test")):
        name = found[images].name
        if arrays[images].ndim != 3 or arrays[images].dtype != np.uint8:
            raise WidenetError(f"{name!r} holds {arrays[images].dtype} of shape "
                               f"{arrays[images].shape}, not uint8 images (n, height, width); "
                               "check that the image and label files are not swapped")
        if arrays[labels].ndim != 1 or len(arrays[labels]) != len(arrays[images]):
            raise WidenetError(f"{found[labels].name!r} holds shape {arrays[labels].shape}, not "
                               f"one label per image of {name!r} ({len(arrays[images])}); the "
                               "files do not belong together")
        arrays[images] = arrays[images][:, None]
    return arrays


def read_image_folder(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The image set in folder ``path``, recognised by its file names: CIFAR-10's binary
    batches (:func:`read_cifar10`) or MNIST's IDX files (:func:`read_mnist`). CIFAR-10's
    python version is refused with a message (its files are pickles)."""
    folder = _folder(path)
    if any((folder / name).is_file() for name in (*CIFAR10_TRAIN, CIFAR10_TEST)):
        return read_cifar10(folder)
    if any(_mnist_file(folder, name) is not None for name in MNIST_FILES.values()):
        return read_mnist(folder)
    if any((folder / name).is_file() for name in CIFAR10_PICKLES):
        raise WidenetError(f"{str(folder)!r} holds CIFAR-10's python version, whose files are "
                           "pickles; widenet does not unpickle (it runs code). Download the "
                           "binary version, cifar-10-binary.tar.gz, and point at its "
                           "cifar-10-batches-bin folder")
    raise WidenetError(f"{str(folder)!r} holds neither CIFAR-10 binary batches "
                       f"({', '.join(CIFAR10_TRAIN[:1])} .. {CIFAR10_TEST}) nor MNIST IDX files "
                       f"({', '.join(MNIST_FILES.values())}); point at the folder that holds "
                       "them")
