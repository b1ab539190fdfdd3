"""``widenet sweep``: one study over a grid, random draws or seeds, a run per point."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from widenet.cli.common import (
    cell_text,
    check_counts,
    config_option,
    out_console,
    progress_bar,
    quick_option,
    resume_command,
    resume_hint,
    set_option,
    store_option,
    workers_option_type,
)
from widenet.errors import WidenetError
from widenet.store import check_sweep_name


@click.command("sweep")
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
    # what a --dry-run needs imports neither torch, pandas nor matplotlib (for a study whose
    # config validation needs no computation); running the sweep imports them below
    from widenet.devices import point_device
    from widenet.studies import build_config, get_study
    from widenet.sweeps import (
        LocalEngine,
        RayEngine,
        SweepSpec,
        parse_grid,
        parse_random,
        plan_sweep,
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
    from widenet.store import RunStore
    from widenet.sweeps import run_sweep

    with progress_bar() as progress, resume_hint(resume_command(study)):
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
        counts = check_counts(store, row.run_id) if cell_text(row.run_id) else [""] * 3
        table.add_row(row.point, row.status, *counts, row.run_id, row.reason)
    out_console.print(table)
    counts = outcome.points["status"].value_counts()
    out_console.print(f"sweep {outcome.name}: " + ", ".join(f"{n} {s}" for s, n in
                                                            counts.items())
                      + f" ({outcome.ran} run now)")
    out_console.print(f"report: {outcome.report}")

