"""The ``widenet`` command: run studies into the run store and read their results.

User mistakes (an unknown study, a bad config key or value, a missing file, an unwritable or
corrupt store) print one line, ``widenet: error: ...``, and exit with status 2. ``run`` and
``show`` with ``--strict`` exit with status 1 when a check fails; Ctrl-C exits with 130 after
saying how to continue (``--resume``). The module imports torch and the studies only inside the
commands that need them, so ``widenet --version`` and ``--help`` stay fast.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from widenet.errors import WidenetError
from widenet.store import DEFAULT_ROOT, RunStore, check_sweep_name
from widenet.studies.common.seeds import MAX_SEED

if TYPE_CHECKING:
    import torch

ARCHITECTURES = ("mlp", "cnn", "cnn-gap", "myrtle5")
"""The networks ``widenet kernel --architecture`` builds (:func:`widenet.nn.cnn`,
:func:`widenet.nn.myrtle5`)."""

# Piped output is not cut to 80 columns: run ids and study names stay whole for grep and logs.
# Every string printed is plain text: labels, ids and paths are user text, never rich markup
# ("activations=[abs]") or emoji codes (":fire:").
out_console = Console(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False)
err_console = Console(stderr=True, markup=False, emoji=False)


def _path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """``value`` as a Path; an empty one (``--out ""``, which Path would read as the current
    folder) is refused."""
    if value is None:
        return None
    if not value:
        raise click.BadParameter("is empty; give a path", ctx=ctx, param=param)
    return Path(value)


store_option = click.option(
    "--out", type=click.Path(), callback=_path, default=str(DEFAULT_ROOT),
    envvar="WIDENET_RUNS", show_default=True,
    help="The run store's folder (runs.db and one folder per run).")
quick_option = click.option("--quick", is_flag=True, help="Use the study's quick preset.")
config_option = click.option("--config", "-c", type=click.Path(), callback=_path,
                             help="A YAML file of config values (over the defaults).")
set_option = click.option("--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Set one config value (over the YAML file); repeatable. "
                               "Lists: widths=64,128.")
run_argument = click.argument("run", metavar="RUN")
claims_option = click.option("--claims", is_flag=True,
                             help="Print each check's claim and note under it.")
strict_option = click.option("--strict", is_flag=True,
                             help="Exit with status 1 if any check fails (documented findings "
                                  "included), for CI.")
workers_option_type = click.IntRange(min=1)


def _progress() -> Progress:
    """A progress bar with a count, the elapsed time and an ETA, on stderr, shown only on a
    terminal."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="widenet")
def app() -> None:
    """The theory of wide neural networks, measured: run a study and read theory and
    measurement side by side."""


@app.command("studies")
def studies_command() -> None:
    """List the studies with a one-line description each, and where each comes from (built-in,
    or the module and file that WIDENET_STUDIES names)."""
    from widenet.studies import get_study, study_names, study_source

    table = Table("study", "what it shows", "from", box=None, header_style="bold")
    for name in study_names():
        table.add_row(name, get_study(name).summary, study_source(name))
    out_console.print(table)


@app.command("config")
@click.argument("study")
@quick_option
@config_option
@set_option
def config_command(study: str, quick: bool, config: Path | None,
                   overrides: tuple[str, ...]) -> None:
    """Show STUDY's config keys: value (after presets, file and --set), type and meaning."""
    from widenet.studies import build_config, get_study

    found = get_study(study)
    resolved = build_config(found.config, quick=quick, file=config, overrides=overrides)
    table = Table("key", "value", "type", "meaning", box=None, header_style="bold")
    for key, field in found.config.model_fields.items():
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
        table.add_row(key, repr(getattr(resolved, key)), annotation.replace("typing.", ""),
                      field.description or "")
    out_console.print(table)


@app.command("run")
@click.argument("study")
@config_option
@set_option
@quick_option
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="CPU threads for torch. Studies' small matrices run fastest on one; more "
                   "pay off only for wide nets on an otherwise idle machine.")
@store_option
@click.option("--resume", is_flag=True, help="Continue the newest unfinished run of this study "
              "with the same config, skipping its finished tasks.")
@claims_option
@strict_option
def run_command(study: str, config: Path | None, overrides: tuple[str, ...], quick: bool,
                device: str, threads: int, out: Path, resume: bool, claims: bool,
                strict: bool) -> int:
    """Run STUDY (`widenet studies` lists them): store its tables and checks, write its
    figures and report.html."""
    import torch

    from widenet.devices import resolve_device
    from widenet.report import print_summary
    from widenet.runner import require_study_memory, run_study
    from widenet.studies import build_config, get_study

    torch.set_num_threads(threads)

    found = get_study(study)
    resolved = build_config(found.config, quick=quick, file=config, overrides=overrides)
    require_study_memory(found, resolved, resolve_device(device))  # before a store is made
    store = RunStore(out)
    unfinished = _unfinished_runs(store, found.name) if resume else 0
    with _progress() as progress, _resume_hint(_resume_command(study)):
        bar = progress.add_task(found.name, total=None)

        def on_task(done: int, total: int, key: str) -> None:
            progress.update(bar, completed=done, total=total, description=f"{found.name} {key}")

        outcome = run_study(found, resolved, store=store, device=device, resume=resume,
                            on_task=on_task)
    if outcome.resumed_tasks:
        out_console.print(f"resumed: {outcome.resumed_tasks} finished task(s) reused")
    elif resume:
        out_console.print(f"--resume: no unfinished run of {found.name} with this config "
                          f"{'(unfinished ones have another config) ' if unfinished else ''}"
                          "was left, so this is a new run")
    print_summary(out_console, outcome.record, outcome.checks, outcome.report, claims=claims)
    return _strict_status(outcome.checks, strict)


@app.command("runs")
@store_option
@click.option("--study", help="Only this study's runs.")
def runs_command(out: Path, study: str | None) -> None:
    """List the stored runs, oldest first: status, pass / fail / inconclusive (inc.) counts of
    their checks, tasks done (if any run is unfinished), creation time (month-day hour:minute,
    UTC) and their sweep and point, if any ran in one."""
    store = RunStore(out)
    runs = store.runs(study)
    if runs.empty and study is not None:
        from widenet.studies import study_names

        known = sorted({*study_names(), *store.studies()})
        if study not in known:
            raise WidenetError(f"unknown study {study!r}; the known studies: {', '.join(known)}")
    if runs.empty:
        out_console.print(f"no runs{f' of {study}' if study else ''} in {out}")
        return
    in_sweeps = runs["sweep"].notna().any()
    unfinished = (runs["status"] != "completed").any()
    table = Table("id", "status", "pass", "fail", "inc.", *(["tasks"] if unfinished else []),
                  "created", *(["sweep", "point"] if in_sweeps else []), box=None,
                  header_style="bold", pad_edge=False)
    for column in table.columns[:7]:  # fits 80 columns whole; sweep and point wrap
        column.no_wrap = True
    for row in runs.itertuples():
        tasks = [_text(row.tasks_done)] if unfinished else []
        sweep = [_text(row.sweep), _text(row.point)] if in_sweeps else []
        table.add_row(_text(row.id), _text(row.status), *_check_counts(store, row.id),
                      *tasks, _text(row.created)[5:16].replace("T", " "), *sweep)
    out_console.print(table)


def _unfinished_runs(store: RunStore, study: str) -> int:
    """How many runs of ``study`` in ``store`` are interrupted or failed (resumable)."""
    runs = store.runs(study)
    return int(runs["status"].isin(["interrupted", "failed"]).sum())


def _resume_command(study: str | None = None) -> str:
    """The command line that continues this interrupted command: the arguments as given to
    :func:`main` (the context's ``obj``), with ``--resume`` added for ``run`` and ``sweep``
    (``study`` given) and as they were for ``kernel``, which resumes by itself."""
    given = click.get_current_context().obj or ["run", study]
    args = [arg for arg in given if arg != "--resume"]
    return " ".join(["widenet", *map(shlex.quote, args), *(["--resume"] if study else [])])


@contextmanager
def _resume_hint(command: str) -> Iterator[None]:
    """On Ctrl-C inside the block, print how to continue: ``command`` (with ``--resume``)
    skips what was finished; then let the interruption go on."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(f"interrupted; the finished work is stored. Continue with: {command}",
                          markup=False, highlight=False, soft_wrap=True)
        raise


def _strict_status(checks: pd.DataFrame, strict: bool) -> int:
    """The exit status of ``run`` or ``show``: 1 under ``--strict`` if any check failed."""
    return 1 if strict and (checks.get("verdict", pd.Series()) == "fail").any() else 0


def _check_counts(store: RunStore, run_id: str) -> list[str]:
    """The pass / fail / inconclusive counts of a run's checks, as table cells; ``?`` for a
    run whose stored checks are damaged (``widenet show RUN`` says what is wrong), so that a
    listing still shows every other run."""
    from widenet.report import verdict_counts

    try:
        checks = store.checks(run_id)
    except WidenetError:
        return ["?"] * 3
    return [str(count) for count in verdict_counts(checks).values()]


def _text(value: object) -> str:
    """A cell of ``widenet runs``: missing values (None, NaN) as an empty string."""
    return "" if value is None or value != value else str(value)


@app.command("show")
@run_argument
@store_option
@claims_option
@strict_option
def show_command(run: str, out: Path, claims: bool, strict: bool) -> int:
    """Print the checks of the stored RUN (an id or its unique prefix)."""
    from widenet.report import print_summary

    store = RunStore(out)
    record = store.run(run)
    report = store.run_folder(record.id) / "report.html"
    checks = store.checks(record.id)
    print_summary(out_console, record, checks, report if report.exists() else None,
                  claims=claims)
    return _strict_status(checks, strict)


@app.command("report")
@run_argument
@store_option
def report_command(run: str, out: Path) -> None:
    """(Re)write the report.html of the stored RUN (an id or its unique prefix)."""
    from widenet.runner import write_run_report

    out_console.print(str(write_run_report(RunStore(out), run)))


@app.command("sweep")
@click.argument("study")
@click.option("--grid", "-g", multiple=True, metavar="KEY=V1,V2,...",
              help="Sweep KEY over these values; repeatable (the grid is their product).")
@click.option("--random", "-r", "random_", multiple=True, metavar="KEY=LOW:HIGH",
              help="Draw KEY uniformly from [LOW, HIGH] (integers if both are); repeatable.")
@click.option("--samples", type=int, default=0, help="How many random draws.")
@click.option("--seeds", type=int, default=0, help="Repeat every point with seed = 0..N-1.")
@config_option
@set_option
@quick_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local: a process per point; ray: a Ray task per point.")
@click.option("--address", help="Ray cluster address (default: start a local Ray instance).")
@click.option("--workers", type=workers_option_type,
              help="Points at once (default: the number of cores).")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="GPUs each point needs (ray engine; the point then runs on cuda).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--name", help="The sweep's name (default: STUDY-sweep-DATE-TIME-XXXX).")
@store_option
@click.option("--resume", is_flag=True, help="Continue the sweep called --name (or the newest "
              "sweep of STUDY with the same arguments): run only its unfinished points.")
@click.option("--dry-run", is_flag=True, help="Validate and list the points; run nothing.")
def sweep_command(study: str, grid: tuple[str, ...], random_: tuple[str, ...], samples: int,
                  seeds: int, config: Path | None, overrides: tuple[str, ...], quick: bool,
                  engine: str, address: str | None, workers: int | None, gpus_per_run: float,
                  device: str, name: str | None, out: Path, resume: bool, dry_run: bool) -> None:
    """Run STUDY at every point of a grid / random samples / seeds; one run per point."""
    from widenet.devices import point_device
    from widenet.studies import build_config, get_study
    from widenet.sweeps import (
        LocalEngine,
        RayEngine,
        SweepSpec,
        parse_grid,
        parse_random,
        plan_sweep,
        run_sweep,
    )

    if name is not None:
        check_sweep_name(name)
    found = get_study(study)
    base = build_config(found.config, quick=quick, file=config, overrides=overrides)
    spec = SweepSpec(grid=parse_grid(grid), random=parse_random(random_), samples=samples,
                     seeds=seeds)
    if engine == "ray":
        runner = RayEngine(address=address, workers=workers, gpus_per_run=gpus_per_run)
        device = point_device(device, gpus_per_run)
    else:
        if address or gpus_per_run:
            raise WidenetError("--address and --gpus-per-run need --engine ray")
        runner = LocalEngine(workers)
    if dry_run:
        runner.check(device)
        points = plan_sweep(found.name, spec, base.model_dump(mode="json"))
        for label, values in points:
            drawn = " ".join(f"{key}={values[key]}" for key in spec.random)
            out_console.print(f"{label}  {drawn}".rstrip(), markup=False, highlight=False)
        out_console.print(f"{len(points)} point(s) of {found.name}, all valid; nothing was run")
        return
    with _progress() as progress, _resume_hint(_resume_command(study)):
        bar = progress.add_task(found.name, total=None)

        def on_point(done: int, total: int, label: str, status: str) -> None:
            progress.update(bar, completed=done, total=total,
                            description=f"{found.name} {label} {status}".rstrip())

        outcome = run_sweep(found.name, spec, store=RunStore(out), engine=runner,
                            base=base.model_dump(mode="json"), device=device, name=name,
                            resume=resume, on_point=on_point)
    store = RunStore(out)
    table = Table("point", "status", "pass", "fail", "inc.", "run", "reason", box=None,
                  header_style="bold", pad_edge=False)
    for row in outcome.points.itertuples():
        counts = _check_counts(store, row.run_id) if _text(row.run_id) else [""] * 3
        table.add_row(row.point, row.status, *counts, row.run_id, row.reason)
    out_console.print(table)
    counts = outcome.points["status"].value_counts()
    out_console.print(f"sweep {outcome.name}: " + ", ".join(f"{n} {s}" for s, n in
                                                            counts.items())
                      + f" ({outcome.ran} run now)")
    out_console.print(f"report: {outcome.report}")


@app.command("kernel")
@click.argument("path", type=click.Path(), callback=_path)
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
    with _progress() as progress, _resume_hint(_resume_command()):
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


@app.command("fit")
@click.argument("kernel", type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(path_type=Path), required=True,
              help="Training labels (.npy): integers are classes (one-hot targets), reals are "
                   "targets. With --train: the first N, or one per point of KERNEL.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Where the predicted labels (or values) of the test points go (.npy); the "
                   "training points' without test points.")
@click.option("--train", type=click.IntRange(min=1),
              help="KERNEL holds all points: the first N train, the rest are test points.")
@click.option("--test-kernel", type=click.Path(path_type=Path),
              help="The test-by-train kernel (.npy, test points x training points).")
@click.option("--test-labels", type=click.Path(path_type=Path),
              help="The test labels (.npy), to print the accuracy.")
@click.option("--ridge", type=float, default=0.0, show_default=True,
              help="Added to the kernel's diagonal (kernel ridge regression).")
@click.option("--time", "time_", type=float,
              help="Predict the net trained by gradient flow for this time (Lanczos) instead "
                   "of the t = inf limit; needs --ridge 0.")
@click.option("--rank", type=click.IntRange(min=1),
              help="Columns of the Nystrom preconditioner (default: n/4, at most 500).")
@click.option("--no-preconditioner", is_flag=True, help="Plain conjugate gradients.")
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Stop at this relative residual (Lanczos: estimated relative error).")
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


def _check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not valid UTF-8 text (names, ids and paths must be)."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise WidenetError(f"the argument {_raw(arg)} is not valid UTF-8; pass names, ids "
                               "and paths as UTF-8 text") from None


def _raw(arg: str) -> str:
    """``arg`` as the bytes it came from (``b'\\xff'``), or escaped if it came from no bytes."""
    try:
        return repr(arg.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return ascii(arg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``widenet`` console script; returns the exit status. Without
    arguments it prints the help."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    try:
        _check_arguments(args)
        status = app.main(args=args, prog_name="widenet", standalone_mode=False, obj=args)
    except WidenetError as error:
        err_console.print(f"widenet: error: {error}", markup=False, highlight=False,
                          soft_wrap=True)
        return 2
    except click.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        err_console.print(f"widenet: error: {error.format_message()}{hint}", markup=False,
                          highlight=False, soft_wrap=True)
        return 2
    except click.Abort:
        err_console.print("widenet: stopped", markup=False)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
