"""Blocked kernels on disk: equal to the in-memory kernels, resumable, refusing mismatches and
unusable paths, telling failures worth a re-run from those that are not."""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from widenet.data import sphere_points
from widenet.errors import WidenetError
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.models import MLP
from widenet.sweeps import LocalEngine
from widenet.sweeps.engines import Job, OnResult, Outcome
from widenet.sweeps.kernel import kernel_to_disk


def _net(activation: str = "relu") -> MLP:
    return MLP(5, [16, 16], 1, activation, seed=0, dtype=torch.float64)


def test_blocks_assemble_the_infinite_kernels(tmp_path: Path) -> None:
    x = sphere_points(23, 5)
    net = _net()
    ntk = kernel_to_disk(net, x, tmp_path / "ntk.npy", block=8, engine=LocalEngine(2))
    nngp = kernel_to_disk(net, x, tmp_path / "nngp.npy", kind="nngp", block=10,
                          engine=LocalEngine(2))
    reference = infinite_kernels(net, x)
    np.testing.assert_allclose(ntk, reference.ntk.numpy(), rtol=1e-13, atol=0)
    np.testing.assert_allclose(nngp, reference.nngp.numpy(), rtol=1e-13, atol=0)


def test_a_cnn_kernel_on_images_in_blocks(tmp_path: Path) -> None:
    """Any architecture infinite_kernels takes works in blocks too: a CNN with global average
    pooling (position pairs tracked) on (n, C, H, W) images."""
    from widenet import nn

    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Activation("relu"), nn.AvgPool2d(2),
                        nn.Conv2d(4, 4, 3), nn.Activation("relu"), nn.GlobalAvgPool(),
                        nn.Dense(4, 1)).to(torch.float64)
    x = torch.randn(11, 2, 6, 6, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    ntk = kernel_to_disk(net, x, tmp_path / "cnn.npy", block=4, engine=LocalEngine(2))
    np.testing.assert_allclose(ntk, infinite_kernels(net, x).ntk.numpy(), rtol=1e-12, atol=0)


def test_a_float32_file_holds_the_kernel_rounded_once(tmp_path: Path) -> None:
    x = sphere_points(19, 5)
    net = _net()
    matrix = kernel_to_disk(net, x, tmp_path / "k32.npy", block=6, dtype="float32",
                            engine=LocalEngine(2))
    assert matrix.dtype == np.float32
    exact = infinite_kernels(net, x).ntk.numpy()
    np.testing.assert_allclose(matrix, exact, rtol=2.0**-24 + 1e-13, atol=0)  # one rounding
    np.testing.assert_array_equal(matrix, matrix.T)


def test_the_empirical_kernel_in_blocks(tmp_path: Path) -> None:
    x = sphere_points(12, 5)
    net = _net()
    matrix = kernel_to_disk(net, x, tmp_path / "e.npy", kind="empirical", block=5,
                            engine=LocalEngine(2))
    np.testing.assert_allclose(matrix, empirical_ntk(net, x).ntk.numpy(), rtol=1e-12, atol=1e-14)


def test_an_interrupted_kernel_resumes_from_its_finished_blocks(tmp_path: Path) -> None:
    x = sphere_points(20, 5)
    net, path = _net(), tmp_path / "k.npy"

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kernel_to_disk(net, x, path, block=5, engine=LocalEngine(1), on_block=stop_after_three)
    progress: list[int] = []
    matrix = kernel_to_disk(net, x, path, block=5, engine=LocalEngine(2),
                            on_block=lambda done, total: progress.append(done))
    assert len(progress) == 10 - 3
    assert progress[-1] == 10
    assert sorted(tmp_path.iterdir()) == [path]  # the resume state is gone once finished
    with pytest.raises(WidenetError, match=r"not an unfinished widenet kernel \(a finished one"):
        kernel_to_disk(net, x, path, block=5, engine=LocalEngine(1))
    np.testing.assert_allclose(matrix, infinite_kernels(net, x).ntk.numpy(), rtol=1e-13)


def test_a_mismatched_resume_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    x = sphere_points(6, 5)
    path = tmp_path / "k.npy"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an unfinished kernel: its resume state stays
        kernel_to_disk(_net(), x, path, block=3, engine=LocalEngine(1), on_block=stop)
    with pytest.raises(WidenetError, match="another net, inputs"):
        kernel_to_disk(_net("abs"), x, path, block=3, engine=LocalEngine(1))
    with pytest.raises(WidenetError, match="another net, inputs"):
        kernel_to_disk(_net(), x, path, block=2, engine=LocalEngine(1))
    with pytest.raises(WidenetError, match="block size or dtype"):
        kernel_to_disk(_net(), x, path, block=3, dtype="float32", engine=LocalEngine(1))
    (tmp_path / "other.npy").write_bytes(b"x")
    with pytest.raises(WidenetError, match="not an unfinished widenet kernel"):
        kernel_to_disk(_net(), x, tmp_path / "other.npy")
    with pytest.raises(WidenetError, match="dtype must be one of"):
        kernel_to_disk(_net(), x, tmp_path / "z.npy", dtype="float16")
    with pytest.raises(WidenetError, match="kind must be one of"):
        kernel_to_disk(_net(), x, tmp_path / "z.npy", kind="cntk")
    with pytest.raises(WidenetError, match=r"must end in \.npy"):
        kernel_to_disk(_net(), x, tmp_path / "z.bin")


def test_a_deep_net_kernel_completes(tmp_path: Path) -> None:
    x = sphere_points(4, 3)
    net = MLP(3, [2] * 400, 1, "relu", seed=0, dtype=torch.float64)
    matrix = kernel_to_disk(net, x, tmp_path / "deep.npy", block=2, engine=LocalEngine(1))
    np.testing.assert_allclose(matrix, infinite_kernels(net, x).ntk.numpy(), rtol=1e-12)


def test_unusable_paths_are_refused_in_one_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    x = sphere_points(4, 3)
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(WidenetError, match="afile is a file; choose another path"):
        kernel_to_disk(_net(), sphere_points(4, 5), tmp_path / "afile" / "sub" / "k.npy")
    assert (tmp_path / "afile").read_text() == "keep"
    full = shutil.disk_usage(tmp_path)._replace(free=100)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: full)
    with pytest.raises(WidenetError, match=r"needs 128 B on disk but .* has 100 B free"):
        kernel_to_disk(MLP(3, [4], 1, seed=0), x, tmp_path / "new" / "k.npy")
    assert list(tmp_path.iterdir()) == [tmp_path / "afile"]


def test_a_matrix_file_that_cannot_be_created_leaves_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, stale = tmp_path / "k.npy", tmp_path / "k.npy.json"
    stale.write_text("from before")

    def too_big(file: Path, **_: object) -> None:
        Path(file).write_bytes(b"\x93NUMPY" + b" " * 122)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(np.lib.format, "open_memmap", too_big)
    with pytest.raises(WidenetError, match=r"cannot create the kernel file .*Invalid argument"):
        kernel_to_disk(_net(), sphere_points(4, 5), path, engine=LocalEngine(1))
    assert sorted(tmp_path.iterdir()) == [stale]
    assert stale.read_text() == "from before"
    monkeypatch.undo()
    assert kernel_to_disk(_net(), sphere_points(4, 5), path, engine=LocalEngine(1)).shape == (4, 4)


class _LosingEngine:
    """Reports every job lost, as if each worker had been killed."""

    def check(self, device: str = "cpu") -> None:
        """Runs anywhere."""

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs:
            on_result(job, Outcome("lost", reason="worker died (exit code -9) 3 times"))


def test_a_block_that_raises_is_not_worth_resuming_a_lost_one_is(tmp_path: Path) -> None:
    huge = torch.full((4, 5), 1e300, dtype=torch.float64)
    refusal = r"raised an error.*overflowed.*would raise it again"
    with pytest.raises(WidenetError, match=refusal) as raised:
        kernel_to_disk(_net(), huge, tmp_path / "huge.npy", block=2, engine=LocalEngine(1))
    assert "run again" not in str(raised.value)
    with pytest.raises(WidenetError, match=r"3 block\(s\) lost their worker .*run again"):
        kernel_to_disk(_net(), sphere_points(4, 5), tmp_path / "lost.npy", block=2,
                       engine=_LosingEngine())


class _InlineEngine:
    """Runs each job in this process and keeps it, to look at what a worker would receive."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def check(self, device: str = "cpu") -> None:
        """Runs here, on the CPU."""

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs:
            self.jobs.append(job)
            on_result(job, Outcome("done", result=job.function(*job.args)))


def test_a_block_job_carries_only_its_own_points(tmp_path: Path) -> None:
    x, engine = sphere_points(10, 5), _InlineEngine()
    matrix = kernel_to_disk(_net(), x, tmp_path / "k.npy", block=4, engine=engine)
    np.testing.assert_allclose(matrix, infinite_kernels(_net(), x).ntk.numpy(), rtol=1e-13)
    sizes = {job.label: [a.shape[0] for a in job.args if isinstance(a, torch.Tensor)]
             for job in engine.jobs}
    assert sizes == {"0,0": [4], "0,1": [4, 4], "0,2": [4, 2], "1,1": [4], "1,2": [4, 2],
                     "2,2": [2]}


def test_values_beyond_float32_are_refused_not_stored_as_inf(tmp_path: Path) -> None:
    x = sphere_points(4, 5) * 1e20  # ||x||^2 ~ 5e40: K overflows float32, not float64
    with pytest.raises(WidenetError, match=r"not finite in float32.*--dtype float64"):
        kernel_to_disk(_net(), x, tmp_path / "k.npy", block=4, dtype="float32",
                       engine=_InlineEngine())
    matrix = kernel_to_disk(_net(), x, tmp_path / "k64.npy", block=4, engine=_InlineEngine())
    assert np.isfinite(matrix).all()


class _FailingEngine(_InlineEngine):
    """Runs each job in this process and reports one that raises as failed, as workers do."""

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs:
            try:
                outcome = Outcome("done", result=job.function(*job.args))
            except Exception as error:
                outcome = Outcome("failed", reason=f"{type(error).__name__}: {error}")
            on_result(job, outcome)


def test_a_kernel_whose_blocks_raise_leaves_no_file_and_its_advice_works(tmp_path: Path) -> None:
    """A block that raised would raise again, so the new file could never be finished: it is
    removed, and the advice (float64, other inputs) works at the same path."""
    x, path = sphere_points(4, 5) * 1e20, tmp_path / "k.npy"
    with pytest.raises(WidenetError, match=r"not finite in float32.*--dtype float64"):
        kernel_to_disk(_net(), x, path, block=2, dtype="float32", engine=_FailingEngine())
    assert list(tmp_path.iterdir()) == []
    assert np.isfinite(kernel_to_disk(_net(), x, path, block=2, engine=_FailingEngine())).all()
    path.unlink()
    with pytest.raises(WidenetError, match=r"overflowed.*change the inputs or the net"):
        kernel_to_disk(_net(), x * 1e280, path, block=2, engine=_FailingEngine())
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_kernel_whose_blocks_raise_is_kept_and_says_how_to_start_over(
        tmp_path: Path) -> None:
    path, x = tmp_path / "k.npy", sphere_points(4, 5)
    x[2:] *= 1e300  # the blocks of the last two points overflow, block 0,0 does not
    with pytest.raises(WidenetError, match="lost their worker"):
        kernel_to_disk(_net(), x, path, block=2, engine=_LosingEngine())
    with pytest.raises(WidenetError, match=r"overflowed.*remove .*k\.npy, .*\.json and "
                                           r".*\.blocks\.npy to start over"):
        kernel_to_disk(_net(), x, path, block=2, engine=_FailingEngine())
    assert sorted(file.name for file in tmp_path.iterdir()) == [
        "k.npy", "k.npy.blocks.npy", "k.npy.json"]


@pytest.mark.parametrize("suffix", [".json", ".blocks.npy"])
def test_a_folder_in_the_way_of_a_resume_file_is_named(tmp_path: Path, suffix: str) -> None:
    """The rename onto the folder fails; the message named only the temporary file."""
    (tmp_path / f"k.npy{suffix}").mkdir()
    with pytest.raises(WidenetError, match=rf"Is a directory \(.*\.tmp(\.npy)? -> "
                                           rf".*k\.npy{re.escape(suffix)}\)"):
        kernel_to_disk(_net(), sphere_points(4, 5), tmp_path / "k.npy", engine=_FailingEngine())
    assert [path.name for path in tmp_path.iterdir()] == [f"k.npy{suffix}"]
