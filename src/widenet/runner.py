"""Running a study into the run store: tasks, then analysis, figures, checks and the report.

``run_study`` creates a run (or, with ``resume=True``, picks up the newest unfinished run of the
same study and config), computes every task not yet stored, storing each as it finishes, and
then analyzes the stored tables. Because the analysis always reads the tables back from the
store, a resumed run ends with exactly the numbers an uninterrupted one would have.
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch

from widenet.deferred import resolved
from widenet.devices import describe_device, resolve_device
from widenet.errors import WidenetError
from widenet.figures import png_bytes
from widenet.files import atomic_write
from widenet.memory import require_memory
from widenet.report import render_report, write_report
from widenet.store import FINISHED_STATUSES, RunRecord, RunStore
from widenet.studies import get_study
from widenet.studies.common.base import Study, StudyConfig, StudyContext

TaskCallback = Callable[[int, int, str], None]
"""Called as ``on_task(done, total, key)`` before the first task and after each one."""


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: its record, its checks, where its report is, how much was resumed."""

    record: RunRecord
    checks: pd.DataFrame
    report: Path
    resumed_tasks: int


def run_study(study: str | Study, config: StudyConfig, *, store: RunStore,
              device: str | torch.device = "cpu", resume: bool = False,
              on_task: TaskCallback | None = None, sweep: str | None = None) -> RunOutcome:
    """Run ``study`` with ``config`` into ``store`` and write its report.

    A task that raises marks the run ``failed`` (Ctrl-C: ``interrupted``) with the reason; the
    tasks finished before stay stored, and ``resume=True`` continues from them.
    """
    study = get_study(study) if isinstance(study, str) else study
    if not isinstance(config, study.config):
        raise WidenetError(f"the config of study {study.name!r} must be a "
                           f"{study.config.__name__}, got {type(config).__name__}")
    torch_device = resolve_device(device)
    config_dict = config.model_dump(mode="json")
    plan, analyze = resolved(study.plan), resolved(study.analyze)  # fail before any task
    tasks = plan(config)
    _check_keys([task.key for task in tasks], study.name)
    require_study_memory(study, config, torch_device)
    device_text = describe_device(torch_device)
    run_id = store.claim_run(study.name, config_dict, device=device_text) if resume else None
    if run_id is None:
        run_id = store.create_run(study=study.name, config=config_dict, seed=config.seed,
                                  device=device_text, versions=versions(), sweep=sweep)
    done = store.finished_tasks(run_id)
    folder = store.run_folder(run_id)
    try:
        for position, task in enumerate(tasks):
            if on_task is not None:
                on_task(position, len(tasks), task.key)
            if task.key in done:
                continue
            context = StudyContext(device=torch_device,
                                   folder=folder / "checkpoints" / _safe_name(task.key))
            start = time.perf_counter()
            tables = task.compute(context)
            store.save_task(run_id, task.key, tables, time.perf_counter() - start)
        if on_task is not None:
            on_task(len(tasks), len(tasks), "analysis")
        analysis = analyze(config, store.task_tables(run_id))
        for stem, figure in analysis.figures.items():
            atomic_write(folder / "figures" / f"{_safe_name(stem)}.png", png_bytes(figure))
        store.finish_run(run_id, tables=analysis.tables, checks=analysis.checks,
                         diverged=analysis.diverged)
    except KeyboardInterrupt:
        store.end_run(run_id, "interrupted", "stopped by the user (Ctrl-C)")
        raise
    except Exception as error:
        store.end_run(run_id, "failed", f"{type(error).__name__}: {error}")
        raise
    return RunOutcome(record=store.run(run_id), checks=store.checks(run_id),
                      report=write_run_report(store, run_id), resumed_tasks=len(done))


def require_study_memory(study: Study, config: StudyConfig,
                         device: str | torch.device = "cpu") -> None:
    """Refuse a config whose largest task cannot fit in the free memory of ``device`` (the
    lower bound of :meth:`StudyConfig.memory_bytes`), before anything is stored."""
    require_memory(config.memory_bytes(), f"study {study.name} with this config",
                   "use smaller sizes (points, dim, widths) or --quick", device)


def write_run_report(store: RunStore, run_id: str) -> Path:
    """(Re)write ``<run folder>/report.html`` from the store and the run's figure files;
    refuses (writing nothing) if a finished run's folder, and so its figures, is gone."""
    record = store.run(run_id)
    folder = store.run_folder(record.id)
    if record.status in FINISHED_STATUSES and not folder.is_dir():
        raise WidenetError(f"the folder of run {record.id} ({folder}) is missing, so its "
                           "figures are gone; restore the folder to rewrite its report (its "
                           "checks and tables are still in the store: `widenet show`)")
    try:
        figures = {path.stem: path.read_bytes()
                   for path in sorted((folder / "figures").glob("*.png"))}
    except OSError as error:
        raise WidenetError(f"cannot read the figures of run {record.id}: {error.strerror} "
                           f"({error.filename}); move it aside") from None
    page = render_report(record, store.checks(record.id), store.tables(record.id), figures,
                         doc_path=f"docs/studies/{record.study}.md")
    report = folder / "report.html"
    try:
        return write_report(report, page)
    except OSError as error:
        raise WidenetError(f"cannot write the report of run {record.id}: {error.strerror} "
                           f"({report}); move it aside, then `widenet report {record.id}` "
                           "writes it") from None


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages a result depends on."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("widenet", "torch", "numpy", "pandas", "scikit-learn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _check_keys(keys: list[str], study: str) -> None:
    if len(set(keys)) != len(keys):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        raise WidenetError(f"study {study!r} planned the same task twice: {duplicated[:3]}; "
                           "check for repeated values in the config's lists")


def _safe_name(text: str) -> str:
    """A file name made of ``text``: characters other than ``[A-Za-z0-9._=-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)
