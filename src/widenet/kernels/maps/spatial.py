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


def output_size(size: int, window: int, stride: int, before: int, after: int, what: str) -> int:
    """Positions along one axis after a window of ``window`` moved by ``stride`` over
    ``size`` inputs padded by ``before`` and ``after``; at least one window must fit."""
    padded = size + before + after
    if padded < window:
        padded_note = f" ({padded} after padding)" if padded != size else ""
        raise WidenetError(f"{what} has a window of {window} along an axis of only {size} "
                           f"positions{padded_note}; use larger inputs, a smaller window or "
                           "'same' padding")
    return (padded - window) // stride + 1


def _axes(t: torch.Tensor, groups: int, dims: int, axis: int) -> list[int]:
    """The tensor axes of spatial axis ``axis`` in each copy."""
    first = t.ndim - groups * dims
    return [first + g * dims + axis for g in range(groups)]


def _pad(t: torch.Tensor, dim: int, before: int, after: int, circular: bool) -> torch.Tensor:
    if not before and not after:
        return t
    size = t.shape[dim]
    if circular:
        if before > size or after > size:
            raise WidenetError(f"circular padding of {max(before, after)} exceeds the axis "
                               f"of {size} positions; use larger inputs or a smaller filter")
        return torch.cat([t.narrow(dim, size - before, before), t, t.narrow(dim, 0, after)],
                         dim=dim)
    shape = list(t.shape)
    shape[dim] = size + before + after
    padded = t.new_zeros(shape)
    padded.narrow(dim, before, size).copy_(t)
    return padded


def shift_sum(t: torch.Tensor, groups: int, kernel: tuple[int, ...], stride: tuple[int, ...],
              pads: tuple[tuple[int, int], ...], circular: bool) -> torch.Tensor:
    """sum_{delta in filter} T[s j + delta, s j' + delta] (same delta in every copy), over the
    zero- or circularly padded positions; divide by |filter| for the mean."""
    dims = len(kernel)
    for axis, (k, s, (before, after)) in enumerate(zip(kernel, stride, pads, strict=True)):
        axes = _axes(t, groups, dims, axis)
        for dim in axes:
            t = _pad(t, dim, before, after, circular)
        out = (t.shape[axes[0]] - k) // s + 1
        total = None
        for delta in range(k):
            piece = t
            for dim in axes:
                piece = piece.narrow(dim, delta, s * (out - 1) + 1)
                if s > 1:
                    piece = piece.unfold(dim, 1, s).squeeze(-1)
            total = piece.clone(memory_format=torch.contiguous_format) if total is None \
                else total.add_(piece)
        t = total
    return t


def pool_mean(t: torch.Tensor, groups: int, window: tuple[int, ...], stride: tuple[int, ...]
              ) -> torch.Tensor:
    """(1/|W|^groups) sum over i in W_j (each copy independently) of T: average pooling applied
    to every copy of the positions, W_j = s j + [0, window)."""
    dims = len(window)
    for axis, (w, s) in enumerate(zip(window, stride, strict=True)):
        for dim in _axes(t, groups, dims, axis):
            t = t.unfold(dim, w, s).mean(dim=-1)
    return t.contiguous()
