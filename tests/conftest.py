"""Shared helpers for widenet's tests: data on the sphere and brute-force reference NTKs."""

from __future__ import annotations

import os

import pytest
import torch
from torch.func import functional_call, jacrev

FULL = os.environ.get("WIDENET_FULL_TESTS") == "1"

# The tests' matrices are small: one thread is fastest, and on a busy machine two threads
# spinning for each other's cores cost up to 100x (measured on this project's 2-core machines).
torch.set_num_threads(1)


def sphere_points(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """n Gaussian points rescaled to ||x||^2 = d."""
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x / x.norm(dim=1, keepdim=True) * d**0.5


def brute_force_ntk_blocks(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each parameter's contribution sum_k J_k,p(x) J_k,p(x)^T, from the full Jacobian (n, k, P)."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)
    blocks = {}
    for name, j in jac.items():
        flat = j.reshape(x.shape[0], j.shape[1], -1)
        blocks[name] = torch.einsum("ikp,jkp->ij", flat, flat)
    return blocks


def brute_force_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sum_k J_k(x) J_k(x)^T over all parameters."""
    return sum(brute_force_ntk_blocks(model, x).values())


@pytest.fixture
def points() -> torch.Tensor:
    return sphere_points(7, 5)
