"""Synthetic data sets, each a seeded function of its sizes."""

from __future__ import annotations

import torch

from widenet._checks import positive_int


def sphere_points(n: int, dim: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """``n`` points uniform on the sphere of radius ``sqrt(dim)``, so ``||x||^2 = dim``.

    Gaussian draws ``g ~ N(0, I_dim)`` rescaled to ``sqrt(dim) g / ||g||``.
    """
    n, dim = positive_int(n, "n"), positive_int(dim, "dim")
    g = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return g / g.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny) * dim**0.5
