"""The commands on studies and their stored runs: ``studies``, ``config``, ``run``, ``runs``,
``show`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from widenet.cli.common import (
    cell_text,
    check_counts,
    claims_option,
    config_option,
    out_console,
    progress_bar,
    quick_option,
    resume_command,
    resume_hint,
    run_argument,
    set_option,
    store_option,
    strict_option,
    strict_status,
)
from widenet.errors import WidenetError

if TYPE_CHECKING:
    from widenet.store import RunStore


@click.command("studies")
def studies_command() -> None:
    """List the studies with a one-line description each, and where each comes from (built-in,
    or the module and file that WIDENET_STUDIES names)."""
    from widenet.studies import get_study, study_names, study_source

    table = Table("study", "what it shows", "from", box=None, header_style="bold")
    for name in study_names():
        table.add_row(name, get_study(name).summary, study_source(name))
    out_console.print(table)


@click.command("config")
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


@click.command("run")
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
    from widenet.store import RunStore
    from widenet.studies import build_config, get_study

    torch.set_num_threads(threads)

    found = get_study(study)
    resolved = build_config(found.config, quick=quick, file=config, overrides=overrides)
    require_study_memory(found, resolved, resolve_device(device))  # before a store is made
    store = RunStore(out)
    unfinished = _unfinished_runs(store, found.name) if resume else 0
    with progress_bar() as progress, resume_hint(resume_command(study)):
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
    return strict_status(outcome.checks, strict)



@click.command("runs")
@store_option
@click.option("--study", help="Only this study's runs.")
def runs_command(out: Path, study: str | None) -> None:
    """List the stored runs, oldest first: status, pass / fail / inconclusive (inc.) counts of
    their checks, tasks done (if any run is unfinished), creation time (month-day hour:minute,
    UTC) and their sweep and point, if any ran in one."""
    from widenet.store import RunStore

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
        tasks = [cell_text(row.tasks_done)] if unfinished else []
        sweep = [cell_text(row.sweep), cell_text(row.point)] if in_sweeps else []
        table.add_row(cell_text(row.id), cell_text(row.status), *check_counts(store, row.id),
                      *tasks, cell_text(row.created)[5:16].replace("T", " "), *sweep)
    out_console.print(table)


def _unfinished_runs(store: RunStore, study: str) -> int:
    """How many runs of ``study`` in ``store`` are interrupted or failed (resumable)."""
    runs = store.runs(study)
    return int(runs["status"].isin(["interrupted", "failed"]).sum())



@click.command("show")
@run_argument
@store_option
@claims_option
@strict_option
def show_command(run: str, out: Path, claims: bool, strict: bool) -> int:
    """Print the checks of the stored RUN (an id or its unique prefix)."""
    from widenet.report import print_summary
    from widenet.store import RunStore

    store = RunStore(out)
    record = store.run(run)
    report = store.run_folder(record.id) / "report.html"
    checks = store.checks(record.id)
    print_summary(out_console, record, checks, report if report.exists() else None,
                  claims=claims)
    return strict_status(checks, strict)


@click.command("report")
@run_argument
@store_option
def report_command(run: str, out: Path) -> None:
    """(Re)write the report.html of the stored RUN (an id or its unique prefix)."""
    from widenet.runner import write_run_report
    from widenet.store import RunStore

    out_console.print(str(write_run_report(RunStore(out), run)))

