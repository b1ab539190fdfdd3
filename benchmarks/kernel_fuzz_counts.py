"""Counts for the kernel fuzz grid of tests/kernels/test_kernel_fuzz.py (MLPs): how many
NNGP/NTK matrices were checked, how many are not PSD beyond the tests' round-off tolerance
(1e3 n eps max|K|, eigenvalues and 2x2 minors), how many hold NaN or inf, and the worst
min-eigenvalue / max|K| per activation. The grid is the test's (reduced unless
WIDENET_FULL_TESTS=1). Run it against any source tree, from the repository root:

    PYTHONPATH=src python benchmarks/kernel_fuzz_counts.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kernels.test_kernel_fuzz import (
    ACTIVATIONS,
    BIASES,
    DEPTHS,
    UNBOUNDED,
    fuzz_points,
    name_of,
    round_off_failures,
)

import widenet as wn


def main() -> None:
    torch.set_num_threads(1)
    checked = not_psd = not_finite = 0
    worst: dict[str, float] = {}
    for activation in ACTIVATIONS:
        for depth in DEPTHS:
            for dtype in (torch.float32, torch.float64):
                x = fuzz_points(4, seed=depth).to(dtype)
                for bias_std in BIASES:
                    weight_std = 1.0 if activation in UNBOUNDED else None
                    net = wn.MLP(4, [1] * depth, 1, activation, weight_std=weight_std,
                                 bias_std=bias_std)
                    kernels = wn.infinite_kernels(net, x)
                    for matrix in (kernels.nngp, kernels.ntk):
                        checked += 1
                        if not bool(torch.isfinite(matrix).all()):
                            not_finite += 1
                            continue
                        not_psd += bool(round_off_failures(matrix))
                        ratio = float(torch.linalg.eigvalsh(matrix.double())[0]
                                      / matrix.abs().max())
                        name = f"{name_of(activation)} {str(dtype)[6:]}"
                        worst[name] = min(worst.get(name, 0.0), ratio)
    print(f"matrices checked: {checked}; not PSD beyond round-off: {not_psd}; "
          f"with NaN or inf: {not_finite}")
    for name, ratio in worst.items():
        print(f"  {name:>24}: min eigenvalue / max|K| = {ratio:.1e}")


if __name__ == "__main__":
    main()
