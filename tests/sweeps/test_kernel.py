"""Blocked kernels on disk: equal to the in-memory kernels, resumable, refusing mismatches."""

from __future__ import annotations

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
    np.testing.assert_allclose(matrix, empirical_ntk(net, x).numpy(), rtol=1e-12, atol=1e-14)


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
    np.testing.assert_allclose(matrix, infinite_kernels(net, x).ntk.numpy(), rtol=1e-13)


def test_a_mismatched_resume_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    x = sphere_points(6, 5)
    path = tmp_path / "k.npy"
    kernel_to_disk(_net(), x, path, block=3, engine=LocalEngine(1))
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
