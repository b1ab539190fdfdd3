"""Kernel matrices too large for one process: computed block by block into a ``.npy`` file.

``kernel_to_disk(net, x, path)`` fills the n x n matrix K(x_i, x_j) (``ntk`` or ``nngp`` of the
net's infinite-width limit, or its ``empirical`` NTK per output unit) in square blocks of
side ``block``, each block a job on an engine (local processes or Ray). Blocks are computed in
float64 and stored as ``dtype`` (float32 halves the file: n = 40,000 takes 6.4 GB). The matrix
is a memory-mapped ``.npy`` file; each worker writes its block (and, by symmetry, the mirrored
one) straight into it and flushes; the driver then records the block as done in
``<path>.blocks.npy`` (beside ``<path>.json``, the identity of the kernel): these two files are
the resume state, and are removed once every block is done, leaving the ``.npy`` alone. After an
interruption, a second call with the same net, inputs, block size and dtype resumes: it computes
only the blocks not yet recorded (a block whose worker died is worth that; one
that raised, say on inputs too large for float64, would raise again and is reported as such;
a file this call started is then removed, so that the same path takes the corrected net).
A matrix that the disk has no room for is refused before any file is written, and a file that
cannot be created is removed again. Workers must see the same file system as the
driver (one machine, or a shared volume on a cluster). Memory stays bounded by a few blocks
per worker, whatever n.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.files import atomic_write
from widenet.solvers.npy_rows import UNFINISHED
from widenet.sweeps.engines import Engine, Job, LocalEngine, Outcome

KINDS = ("ntk", "nngp", "empirical")
DTYPES = ("float32", "float64")


def kernel_to_disk(net: nn.Module, x: torch.Tensor, path: str | Path, *, kind: str = "ntk",
                   block: int = 2048, dtype: str = "float64", engine: Engine | None = None,
                   on_block: Callable[[int, int], None] | None = None) -> np.memmap:
    """Compute the kernel of ``net`` on the points of ``x`` into ``path`` (a ``dtype`` ``.npy``).

    ``net`` is any model :func:`widenet.infinite_kernels` takes (an MLP, a ``widenet.nn`` CNN,
    ResNet, ...) and ``x`` its inputs in torch's layout: (n, d) vectors, (n, C, L) or
    (n, C, H, W) images.

    Returns the finished matrix, memory-mapped read-only. Raises if an earlier, unfinished file
    at ``path`` belongs to another net, other inputs, kind, block size or dtype (remove it to
    start over). ``on_block(done, total)`` reports progress.
    """
    if kind not in KINDS:
        raise WidenetError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if dtype not in DTYPES:
        raise WidenetError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not isinstance(block, int) or block < 1:
        raise WidenetError(f"block must be a positive integer, got {block!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        raise WidenetError("x must be a non-empty tensor of n points: (n, d) vectors or "
                           "(n, C, ...) images")
    path = Path(path)
    if path.suffix != ".npy":
        raise WidenetError(f"the kernel file must end in .npy, got {path}")
    engine = engine or LocalEngine()
    engine.check()  # before any file is made: blocks compute on the CPU
    n = x.shape[0]
    x = x.detach().to("cpu", torch.float64)
    count = -(-n // block)
    identity = {"kind": kind, "n": n, "block": block, "dtype": dtype,
                "fingerprint": _fingerprint(net, x)}
    resumed = path.exists()
    done = _open(path, identity, count)
    rows = [x[i * block:(i + 1) * block] for i in range(count)]  # views: no copies here
    jobs = [Job(f"{i},{j}", compute_block,
                (net, kind, str(path), (i, j), block, rows[i], None if i == j else rows[j]))
            for i in range(count) for j in range(i, count) if not done[i, j]]
    total = count * (count + 1) // 2
    failed: list[str] = []
    lost: list[str] = []

    def record(job: Job, outcome: Outcome) -> None:
        if outcome.status != "done":
            (lost if outcome.status == "lost" else failed).append(
                f"block {job.label}: {outcome.reason}")
            return
        i, j = outcome.result
        done[i, j] = True
        _save_done(path, done)
        if on_block is not None:
            on_block(int(np.triu(done).sum()), total)

    engine.run(jobs, record)
    if failed and not resumed:  # blocks that raised would raise again: no use to keep it
        for file in (path, *(_sidecar(path, suffix) for suffix in (UNFINISHED, ".json"))):
            file.unlink(missing_ok=True)
    _raise_failures(failed, lost, path if resumed else None)
    for suffix in (UNFINISHED, ".json"):  # the resume state: not needed once finished
        _sidecar(path, suffix).unlink(missing_ok=True)
    return np.load(path, mmap_mode="r")


def _raise_failures(failed: list[str], lost: list[str], kept: Path | None) -> None:
    """Refuse an unfinished kernel: blocks that raised would raise again (a re-run cannot
    help; ``kept`` names the resumed file left in place), blocks whose worker died can be
    resumed."""
    if failed:
        other = f"; {len(lost)} other block(s) lost their worker" if lost else ""
        start_over = (f" (remove {kept}, {_sidecar(kept, '.json')} and "
                      f"{_sidecar(kept, UNFINISHED)} to start over)" if kept else "")
        raise WidenetError(f"{len(failed)} block(s) raised an error ({failed[0]}){other}; "
                           "running again would raise it again: change the inputs or the net"
                           + start_over)
    if lost:
        raise WidenetError(f"{len(lost)} block(s) lost their worker ({lost[0]}); run again to "
                           "resume from the finished blocks")


def compute_block(net: nn.Module, kind: str, path: str, index: tuple[int, int], block: int,
                  rows: torch.Tensor, cols: torch.Tensor | None) -> tuple[int, int]:
    """Compute block ``index`` = (i, j) of the kernel, K(rows, cols) (K(rows, rows) on the
    diagonal, ``cols`` None), in float64; write it and its mirror into ``path``, cast to the
    file's dtype, and flush. Only the block's own points travel to the worker. Raises, writing
    nothing, if a value is not finite in float64 or in the file's dtype."""
    from widenet.kernels.empirical import empirical_ntk
    from widenet.kernels.infinite import infinite_kernels

    if kind == "empirical":
        values = empirical_ntk(net, rows, cols).ntk
    else:
        kernels = infinite_kernels(net, rows, cols, dtype=torch.float64)
        values = kernels.ntk if kind == "ntk" else kernels.nngp
    matrix = np.load(path, mmap_mode="r+")
    with np.errstate(over="ignore"):  # an overflow in the cast is reported just below
        stored = values.detach().to("cpu", torch.float64).numpy().astype(matrix.dtype)
    if not np.isfinite(stored).all():
        raise WidenetError(f"block {index[0]},{index[1]} has values that are not finite in "
                           f"{matrix.dtype} (largest |K| in float64: "
                           f"{values.abs().max().item():.3g}); scale the inputs down or use "
                           "--dtype float64")
    r0, c0 = index[0] * block, index[1] * block
    matrix[r0:r0 + stored.shape[0], c0:c0 + stored.shape[1]] = stored
    matrix[c0:c0 + stored.shape[1], r0:r0 + stored.shape[0]] = stored.T
    matrix.flush()
    del matrix
    return index


def _open(path: Path, identity: dict[str, object], count: int) -> np.ndarray:
    """The done-map of blocks: a fresh one (and a fresh matrix file), or the earlier one."""
    meta, blocks = _sidecar(path, ".json"), _sidecar(path, UNFINISHED)
    if path.exists() and meta.exists() and blocks.exists():
        if json.loads(meta.read_text()) != identity:
            raise WidenetError(f"{path} holds a kernel of another net, inputs, kind, block "
                               "size or dtype; remove it (and its .json, .blocks.npy) or "
                               "choose another path")
        return np.load(blocks)
    if path.exists():
        raise WidenetError(f"{path} exists and is not an unfinished widenet kernel (a "
                           "finished one, or another file); remove it or choose another path")
    return _create(path, identity, count)


def _create(path: Path, identity: dict[str, object], count: int) -> np.ndarray:
    """A fresh matrix file with an empty done-map; on failure, no file of it is left behind
    (files that were there before are left alone)."""
    n, dtype = int(identity["n"]), str(identity["dtype"])
    _check_space(path, n * n * np.dtype(dtype).itemsize)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = next((folder for folder in reversed(path.parents) if folder.is_file()),
                          path.parent)
        raise WidenetError(f"cannot create the folder of {path}: {in_the_way} is a file; "
                           "choose another path") from None
    except OSError as error:
        raise WidenetError(f"cannot create the folder of {path}: {_reason(error)}; choose "
                           "another path") from None
    files = [path, *(_sidecar(path, suffix) for suffix in (UNFINISHED, ".blocks.tmp.npy",
                                                           ".json"))]
    new = [file for file in files if not file.exists()]
    try:
        matrix = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, n))
        del matrix
        done = np.zeros((count, count), dtype=bool)
        _save_done(path, done)
        atomic_write(_sidecar(path, ".json"), json.dumps(identity).encode())
    except BaseException as error:
        for file in new:
            file.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WidenetError(f"cannot create the kernel file {path}: {_reason(error)}; "
                               "choose another path") from None
        raise
    return done


def _check_space(path: Path, size: int) -> None:
    """Refuse a matrix of ``size`` bytes that the disk meant to hold ``path`` (that of its
    nearest existing folder) has no room for."""
    folder = next(folder for folder in path.parents if folder.exists())
    free = shutil.disk_usage(folder).free
    if size > free:
        raise WidenetError(f"the kernel needs {_bytes(size)} on disk but {folder} has "
                           f"{_bytes(free)} free; use fewer points, --dtype float32 or a path "
                           "on a larger disk")


def _bytes(size: float) -> str:
    """``6_400_000_000`` -> ``"6.4 GB"``."""
    units = ["B", "kB", "MB", "GB", "TB"]
    while size >= 1000 and len(units) > 1:
        size, units = size / 1000, units[1:]
    return f"{size:.3g} {units[0]}"


def _reason(error: OSError) -> str:
    """The system's message for ``error``, with the file it is about (a rename's two)."""
    files = " -> ".join(str(name) for name in (error.filename, error.filename2) if name)
    return f"{error.strerror or error}" + (f" ({files})" if files else "")


def _save_done(path: Path, done: np.ndarray) -> None:
    temporary = _sidecar(path, ".blocks.tmp.npy")
    np.save(temporary, done)
    os.replace(temporary, _sidecar(path, UNFINISHED))


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _fingerprint(net: nn.Module, x: torch.Tensor) -> str:
    """A hash of the net (its repr, activation and stds, parameters) and the inputs, to refuse
    resuming a file with another net or other inputs."""
    facts = [repr(net), *(repr(getattr(net, name, None)) for name in
                          ("activation", "weight_std", "bias_std", "parametrization"))]
    digest = hashlib.sha256("\n".join(facts).encode())
    for name, tensor in [*net.state_dict().items(), ("x", x)]:
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.hexdigest()
