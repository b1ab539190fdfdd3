"""A small finished run for the report tests: record, checks, tables and one figure."""

from __future__ import annotations

import pandas as pd

from widenet.checks import check_interval
from widenet.figures import label, new_figure, png_bytes
from widenet.store import RunRecord

RUN_ID = "toy-20240101-000000-abcd"


def make_record(**changes: object) -> RunRecord:
    """A completed run of the study ``toy`` whose config holds a ``<script>`` string."""
    fields = {"id": RUN_ID, "study": "toy", "config": {"widths": [8, 16], "name": "<script>"},
              "status": "completed", "seed": 7, "device": "cpu",
              "created": "2024-01-01T00:00:00+00:00", "finished": "2024-01-01T00:01:00+00:00",
              "reason": "", "tasks_done": 2, "versions": {"torch": "2.3.0", "widenet": "0.1.0"},
              "sweep": None}
    fields.update(changes)
    return RunRecord(**fields)


def make_checks() -> pd.DataFrame:
    """Three checks, one of each verdict, as the store returns them."""
    checks = [
        check_interval("slope", "error ~ m^-1/2", measured=-0.48, low=-0.6, high=-0.4,
                       predicted=-0.5, stderr=0.01),
        check_interval("gap", "gap <= 0 & <b>bold</b>", measured=3.0, high=0.0, stderr=0.1,
                       note="far off"),
        check_interval("ratio", "ratio >= 1", measured=0.95, low=1.0, stderr=0.05),
    ]
    return pd.DataFrame([check.as_row() for check in checks])


def make_figure_png() -> bytes:
    """A small line plot rendered as PNG."""
    figure, axes = new_figure(panel=(2.0, 1.5))
    axes[0, 0].plot([1, 2, 3], [1, 4, 9])
    label(axes[0, 0], "squares", "x", "y")
    return png_bytes(figure, dpi=40)


def make_tables(rows: int = 3) -> dict[str, pd.DataFrame]:
    """One table ``errors`` of ``rows`` rows (width, error with a NaN in row 1)."""
    errors = [1.0 / (i + 1) for i in range(rows)]
    errors[1] = float("nan")
    return {"errors": pd.DataFrame({"width": range(rows), "error": errors})}
