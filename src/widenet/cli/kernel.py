"""``widenet kernel``: an n x n kernel matrix computed in blocks into a .npy file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from widenet.cli.common import (
    out_console,
    path_option,
    progress_bar,
    resume_command,
    resume_hint,
    workers_option_type,
)
from widenet.errors import WidenetError
from widenet.seeds import MAX_SEED

if TYPE_CHECKING:
    import torch

ARCHITECTURES = ("mlp", "cnn", "cnn-gap", "myrtle5")
"""The networks ``widenet kernel --architecture`` builds (:func:`widenet.nn.cnn`,
:func:`widenet.nn.myrtle5`)."""


@click.command("kernel")
@click.argument("path", type=click.Path(), callback=path_option)
@click.option("--kind", type=click.Choice(["ntk", "nngp", "empirical"]), default="ntk",
              show_default=True, help="The infinite-width NTK or NNGP, or the empirical NTK.")
@click.option("--data", default="sphere", show_default=True,
              help="A data set name of widenet.data or a .npz/.csv file (its inputs are used).")
@click.option("--label-column", help="The column of labels of a --data .csv file (the other "
                                     "columns are the inputs).")
@click.option("--points", type=click.IntRange(min=1), required=True,
              help="How many points n (the matrix is n x n).")
@click.option("--dim", type=click.IntRange(min=1), default=None,
              help="Input dimension d (synthetic sets).")
@click.option("--architecture", type=click.Choice(ARCHITECTURES), default="mlp",
              show_default=True,
              help="mlp on vectors; on images (--data digits-images or a CIFAR-10 / MNIST "
                   "folder): cnn or cnn-gap (--depth 3x3 convolutions, a flatten or a global "
                   "average pooling readout) or myrtle5 (32x32 images).")
@click.option("--activation", default="relu", show_default=True)
@click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
              help="Hidden layers (mlp) or convolutions (cnn, cnn-gap).")
@click.option("--width", type=click.IntRange(min=1), default=512, show_default=True,
              help="Hidden width or channels (matters only for --kind empirical).")
@click.option("--bias-std", type=float, default=0.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--block", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Side of a block.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64",
              show_default=True, help="Storage type of the file (blocks compute in float64).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True)
@click.option("--address", help="Ray cluster address (default: a local Ray instance).")
@click.option("--workers", type=workers_option_type,
              help="Blocks at once (default: the number of cores).")
def kernel_command(path: Path, kind: str, data: str, label_column: str | None, points: int,
                   dim: int | None, architecture: str, activation: str, depth: int, width: int,
                   bias_std: float,
                   seed: int, block: int, dtype: str, engine: str, address: str | None,
                   workers: int | None) -> None:
    """Compute an n x n kernel matrix in blocks, in parallel, into PATH (.npy, memory-mapped);
    run it again to resume after an interruption."""

    from widenet.data import load_dataset
    from widenet.memory import FLOAT64_BYTES, require_memory
    from widenet.sweeps import LocalEngine, RayEngine
    from widenet.sweeps.kernel import kernel_to_disk

    if dim is not None:
        require_memory(points * dim * FLOAT64_BYTES, f"{points:,} x {dim:,} inputs in float64",
                       "use fewer --points or a smaller --dim")
    try:
        x = load_dataset(data, n=points, dim=dim, seed=seed, label_column=label_column).x
    except WidenetError as error:
        raise error.naming(_DATA_OPTIONS) from None
    net = _kernel_net(architecture, x, activation, depth, width, bias_std, seed)
    runner = (RayEngine(address=address, workers=workers) if engine == "ray"
              else LocalEngine(workers))
    with progress_bar() as progress, resume_hint(resume_command()):
        bar = progress.add_task("blocks", total=None)
        matrix = kernel_to_disk(net, x, path, kind=kind, block=block, dtype=dtype, engine=runner,
                                on_block=lambda done, total: progress.update(
                                    bar, completed=done, total=total))
    out_console.print(f"{path}: {kind} kernel, shape {matrix.shape}, {matrix.dtype}")


def _kernel_net(architecture: str, x: torch.Tensor, activation: str, depth: int, width: int,
                bias_std: float, seed: int) -> torch.nn.Module:
    """The network of ``widenet kernel --architecture``, checked against the inputs' shape."""
    import torch

    from widenet.models import MLP
    from widenet.nn import cnn, myrtle5

    shape = tuple(x.shape[1:])
    if (architecture == "mlp") != (x.ndim == 2):
        wanted = ("vectors; for images use --architecture cnn, cnn-gap or myrtle5"
                  if architecture == "mlp" else
                  "images (N, C, H, W): use --data digits-images or a CIFAR-10 / MNIST folder")
        raise WidenetError(f"--architecture {architecture} takes {wanted} (the data's points "
                           f"have shape {shape})")
    if architecture == "mlp":
        return MLP(x.shape[1], [width] * depth, 1, activation, bias_std=bias_std, seed=seed,
                   dtype=torch.float64)
    if architecture == "myrtle5":
        if shape[1:] != (32, 32) or bias_std != 0:
            raise WidenetError(f"--architecture myrtle5 takes 32x32 images and no biases (got "
                               f"points of shape {shape}, --bias-std {bias_std:g})")
        return myrtle5(shape[0], width, activation=activation, seed=seed, dtype=torch.float64)
    if depth == 0:
        raise WidenetError(f"--architecture {architecture} needs --depth of at least 1")
    return cnn(shape[0], shape[1:], width, depth, readout="gap" if architecture == "cnn-gap"
               else "flatten", activation=activation, bias_std=bias_std, seed=seed,
               dtype=torch.float64)


_DATA_OPTIONS = {"n": "--points", "dim": "--dim", "label_column": "--label-column"}
"""The kernel command's options for the arguments of :func:`widenet.data.load_dataset`."""

