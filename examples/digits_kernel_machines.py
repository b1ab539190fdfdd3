"""Classify scikit-learn's digits with the infinite-width NNGP and NTK of ReLU MLPs.

    python examples/digits_kernel_machines.py [--test 497] [--depths 1 3 5] [--ridge 1e-3]

The 1797 8x8 digits (shuffled with a seed) are split into train and test points and put on the
sphere (||x||^2 = 64); for each depth the NNGP and NTK of a ReLU MLP (NTK parametrization) are
computed on demand, a block of rows at a time (``BlockedKernel.from_net``), and
``widenet.solvers.fit`` solves kernel ridge regression on one-hot labels with preconditioned
conjugate gradients; the test accuracy is the share of test digits whose largest output is
their class. The same runs from files with the CLI: write the kernel of all points with
``widenet kernel`` and the labels with numpy, then ``widenet fit KERNEL --labels LABELS
--train N``.
"""

from __future__ import annotations

import argparse
import time

import torch

from widenet.data import load_dataset
from widenet.models import MLP
from widenet.solvers import BlockedKernel, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=int, default=497, help="test digits (the rest train)")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--ridge", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_dataset("digits", n_test=args.test, seed=args.seed, normalize="sphere")
    print(f"digits: {data.x.shape[0]} train, {data.x_test.shape[0]} test, ridge {args.ridge}")
    print("| depth | kernel | test accuracy | train accuracy | iterations | residual | s |")
    print("|---|---|---|---|---|---|---|")
    for depth in args.depths:
        net = MLP(data.x.shape[1], [512] * depth, 1, "relu", seed=args.seed,
                  dtype=torch.float64)
        for kind in ("nngp", "ntk"):
            start = time.perf_counter()
            result = fit(BlockedKernel.from_net(net, data.x, kind=kind), data.y.numpy(),
                         ridge=args.ridge,
                         test_kernel=BlockedKernel.from_net(net, data.x_test, data.x, kind=kind))
            test = float((torch.from_numpy(result.labels("test")) == data.y_test).double().mean())
            train = float((torch.from_numpy(result.labels("train")) == data.y).double().mean())
            print(f"| {depth} | {kind} | {test:.3f} | {train:.3f} | {result.iterations} | "
                  f"{float(result.history[-1].max()):.1e} | {time.perf_counter() - start:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
