"""The ``widenet`` command. For now one subcommand, ``demo``: an MLP's NTK against its limit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

import widenet
from widenet._checks import nonnegative_int, positive_int
from widenet.errors import WidenetError


def _demo(args: argparse.Namespace) -> None:
    """Print the infinite-width NTK of an EOC MLP next to the empirical NTK at growing widths."""
    for name in ("points", "dim", "seeds"):
        positive_int(getattr(args, name), f"--{name}")
    nonnegative_int(args.depth, "--depth")
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.points, args.dim, generator=generator, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * args.dim**0.5  # ||x||^2 = d
    make = lambda width, seed: widenet.MLP(  # noqa: E731
        args.dim, [width] * args.depth, 1, args.activation, bias_std=args.bias_std, seed=seed,
        dtype=torch.float64)
    net = make(args.widths[-1], args.seed)
    limit = widenet.infinite_kernels(net, x).ntk
    print(f"MLP {args.dim} -> {args.depth} x width -> 1, {net.activation.name} at the edge of "
          f"chaos (sigma_w = {net.weight_std:.4g}), NTK parametrization, {args.points} points "
          f"with ||x||^2 = d\n")
    print("infinite-width NTK Theta:")
    print(_format(limit))
    print(f"\nempirical NTK at width {args.widths[-1]} (seed {args.seed}):")
    print(_format(widenet.empirical_ntk(net, x)))
    print("\nrelative error ||K_m - Theta||_F / ||Theta||_F, mean over "
          f"{args.seeds} initializations (theory: ~ m^-1/2):")
    for width in args.widths:
        errors = [float(torch.linalg.matrix_norm(widenet.empirical_ntk(make(width, s), x) - limit)
                        / torch.linalg.matrix_norm(limit)) for s in range(args.seeds)]
        print(f"  m = {width:>5}: {sum(errors) / len(errors):.4f}")


def _format(matrix: torch.Tensor) -> str:
    return "\n".join("  " + " ".join(f"{v:8.4f}" for v in row.tolist()) for row in matrix)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="widenet", description=widenet.__doc__)
    parser.add_argument("--version", action="version", version=f"widenet {widenet.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="an MLP's empirical NTK against its infinite-width "
                                            "limit")
    demo.add_argument("--activation", default="relu", help="relu, abs, erf, tanh, ... ")
    demo.add_argument("--depth", type=int, default=3, help="number of hidden layers")
    demo.add_argument("--bias-std", type=float, default=0.0, help="sigma_b (0: no biases)")
    demo.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    demo.add_argument("--points", type=int, default=5)
    demo.add_argument("--dim", type=int, default=8, help="input dimension d")
    demo.add_argument("--seeds", type=int, default=5, help="initializations per width")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``widenet`` console script; user errors print one line and exit 2."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except WidenetError as error:
        print(f"widenet: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
