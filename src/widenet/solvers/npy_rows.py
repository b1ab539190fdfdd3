"""Rows of a kernel stored as a 2-D ``.npy`` file, read block by block without a memory map.

A block is read with ``os.pread`` into one reused buffer per reading thread, so a process holds
a block per thread, not the pages of a memory map; the format is the one ``widenet kernel`` and
:func:`widenet.sweeps.kernel.kernel_to_disk` write (``np.save``'s, versions 1.0 and 2.0).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

from widenet.errors import WidenetError

_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}
UNFINISHED = ".blocks.npy"
"""The suffix of the record of finished blocks that :func:`widenet.sweeps.kernel.kernel_to_disk`
keeps beside a kernel file until every block is written (the rest of the file is zeros)."""


class NpyRows:
    """Rows of a 2-D ``.npy`` file, read with ``os.pread`` into a reused buffer (one per
    thread that reads). Pickled (a kernel sent to a Ray task or another process) it is the
    file's description, not its data: the copy opens the file at each read, as here. Each
    read checks that the file still has the header and size it had when opened here (a file
    rewritten with another shape or dtype would give wrong values, not an error)."""

    def __init__(self, path: Path):
        if path.suffix != ".npy":
            raise WidenetError(f"the kernel file must end in .npy, got {path}")
        if path.with_name(path.name + UNFINISHED).exists():
            raise WidenetError(f"{path} is an unfinished kernel ({path.name + UNFINISHED} beside "
                               "it records the blocks written so far; the others are zeros): "
                               "run the `widenet kernel` command that made it again to finish it")
        try:
            with path.open("rb") as file:
                version = np.lib.format.read_magic(file)
                if version not in _HEADERS:
                    raise ValueError(f".npy format version {version} is not supported")
                shape, fortran, dtype = _HEADERS[version](file)
                self.offset = file.tell()
                file.seek(0)
                self.header = file.read(self.offset)
        except FileNotFoundError:
            raise WidenetError(f"the kernel file {path} does not exist; compute it with "
                               "`widenet kernel` or check the path") from None
        except (OSError, ValueError) as error:
            raise WidenetError(f"cannot read {path} as a .npy file ({error})") from None
        dtype = np.dtype(dtype)
        if (len(shape) != 2 or 0 in shape or dtype.newbyteorder("=") not in (np.float32,
                                                                              np.float64)
                or fortran):
            raise WidenetError(f"{path} holds a {dtype} array of shape {shape}"
                               f"{' in Fortran order' if fortran else ''}; a kernel file holds "
                               "a non-empty 2-D float32 or float64 matrix in C order")
        # absolute: reads (at each block) find the file from another working folder or process
        self.path, self.shape, self.dtype = path.absolute(), tuple(shape), dtype
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        expected = self.size = self.offset + self.shape[0] * self.row_bytes
        size = path.stat().st_size
        if size != expected:
            raise WidenetError(
                f"{path} is cut short ({size} bytes, a {self.shape} {self.dtype} matrix needs "
                f"{expected})" if size < expected else
                f"{path} is longer than its header says ({size} bytes, a {self.shape} "
                f"{self.dtype} matrix takes {expected}): the header does not describe the "
                "data; write the kernel again with np.save or `widenet kernel`")
        self._buffers = threading.local()  # one reused buffer per reading thread

    def __getstate__(self) -> dict:
        """The description without the buffers (not picklable)."""
        return {key: value for key, value in self.__dict__.items() if key != "_buffers"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._buffers = threading.local()

    def _open(self) -> BinaryIO:
        """The file, unbuffered, for reads at offsets, checked to be the one described."""
        try:
            file = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            raise WidenetError(f"the kernel file {self.path} does not exist (any more, or "
                               "where this process runs: a kernel sent to another process or "
                               "machine reads its file there)") from None
        if (os.fstat(file.fileno()).st_size != self.size
                or os.pread(file.fileno(), self.offset, 0) != self.header):
            file.close()
            raise WidenetError(f"the kernel file {self.path} changed since the kernel was "
                               f"opened: it no longer holds a {self.shape} {self.dtype} matrix "
                               f"in {self.size} bytes; open it again")
        return file

    def fetch(self, start: int, stop: int, cols: range) -> np.ndarray:
        """Rows start..stop-1, read whole (one contiguous read) and cut to ``cols``."""
        count = (stop - start) * self.shape[1]
        buffer = getattr(self._buffers, "rows", None)
        if buffer is None or buffer.size < count:
            buffer = self._buffers.rows = np.empty(count, dtype=self.dtype)
        view = buffer[:count]
        with self._open() as file:
            _read_into(file.fileno(), memoryview(view).cast("B"),
                       self.offset + start * self.row_bytes)
        return view.reshape(stop - start, self.shape[1])[:, cols.start:cols.stop]

    def take(self, index: np.ndarray, cols: range) -> np.ndarray:
        """The ``cols`` of the rows ``index``, one read each."""
        out = np.empty((len(index), len(cols)), dtype=self.dtype)
        skip = cols.start * self.dtype.itemsize
        with self._open() as file:
            for row, i in enumerate(index):
                _read_into(file.fileno(), memoryview(out[row]).cast("B"),
                           self.offset + int(i) * self.row_bytes + skip)
        return out


def _read_into(fd: int, target: memoryview, offset: int) -> None:
    """Fill ``target`` from file ``fd`` at ``offset`` (``os.preadv`` may return early)."""
    done = 0
    while done < len(target):
        got = os.preadv(fd, [target[done:]], offset + done)
        if got == 0:
            raise WidenetError("the kernel file ended before its last row; it is cut short")
        done += got
