"""Symmetric Gram products M M^T at half the multiply-adds, through BLAS's rank-k update.

The lower triangle (i >= j) of plus + alpha * M M^T costs c (c + 1) p / 2 multiply-adds where the
square costs c^2 p; torch has no such product, but on x86 its CPU library carries Intel MKL
statically, with the symmetric rank-k update (``?syrk``) among its exported symbols, run by the
same OpenMP threads as torch's own products. ``lower_gram`` calls it through ctypes where that
is known to work and falls back to torch's full product everywhere else, so the caller may
rely only on the lower triangle: the strict upper one is left unspecified.

Known to work means: a CPU float32 or float64 matrix that autograd does not track (a ctypes
call is invisible to it), the symbol found in torch's loaded library, and, once per process, a
self-test of the call against torch's product on a small matrix of integers (exact in floating
point) with a row stride larger than its width, which would notice swapped triangles or
transposes and a mismatched integer width, with beta = 1 and with beta = 0 on an output of
NaNs (``lower_gram`` passes uninitialized memory then, which must be overwritten, not read).
Integers are passed as 64-bit values below 2^31: ``mkl_blas_?syrk``, the layer below MKL's
LP64 and ILP64 interfaces, reads 64-bit ones, and read as 32-bit they are the same numbers.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import torch

_SYMBOLS = {torch.float32: ("mkl_blas_ssyrk", ctypes.c_float),
            torch.float64: ("mkl_blas_dsyrk", ctypes.c_double)}
_MAX_INT = 2**31 - 1  # the largest size or stride a 32-bit BLAS integer holds
_MIRROR_LEAF = 128  # rows of the diagonal blocks that mirror_lower_ mirrors in one pass


def lower_gram(m: torch.Tensor, *, alpha: float = 1.0, plus: float = 0.0) -> torch.Tensor:
    """A (c, c) tensor whose lower triangle (i >= j) is plus + alpha * sum_k m[i, k] m[j, k].

    The strict upper triangle is unspecified (the full product where the rank-k update is not
    available, e.g. when autograd tracks ``m``: then the result is differentiable).
    """
    update = _rank_k_update(m.dtype) if _may_update(m) else None
    if update is None:
        if plus == 0.0 and alpha == 1.0:
            return m @ m.T
        return torch.addmm(m.new_tensor(plus), m, m.T, beta=1.0 if plus else 0.0, alpha=alpha)
    if _row_stride(m) is None:
        m = m.contiguous()
    shape = (m.shape[0], m.shape[0])
    out = (torch.full(shape, plus, dtype=m.dtype, device="cpu") if plus
           else torch.empty(shape, dtype=m.dtype, device="cpu"))  # not torch's default device
    update(m, _row_stride(m), out, alpha, 1.0 if plus else 0.0)
    return out


def rank_k_update_available(like: torch.Tensor) -> bool:
    """Whether ``lower_gram`` of matrices of ``like``'s dtype and device, untracked by autograd,
    takes the rank-k update (half the multiply-adds of the square)."""
    return (like.device.type == "cpu" and like.dtype in _SYMBOLS
            and _rank_k_update(like.dtype) is not None)


def mirror_lower_(square: torch.Tensor) -> torch.Tensor:
    """Copy the strict lower triangle of a square matrix onto its strict upper one, in place,
    so that it is exactly symmetric; returns it.

    A transposing copy reads across rows, which is slow over a whole matrix: the lower-left
    block is copied transposed onto the upper-right one, and the two diagonal blocks recurse
    until they have at most ``_MIRROR_LEAF`` rows (then tril and a transposed add), which takes
    half the time of one pass of tril over the whole matrix at n = 500.
    """
    n = square.shape[0]
    if n <= _MIRROR_LEAF:
        return square.copy_(square.tril().add_(square.tril(-1).mT))
    half = n // 2
    square[:half, half:].copy_(square[half:, :half].mT)
    mirror_lower_(square[:half, :half])
    mirror_lower_(square[half:, half:])
    return square


def _may_update(m: torch.Tensor) -> bool:
    """Whether ``m`` is a matrix the rank-k update can take: a plain dense tensor with memory of
    its own (no subclass, no torch.func wrapper as inside vmap or torch.func.grad), CPU,
    float32/64, not tracked by autograd, not a lazily negated view, not empty, and its sizes
    and row stride (after a copy, its width) within 32-bit BLAS integers."""
    return (type(m) is torch.Tensor and not torch._C._functorch.is_functorch_wrapped_tensor(m)
            and m.dim() == 2 and m.layout == torch.strided and m.device.type == "cpu"
            and m.dtype in _SYMBOLS and not (torch.is_grad_enabled() and m.requires_grad)
            and not m.is_neg() and min(m.shape) > 0
            and max(*m.shape, _row_stride(m) or 0) <= _MAX_INT)


def _row_stride(m: torch.Tensor) -> int | None:
    """ld with m[i, k] at element i * ld + k of its data and ld >= its width (what BLAS calls
    the leading dimension of the column-major transpose), or None when ``m`` is not laid out so.
    A stride of a dimension of size one says nothing and is not read."""
    rows, width = m.shape
    if width > 1 and m.stride(1) != 1:
        return None
    ld = m.stride(0) if rows > 1 else width
    return ld if ld >= width else None


@functools.cache
def _rank_k_update(dtype: torch.dtype):
    """call(m, ld, out, alpha, beta): out (row-major, contiguous, its lower triangle) = beta * out
    + alpha * m m^T, m laid out with row stride ld (``_row_stride``), through MKL's ?syrk; or
    None when torch carries no MKL with it or the call fails its self-test."""
    call = _mkl_call(dtype)
    if call is None:
        return None
    with torch._C._DisableFuncTorch():  # plain tensors even when first called inside vmap
        g = torch.Generator().manual_seed(0)
        probe = torch.randint(-4, 5, (7, 6), generator=g, device="cpu").to(dtype)[:, :5]
        out = torch.full((7, 7), 0.5, dtype=dtype, device="cpu")
        call(probe, 6, out, 2.0, 1.0)
        expected = 0.5 + 2.0 * probe @ probe.T
        untouched = torch.full((7, 7), 0.5, dtype=dtype, device="cpu")
        overwritten = torch.full((7, 7), float("nan"), dtype=dtype, device="cpu")  # beta = 0
        call(probe, 6, overwritten, 1.0, 0.0)
        if (torch.equal(out.tril(), expected.tril())
                and torch.equal(out.triu(1), untouched.triu(1))
                and torch.equal(overwritten.tril(), (probe @ probe.T).tril())):
            return call
    return None


def _mkl_call(dtype: torch.dtype):
    """The ctypes call of MKL's ?syrk inside torch's CPU library, or None where there is none.

    Row-major out's lower triangle is column-major's upper one, and row-major m (c, p) with row
    stride ld is column-major (p, c): so the call is uplo = "U", trans = "T", n = c, k = p.
    """
    if not (sys.platform.startswith("linux") and torch.backends.mkl.is_available()):
        return None
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        symbol = getattr(ctypes.CDLL(path), _SYMBOLS[dtype][0])
    except (OSError, AttributeError):
        return None
    scalar = _SYMBOLS[dtype][1]
    symbol.restype = None

    def call(m: torch.Tensor, ld: int, out: torch.Tensor, alpha: float, beta: float) -> None:
        c, p = m.shape
        if not (type(m) is type(out) is torch.Tensor and m.device.type == out.device.type == "cpu"
                and m.dtype == out.dtype == dtype and out.shape == (c, c)
                and out.is_contiguous() and _row_stride(m) == ld):
            # a guard: C code handed a pointer it cannot take would crash the process
            raise RuntimeError("the rank-k update got tensors it cannot take")
        n, k, ld, ldc = (ctypes.c_int64(v) for v in (c, p, ld, c))
        symbol(b"U", b"T", ctypes.byref(n), ctypes.byref(k), ctypes.byref(scalar(alpha)),
               ctypes.c_void_p(m.data_ptr()), ctypes.byref(ld), ctypes.byref(scalar(beta)),
               ctypes.c_void_p(out.data_ptr()), ctypes.byref(ldc))
    return call
