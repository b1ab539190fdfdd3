"""Symmetric Gram products by the rank-k update: the lower triangle against brute force, the
fall-back to torch's product wherever the update may not run, and the in-place mirror."""

from __future__ import annotations

import sys

import pytest
import torch

from widenet.kernels import _gram
from widenet.kernels._gram import lower_gram, mirror_lower_, rank_k_update_available

MKL_HERE = sys.platform.startswith("linux") and torch.backends.mkl.is_available()


def _integers(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Small integers, whose products and sums are exact in floating point."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-5, 6, shape, generator=g).to(dtype)


def _brute(m: torch.Tensor, alpha: float, plus: float) -> torch.Tensor:
    """plus + alpha * sum_k m[i, k] m[j, k], one entry at a time in float64."""
    m = m.double()
    c = m.shape[0]
    return torch.tensor([[plus + alpha * float((m[i] * m[j]).sum()) for j in range(c)]
                         for i in range(c)], dtype=torch.float64)


@pytest.mark.skipif(not MKL_HERE, reason="torch carries MKL on Linux x86 only")
def test_torch_with_mkl_gets_the_rank_k_update():
    assert rank_k_update_available(torch.zeros(1))
    assert rank_k_update_available(torch.zeros(1, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("alpha", "plus"), [(1.0, 0.0), (0.5, 0.0), (2.0, 3.0), (1.0, -1.5)])
def test_the_lower_triangle_is_the_gram_product(dtype, alpha, plus):
    m = _integers(9, 13, dtype=dtype)
    result = lower_gram(m, alpha=alpha, plus=plus)
    assert result.dtype == dtype
    assert result.shape == (9, 9)
    assert torch.equal(result.double().tril(), _brute(m, alpha, plus).tril())


@pytest.mark.parametrize("make", [
    lambda w: w[:, :7],  # rows strided wider than they are long
    lambda w: w.T[:7],  # columns strided: copied first
    lambda w: w[::2],  # every other row
    lambda w: w[:1],  # one row
    lambda w: w[:, :1],  # one column
    lambda w: w[2:9, 3:4].expand(7, 5),  # stride 0 across the columns
    lambda w: w[2:3, :1].expand(7, 1),  # stride 0 across the rows
    lambda w: w[:7, 4:5].clone().T,  # one row whose row stride (1) is below its width
    lambda w: w[:, 4:5],  # one column, strided
])
def test_strided_views_give_the_same_lower_triangle(make):
    m = make(_integers(11, 11, seed=1))
    assert torch.equal(lower_gram(m, plus=1.0).double().tril(), _brute(m, 1.0, 1.0).tril())


def test_what_the_update_may_not_take_gets_torchs_full_product():
    for m in (_integers(5, 3, dtype=torch.float16), _integers(0, 4), _integers(4, 0),
              _integers(5, 3, dtype=torch.complex64), _integers(5, 3)._neg_view()):
        expected = m @ m.T
        assert torch.equal(lower_gram(m), expected)
    sparse = _integers(5, 3).to_sparse()
    assert torch.equal(lower_gram(sparse).to_dense(), (sparse @ sparse.T).to_dense())


def test_a_tracked_matrix_keeps_its_gradient():
    m = _integers(6, 4, dtype=torch.float64).requires_grad_()
    (lower_gram(m, alpha=2.0, plus=1.0).tril().sum()).backward()
    reference = m.detach().clone().requires_grad_()
    (1 + 2 * reference @ reference.T).tril().sum().backward()
    assert torch.equal(m.grad, reference.grad)


def test_tensors_of_torch_func_transforms_get_torchs_product():
    """vmap's batched tensors and torch.func.grad's wrappers have no memory of their own; the
    self-test, first run inside the transform here, makes plain tensors all the same."""
    _gram._rank_k_update.cache_clear()
    batch = _integers(3, 6, 4, dtype=torch.float64)
    batched = torch.func.vmap(lambda m: lower_gram(m, plus=1.0))(batch)
    assert torch.equal(batched.tril(), (1 + batch @ batch.mT).tril())
    constant = _integers(6, 4, dtype=torch.float64, seed=2)
    grad = torch.func.grad(lambda v: (lower_gram(constant * v.detach()).tril() * v).sum())(
        torch.tensor(2.0, dtype=torch.float64))
    assert float(grad) == float((4 * constant @ constant.T).tril().sum())

def test_a_call_that_fails_its_self_test_is_never_used(monkeypatch):
    def wrong(m, ld, out, alpha, beta):  # an upper triangle, as a mismatched binding would give
        out.copy_((beta * out + alpha * m @ m.T).triu())

    monkeypatch.setattr(_gram, "_mkl_call", lambda dtype: wrong)
    _gram._rank_k_update.cache_clear()
    try:
        assert not rank_k_update_available(torch.zeros(1))
        m = _integers(8, 5)
        assert torch.equal(lower_gram(m), m @ m.T)
    finally:
        monkeypatch.undo()
        _gram._rank_k_update.cache_clear()


def test_a_call_that_reads_the_output_when_beta_is_zero_is_never_used(monkeypatch):
    """lower_gram hands beta = 0 an uninitialized output: a call that reads it (0 * NaN) would
    give NaN kernels where the memory held NaN, so the self-test must catch it."""
    def reads(m, ld, out, alpha, beta):  # right for beta = 1, but multiplies the old output by beta
        out.copy_(torch.where(torch.ones_like(out, dtype=torch.bool).tril(),
                              beta * out + alpha * m @ m.T, out))

    monkeypatch.setattr(_gram, "_mkl_call", lambda dtype: reads)
    _gram._rank_k_update.cache_clear()
    try:
        assert not rank_k_update_available(torch.zeros(1))
    finally:
        monkeypatch.undo()
        _gram._rank_k_update.cache_clear()


@pytest.mark.parametrize("n", [1, 2, 3, 127, 128, 129, 300, 513])
def test_mirror_copies_the_strict_lower_triangle_onto_the_upper_one(n):
    square = torch.randn(n, n, generator=torch.Generator().manual_seed(n))
    expected = square.tril() + square.tril(-1).T
    assert mirror_lower_(square) is square
    assert torch.equal(square, expected)


def test_mirror_works_on_a_view_of_a_larger_kernel():
    kernel = torch.randn(400, 400, generator=torch.Generator().manual_seed(0))
    expected = kernel.clone()
    block = expected[100:350, 100:350]
    block.copy_(block.tril() + block.tril(-1).T)
    mirror_lower_(kernel[100:350, 100:350])
    assert torch.equal(kernel, expected)


def test_torchs_default_device_does_not_reach_the_update():
    """With torch.set_default_device("cuda") (here "meta"), buffers made without a device were
    not on the CPU: MKL wrote through their pointers and the process died (segfault)."""
    _gram._rank_k_update.cache_clear()
    m = _integers(9, 4)
    torch.set_default_device("meta")
    try:
        for plus in (0.0, 1.5):
            result = lower_gram(m, plus=plus)
            assert result.device.type == "cpu"
            assert torch.equal(result.tril(), (plus + m @ m.T).tril())
        assert rank_k_update_available(m)
    finally:
        torch.set_default_device(None)
        _gram._rank_k_update.cache_clear()
