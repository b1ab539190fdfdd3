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
    """The DataFrame that :func:`frame_to_json` wrote, with its column dtypes.

    Text that is not such JSON (broken, cut, hand-edited, a dtype pandas does not know) raises a
    WidenetError saying what is wrong, for the caller to name the run and table.
    """
    try:
        data = json.loads(text)
        frame = pd.DataFrame(data["data"], columns=data["columns"])
        for column, dtype in zip(data["columns"], data["dtypes"], strict=True):
            if dtype != "object" and frame[column].dtype.name != dtype:
                frame[column] = frame[column].astype(dtype)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
            OverflowError) as error:
        raise WidenetError(_short(f"{type(error).__name__}: {error}")) from None
    return frame


def mapping_from_json(text: str) -> dict[str, Any]:
    """The JSON object (a config, package versions) stored as ``text``; text that is not a
    JSON object raises a WidenetError saying what is wrong."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError) as error:
        raise WidenetError(_short(f"{type(error).__name__}: {error}")) from None
    if not isinstance(value, dict):
        raise WidenetError(f"a JSON {type(value).__name__}, not an object")
    return value


def _short(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists (for json.dumps)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r}")
