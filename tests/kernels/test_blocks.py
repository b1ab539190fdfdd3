"""Block planning of the empirical NTK: a symmetric kernel is split into row chunks so that only
its upper triangle of blocks is computed."""

from __future__ import annotations

import torch

from widenet.kernels._blocks import TRIANGLE_CHUNKS, plan_blocks, slices
from widenet.kernels.empirical import empirical_ntk
from widenet.models import MLP


class _Free:
    """A method whose features and blocks take no memory, so that only the cache rule plans."""

    mode = "trace"

    def feature_memory(self, c: int, kc: int) -> int:
        return 0

    def block_memory(self, c1: int, c2: int, kc: int, per_layer: bool) -> int:
        return 0


def test_a_symmetric_kernel_gets_triangle_chunks_and_a_rectangular_one_keeps_whole_rows():
    options = {"itemsize": 4, "budget": 2**30, "chunk_size": None, "per_layer": False}
    square = plan_blocks(_Free(), 1000, 1000, 1, symmetric=True, **options)
    assert len(slices(1000, square.rows)) == TRIANGLE_CHUNKS
    assert plan_blocks(_Free(), 1000, 1000, 1, **options).rows == 1000
    # chunks never fall below MIN_BLOCK_ROWS rows of points x outputs
    assert plan_blocks(_Free(), 200, 200, 1, symmetric=True, **options).rows == 128


def test_the_triangle_of_blocks_gives_the_jacobian_methods_kernel_exactly_symmetric():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = MLP(5, [16, 16], 2, activation="tanh", bias_std=0.1, seed=0, dtype=torch.float64)
    for outputs in ("trace", "full"):
        fast = empirical_ntk(net, x, outputs=outputs)
        exact = empirical_ntk(net, x, outputs=outputs, method="jacobian")
        kernel, reference = ((fast.ntk, exact.ntk) if outputs == "trace"
                             else (fast.full, exact.full))
        torch.testing.assert_close(kernel, reference, rtol=1e-10, atol=1e-12)
        assert torch.equal(fast.ntk, fast.ntk.T)
