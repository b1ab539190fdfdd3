"""DataFrames and configs as exact JSON, for the run store."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from widenet.errors import WidenetError


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, so equal configs give equal strings."""
    return json.dumps(value, sort_keys=True, default=_plain)


def frame_to_json(frame: pd.DataFrame, name: str) -> str:
    """A DataFrame as exact JSON (``orient="split"``, floats written with ``repr``)."""
    if not isinstance(frame, pd.DataFrame):
        raise WidenetError(f"table {name!r} must be a pandas DataFrame, got "
                           f"{type(frame).__name__}")
    data = frame.reset_index(drop=True).to_dict(orient="split")
    data["dtypes"] = [str(dtype) for dtype in frame.dtypes]
    try:
        return json.dumps(data, default=_plain)
    except TypeError as error:
        raise WidenetError(f"table {name!r} holds a value that is not a plain number, string "
                           f"or bool: {error}") from None


def frame_from_json(text: str) -> pd.DataFrame:
    """The DataFrame that :func:`frame_to_json` wrote, with its column dtypes."""
    data = json.loads(text)
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    for column, dtype in zip(data["columns"], data["dtypes"], strict=True):
        if dtype != "object" and frame[column].dtype.name != dtype:
            frame[column] = frame[column].astype(dtype)
    return frame


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (for json.dumps)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r}")
