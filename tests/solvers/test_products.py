"""The block product: float64 B V to round-off whatever the block's dtype and layout and
however it is cut into chunks, and a block that is not finite named by its rows; a pass in
worker threads gives the bits of the pass in one thread and restores torch's threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from widenet.errors import WidenetError
from widenet.solvers import products
from widenet.solvers.products import RowProduct, multiply_blocks

from .conftest import assert_product


def _block() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((21, 40)).astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 3, 8, 20, 64])
def test_float32_and_strided_blocks_multiply_in_float64_in_every_chunking(
        monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(products, "CHUNK_BYTES", 1)
    monkeypatch.setattr(products, "MIN_CHUNK_ROWS", chunk)
    stored = _block()
    right = torch.randn(30, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    read_only = stored[:, 5:35]
    read_only.flags.writeable = False
    for block in (stored[:, :30], stored[:, 5:35].astype(np.float64), read_only):
        out = torch.full((21, 4), float("nan"), dtype=torch.float64)
        RowProduct(right).into(block, out, 0)
        assert_product(out, torch.from_numpy(block.astype(np.float64)), right)


def test_a_block_that_is_not_finite_is_named_by_its_rows() -> None:
    block = _block()
    block[4, 7] = np.inf
    with pytest.raises(WidenetError, match=r"not finite in rows 100\.\.120"):
        RowProduct(torch.ones(40, 1, dtype=torch.float64)).into(
            block, torch.empty(21, 1, dtype=torch.float64), 100)


def test_a_pass_in_two_worker_threads_has_the_bits_of_one_thread() -> None:
    stored = np.random.default_rng(3).standard_normal((50, 40)).astype(np.float32)
    right = torch.randn(40, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    meet, threads = threading.Barrier(2, timeout=30), set()

    def fetch(start: int, stop: int) -> np.ndarray:
        if threading.get_ident() not in threads:  # each worker's first block: both take part
            threads.add(threading.get_ident())
            meet.wait()
        return stored[start:stop]

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        alone = multiply_blocks(lambda start, stop: stored[start:stop], 50, 6, right, 1)
        together = multiply_blocks(fetch, 50, 6, right, 2)
        assert len(threads) == 2
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(together, alone)
    assert_product(together, torch.from_numpy(stored), right)
    stored[31, 2] = np.nan
    with pytest.raises(WidenetError, match=r"not finite in rows 30\.\.35"):
        multiply_blocks(lambda start, stop: stored[start:stop], 50, 6, right, 2)


def test_ctrl_c_during_a_pass_in_worker_threads_stops_the_workers() -> None:
    """Ctrl-C reaches the calling thread while it waits for the workers: they stop taking
    blocks (each of the 80 takes 0.1 s, so the pass would go on for 4 s), and torch's threads
    are restored."""
    import os
    import signal
    import time

    stored = np.zeros((80, 8), dtype=np.float32)
    fetched: list[int] = []

    def fetch(start: int, stop: int) -> np.ndarray:
        fetched.append(start)
        if start == 10:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        return stored[start:stop]

    previous = torch.get_num_threads()
    with pytest.raises(KeyboardInterrupt):
        multiply_blocks(fetch, 80, 1, torch.ones(8, 1, dtype=torch.float64), 2)
    assert torch.get_num_threads() == previous
    assert len(fetched) < 40, len(fetched)
