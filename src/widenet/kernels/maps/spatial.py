"""The spatial part of the kernel maps: convolution offsets and average pooling on kernels
tracked per position (docs/theory.md section 7).

A tensor here is (*batch, *positions) with ``groups`` copies of the ``dims`` spatial axes at the
end: one copy (DIAG, Sigma_{i,i}) or two (FULL, Sigma_{i,i'}). A convolution moves the SAME
offset along every copy, so its map is a sum of shifted slices of the padded tensor; the filter
is a product of per-axis offsets, so the sum is taken one axis at a time (k1 + k2 slices for a
k1 x k2 filter instead of k1 k2).
"""

from __future__ import annotations

import torch

from widenet.errors import WidenetError
from widenet.kernels.maps.base import BufferPool


def output_size(size: int, window: int, stride: int, before: int, after: int, what: str,
                fix: str = "a smaller window") -> int:
    """Positions along one axis after a window of ``window`` moved by ``stride`` over
    ``size`` inputs padded by ``before`` and ``after``; at least one window must fit (else the
    error suggests larger inputs or ``fix``)."""
    padded = size + before + after
    if padded < window:
        padded_note = f" ({padded} after padding)" if padded != size else ""
        raise WidenetError(f"{what} has a window of {window} along an axis of only {size} "
                           f"positions{padded_note}; use larger inputs or {fix}")
    return (padded - window) // stride + 1


def _axes(t: torch.Tensor, groups: int, dims: int, axis: int) -> list[int]:
    """The tensor axes of spatial axis ``axis`` in each copy."""
    first = t.ndim - groups * dims
    return [first + g * dims + axis for g in range(groups)]


def _pad(t: torch.Tensor, dim: int, before: int, after: int, circular: bool) -> torch.Tensor:
    if not before and not after:
        return t
    size = t.shape[dim]
    if circular:  # at most one wrap (checked when the convolution's op is built)
        return torch.cat([t.narrow(dim, size - before, before), t, t.narrow(dim, 0, after)],
                         dim=dim)
    shape = list(t.shape)
    shape[dim] = size + before + after
    padded = t.new_zeros(shape)
    padded.narrow(dim, before, size).copy_(t)
    return padded


def shift_sum(t: torch.Tensor, groups: int, kernel: tuple[int, ...], stride: tuple[int, ...],
              pads: tuple[tuple[int, int], ...], circular: bool, scale: float = 1.0,
              pool: BufferPool | None = None) -> torch.Tensor:
    """scale * sum_{delta in filter} T[s j + delta, s j' + delta] (same delta in every copy),
    over the zero- or circularly padded positions (scale = 1/|filter| gives the mean). With a
    ``pool``, outputs come from it and intermediate arrays go back to it."""
    pool = pool or BufferPool(keep=0)
    dims = len(kernel)
    for axis, (k, s, (before, after)) in enumerate(zip(kernel, stride, pads, strict=True)):
        axes = _axes(t, groups, dims, axis)
        if circular:
            for dim in axes:
                t = _pad(t, dim, before, after, circular=True)
            before = after = 0
        out = _axis_shift_sum(t, axes, k, s, before, after, scale if axis == 0 else 1.0, pool)
        if axis:
            pool.give(t)
        t = out
    return t


def _axis_shift_sum(t: torch.Tensor, axes: list[int], k: int, s: int, before: int, after: int,
                    scale: float, pool: BufferPool) -> torch.Tensor:
    """One axis of :func:`shift_sum` with zero padding, without materializing the padding:
    output j gets input i = s j + delta - before for every delta with 0 <= i < n."""
    n = t.shape[axes[0]]
    out_size = (n + before + after - k) // s + 1
    pieces = []  # (first output, count, first input) per delta, ranges clipped to the input
    for delta in range(k):
        shift = delta - before
        first = max(0, -(shift // s) if shift < 0 else 0)
        while s * first + shift < 0:
            first += 1
        last = min(out_size - 1, (n - 1 - shift) // s)
        if last >= first:
            pieces.append((first, last - first + 1, s * first + shift))
    full = [p for p in pieces if p[1] == out_size]
    order = full[:1] + [p for p in pieces if p is not (full[0] if full else None)]

    def view(tensor: torch.Tensor, start: int, count: int, step: int) -> torch.Tensor:
        index = [slice(None)] * tensor.ndim
        for dim in axes:
            index[dim] = slice(start, start + step * (count - 1) + 1, step)
        return tensor[tuple(index)]

    if full:
        _, count, start = order[0]
        first_view = view(t, start, count, s)
        out = pool.take(t, first_view.shape)
        torch.mul(first_view, scale, out=out)
        rest = order[1:]
    else:
        shape = list(t.shape)
        for dim in axes:
            shape[dim] = out_size
        out = t.new_zeros(shape)
        rest = order
    for first, count, start in rest:
        view(out, first, count, 1).add_(view(t, start, count, s), alpha=scale)
    return out


def pool_mean(t: torch.Tensor, groups: int, window: tuple[int, ...], stride: tuple[int, ...]
              ) -> torch.Tensor:
    """(1/|W|^groups) sum over i in W_j (each copy independently) of T: average pooling applied
    to every copy of the positions, W_j = s j + [0, window)."""
    dims = len(window)
    for axis, (w, s) in enumerate(zip(window, stride, strict=True)):
        for dim in _axes(t, groups, dims, axis):
            t = t.unfold(dim, w, s).mean(dim=-1)
    return t.contiguous()
