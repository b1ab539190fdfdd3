"""Input normalizations: per-feature standardization and projection onto the sphere ||x||^2 = d.

Both accept feature matrices (n, d) and images (n, C, L) or (n, C, H, W)."""

from __future__ import annotations

from dataclasses import replace

import torch

from widenet.data.dataset import Dataset
from widenet.errors import WidenetError

NORMALIZATIONS = ("none", "standardize", "sphere")


def sphere_normalize(x: torch.Tensor) -> torch.Tensor:
    """Each point of ``x`` ((n, d), or images (n, C, ...) taken whole) rescaled to squared
    norm d = its number of entries: x * sqrt(d) / ||x||.

    Points are first divided by their largest absolute entry, so tiny or huge points neither
    underflow nor overflow; an all-zero point stays zero.
    """
    flat = x.flatten(1)
    ones = torch.ones((), dtype=x.dtype, device=x.device)
    peak = flat.abs().amax(dim=1, keepdim=True)
    unit = flat / torch.where(peak > 0, peak, ones)
    norm = torch.linalg.vector_norm(unit, dim=1, keepdim=True)
    return (unit / torch.where(norm > 0, norm, ones) * flat.shape[1] ** 0.5).reshape(x.shape)


def standardize(x: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (x - mean) / std with the mean and population std (divisor n) of the train
    inputs ``x``, applied to both ``x`` and ``x_test``. For images every (channel, pixel)
    entry is a feature.

    A feature constant (= c) on the train split is only centered: 0 on train, v - c for a test
    value v; nothing is divided by 0. Other features are first divided by their largest
    absolute train value, which changes nothing mathematically but keeps the squares from
    under- or overflowing.
    """
    if x.shape[0] == 0:
        raise WidenetError("standardize needs at least one train point to take statistics from")
    ones = torch.ones((), dtype=x.dtype, device=x.device)
    constant = x.amax(dim=0) == x.amin(dim=0)
    peak = torch.where(constant, ones, x.abs().amax(dim=0))
    unit = x / peak
    center = torch.where(constant, unit[0], unit.mean(dim=0))
    centered = unit - center
    std = centered.std(dim=0, correction=0)
    std = torch.where(constant | (std == 0), ones, std)
    return centered / std, (x_test / peak - center) / std


def normalization(method: object) -> str:
    """Return ``method`` if it is one of :data:`NORMALIZATIONS`, else raise a WidenetError."""
    if method not in NORMALIZATIONS:
        raise WidenetError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, "
                           f"got {method!r}")
    return method


def normalize(dataset: Dataset, method: str) -> Dataset:
    """``dataset`` with its inputs normalized by ``method``: ``"none"`` (unchanged),
    ``"standardize"`` (:func:`standardize`, train statistics for both splits) or ``"sphere"``
    (:func:`sphere_normalize`, every train and test point to ||x||^2 = d)."""
    if normalization(method) == "none":
        return dataset
    if method == "standardize":
        x, x_test = standardize(dataset.x, dataset.x_test)
    else:
        x, x_test = sphere_normalize(dataset.x), sphere_normalize(dataset.x_test)
    return replace(dataset, x=x, x_test=x_test)
