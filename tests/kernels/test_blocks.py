"""Block planning of the empirical NTK: a symmetric kernel is split into row chunks so that only
its upper triangle of blocks is computed."""

from __future__ import annotations

import pytest
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


def test_squares_at_half_cost_take_one_chunk_unless_its_features_do_not_fit_beside_the_panel():
    options = {"itemsize": 4, "chunk_size": None, "per_layer": False, "symmetric": True,
               "halved_squares": True}
    assert plan_blocks(_Free(), 1000, 1000, 1, budget=2**30, **options).rows == 1000

    class _Heavy(_Free):
        def feature_memory(self, c: int, kc: int) -> int:
            return 1000 * c

    # the panel's features (4 MB) fit in 6 MB, the row chunk's beside them only at 1/4
    heavy = plan_blocks(_Heavy(), 1000, 1000, 1, budget=6 * 10**6, **options)
    assert (heavy.rows, heavy.panel) == (250, 1000)


@pytest.mark.parametrize("chunk_size", [None, 7, 16])
@pytest.mark.parametrize("per_layer", [False, True])
def test_square_blocks_as_lower_triangles_give_the_cross_kernel_exactly_symmetric(chunk_size,
                                                                                  per_layer):
    """K(x, x) from square blocks (lower triangles, mirrored) and rectangles, over several
    panels and row chunks, is the kernel of x against a copy of itself (rectangles only)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(45, 5, generator=g)
    net = MLP(5, [24, 24], 3, activation="relu", bias_std=0.5, seed=2)
    options = {"chunk_size": chunk_size, "per_layer": per_layer}
    fast = empirical_ntk(net, x, **options)
    cross = empirical_ntk(net, x, x.clone(), **options)
    pairs = [(fast.ntk, cross.ntk)] + [(fast.blocks[name], cross.blocks[name])
                                       for name in fast.blocks]
    assert len(pairs) == (7 if per_layer else 1)
    for kernel, reference in pairs:
        assert torch.equal(kernel, kernel.T)
        torch.testing.assert_close(kernel, reference, rtol=2e-5, atol=2e-5 * float(
            reference.abs().max()))


def test_square_blocks_of_a_convolution_sum_positions_over_both_triangles():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 2, 6, 6, generator=g)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(64, 2))
    fast = empirical_ntk(net, x, chunk_size=6)
    cross = empirical_ntk(net, x, x.clone(), chunk_size=6)
    assert torch.equal(fast.ntk, fast.ntk.T)
    torch.testing.assert_close(fast.ntk, cross.ntk, rtol=2e-5,
                               atol=2e-5 * float(cross.ntk.abs().max()))


@pytest.mark.parametrize("memory_budget", [60_000, 20_000])
def test_square_blocks_summed_over_chunks_of_outputs_give_the_cross_kernel(memory_budget):
    """A budget that splits the k = 6 outputs into chunks: the trace's square blocks add the
    chunks' lower triangles (then mirrored once)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 5, generator=g)
    net = MLP(5, [40], 6, activation="relu", seed=5)
    fast = empirical_ntk(net, x, memory_budget=memory_budget)
    cross = empirical_ntk(net, x, x.clone(), method="jacobian")
    assert torch.equal(fast.ntk, fast.ntk.T)
    torch.testing.assert_close(fast.ntk, cross.ntk, rtol=2e-5,
                               atol=2e-5 * float(cross.ntk.abs().max()))
