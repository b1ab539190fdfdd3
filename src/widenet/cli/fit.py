"""``widenet fit``: a kernel machine fitted on a kernel file, predictions for test points."""

from __future__ import annotations

from pathlib import Path

import click

from widenet.cli.common import err_console, out_console


@click.command("fit")
@click.argument("kernel", type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="Training labels (.npy): integers are classes (one-hot targets), reals are "
                   "targets. With --train: the first N, or one per point of KERNEL.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Where the predicted labels (or values) of the test points go (.npy); the "
                   "training points' without test points. Never one of the input files.")
@click.option("--train", type=click.IntRange(min=1),
              help="KERNEL holds all points: the first N train, the rest are test points.")
@click.option("--test-kernel", type=click.Path(path_type=Path),
              help="The test-by-train kernel (.npy, test points x training points).")
@click.option("--test-labels", type=click.Path(path_type=Path),
              help="The test labels (.npy), to print the accuracy.")
@click.option("--ridge", type=float, default=0.0, show_default=True,
              help="Added to the kernel's diagonal (kernel ridge regression; not with a "
                   "finite --time).")
@click.option("--time", "time_", type=float,
              help="Predict the net trained by gradient flow for this time (Lanczos) instead "
                   "of the t = inf limit; needs --ridge 0 and no --rank or "
                   "--no-preconditioner. --time inf is the regression.")
@click.option("--rank", type=click.IntRange(min=1),
              help="Columns of the Nystrom preconditioner (default: n/4, at most 500).")
@click.option("--no-preconditioner", is_flag=True,
              help="Plain conjugate gradients (not with --rank).")
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Stop at this relative residual, below 1 (Lanczos: estimated relative "
                   "error).")
@click.option("--max-iterations", type=click.IntRange(min=1),
              help="Most passes over the kernel (default 1000; Lanczos 300).")
def fit_command(kernel: Path, labels: Path, out: Path, train: int | None,
                test_kernel: Path | None, test_labels: Path | None, ridge: float,
                time_: float | None, rank: int | None, no_preconditioner: bool, tol: float,
                max_iterations: int | None) -> None:
    """Fit a kernel machine on the kernel file KERNEL (.npy, read a block of rows at a time,
    never whole) and predict the test points (docs/solvers.md)."""
    from widenet.solvers.fit import fit_files

    done = fit_files(kernel, labels, out, train=train, test_kernel=test_kernel,
                     test_labels=test_labels, ridge=ridge, time=time_, rank=rank,
                     preconditioner=None if no_preconditioner else "nystrom", tol=tol,
                     max_iterations=max_iterations, progress=err_console.is_terminal)
    out_console.print(done.summary(), markup=False, highlight=False)

