"""The aggregate report of a sweep: every point's status, and each check across the points.

The table ``results`` has one row per (point, check): the swept keys' values, the run's status,
and the check's measured value, standard error and verdict. Figures plot each check's measured
value (± 2 s.e.) against the first numeric swept key, one line per value of the other keys.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from widenet.report.figures import label, new_figure, png_bytes
from widenet.report.html import render_sweep_report, write_report
from widenet.store import RunStore, SweepStore

MAX_FIGURES = 12


def sweep_results(store: RunStore, name: str) -> pd.DataFrame:
    """One row per (point, check) of the newest run of every point of sweep ``name``."""
    sweeps = SweepStore(store)
    spec = sweeps.record(name)["spec"]
    keys = [*spec["grid"], *spec["random"], *(["seed"] if spec["seeds"] else [])]
    rows = []
    for point in sweeps.points(name).itertuples():
        run = store.run(point.run_id)
        swept = {key: _cell(run.config.get(key)) for key in keys}
        base = {"point": point.point, **swept, "status": point.status, "run_id": point.run_id}
        checks = store.checks(point.run_id)
        if checks.empty:
            rows.append({**base, "check": None, "measured": np.nan, "stderr": np.nan,
                         "verdict": None})
        for check in checks.itertuples():
            rows.append({**base, "check": check.name, "measured": check.measured,
                         "stderr": check.stderr, "verdict": check.verdict})
    return pd.DataFrame(rows)


def sweep_figures(results: pd.DataFrame, keys: list[str]) -> dict[str, Figure]:
    """Each check's measured value against the first numeric swept key (see module doc)."""
    numeric = [k for k in keys if k in results and pd.api.types.is_numeric_dtype(results[k])
               and results[k].nunique() > 1]
    if not numeric or results["check"].isna().all():
        return {}
    x_key, others = numeric[0], [k for k in keys if k != numeric[0] and k in results]
    figures: dict[str, Figure] = {}
    for check in list(results["check"].dropna().unique())[:MAX_FIGURES]:
        rows = results[results["check"] == check]
        figure, axes = new_figure()
        ax = axes[0, 0]
        groups = rows.groupby(others, dropna=False) if others else [((), rows)]
        for group_values, group in groups:
            group = group.sort_values(x_key)
            text = ", ".join(f"{k}={v}" for k, v in zip(others, np.atleast_1d(group_values),
                                                       strict=False)) or check
            ax.errorbar(group[x_key], group["measured"], yerr=2 * group["stderr"].fillna(0),
                        marker="o", capsize=3, label=text)
        positive = (rows[x_key] > 0).all() and rows[x_key].max() >= 8 * rows[x_key].min()
        label(ax, str(check), x_key, "measured (± 2 s.e.)", logx=bool(positive))
        if len(ax.get_legend_handles_labels()[0]) <= 10:
            ax.legend(fontsize=7)
        figures[f"check_{len(figures):02d}"] = figure
    return figures


def write_sweep_report(store: RunStore, name: str) -> Path:
    """Write ``<store>/sweeps/<name>/report.html`` (and ``results.csv``); returns the page."""
    sweeps = SweepStore(store)
    record = sweeps.record(name)
    spec = record["spec"]
    keys = [*spec["grid"], *spec["random"], *(["seed"] if spec["seeds"] else [])]
    results = sweep_results(store, name)
    folder = sweeps.folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {stem: png_bytes(figure)
               for stem, figure in sweep_figures(results, keys).items()}
    results.to_csv(folder / "results.csv", index=False)
    page = render_sweep_report(record, sweeps.points(name), results, figures)
    return write_report(folder / "report.html", page)


def _cell(value: object) -> object:
    """Lists (e.g. a swept list of widths) as text, so that they can be grouped on."""
    return str(value) if isinstance(value, list | dict) else value
