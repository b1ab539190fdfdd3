"""User data files: ``.npz`` archives and ``.csv`` tables, read into checked arrays.

Both readers return a dict of numpy arrays with the keys of :func:`widenet.data.from_arrays`
(``x``, ``y`` and optionally ``x_test``, ``y_test``); that function does the label encoding,
the seeded split and the remaining checks.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from widenet.errors import ARGUMENT, WidenetError

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")


def _existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` (with ``~`` expanded) if it names an existing file, else raise."""
    file = Path(path).expanduser()
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise WidenetError(f"data file {str(file)!r} {what}; check the path (relative paths "
                           f"start at {str(Path.cwd())!r})")
    return file


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of a ``numpy.savez`` archive: ``x`` (n, d) and ``y`` (n,) or (n, k) are
    required, ``x_test`` and ``y_test`` optional (both or neither); no other names allowed.
    Pickled (object) arrays are refused."""
    file = _existing_file(path)
    if not zipfile.is_zipfile(file):
        with file.open("rb") as handle:
            single = handle.read(6) == b"\x93NUMPY"
        what = "holds a single .npy array" if single else "is not an .npz archive (not a zip file)"
        raise WidenetError(f"{str(file)!r} {what}; save data with numpy.savez(path, x=x, y=y)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as error:
        raise WidenetError(f"cannot read {str(file)!r} as an .npz archive ({error}); save it "
                           "with numpy.savez(path, x=x, y=y) from numeric arrays") from None
    found = ", ".join(sorted(arrays)) or "none"
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise WidenetError(f"{str(file)!r} lacks the array(s) {', '.join(missing)} (it has: "
                           f"{found}); save inputs as x and targets as y")
    unknown = sorted(set(arrays) - set(NPZ_ARRAYS))
    if unknown:
        raise WidenetError(f"{str(file)!r} has unexpected array(s) {', '.join(unknown)}; the "
                           f"allowed names are {', '.join(NPZ_ARRAYS)}")
    return arrays


def read_csv(path: str | os.PathLike[str], label_column: str) -> dict[str, np.ndarray]:
    """A CSV table with a header row: column ``label_column`` as ``y`` (numbers or strings),
    all other columns as the numeric features ``x``, one row per point.

    Empty cells are refused, as are non-numeric feature columns (named in the message).
    """
    import pandas as pd

    if not isinstance(label_column, str):
        raise WidenetError(f"a .csv data set needs {ARGUMENT}, the name of the column that "
                           f"holds the labels; got {label_column!r}", argument="label_column")
    file = _existing_file(path)
    try:
        frame = pd.read_csv(file)
    except pd.errors.EmptyDataError:
        raise WidenetError(f"{str(file)!r} is empty; write a header row and one row per "
                           "point") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise WidenetError(f"cannot parse {str(file)!r} as CSV ({str(error).strip()})") from None
    columns = ", ".join(map(str, frame.columns))
    if label_column not in frame.columns:
        raise WidenetError(f"{str(file)!r} has no column {label_column!r}; its columns are: "
                           f"{columns}")
    if frame.empty:
        raise WidenetError(f"{str(file)!r} has a header but no rows; write one row per point")
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise WidenetError(f"{str(file)!r} has only the label column {label_column!r}; it "
                           "needs at least one feature column")
    for column in frame.columns:
        empty = int(frame[column].isna().sum())
        if empty:
            raise WidenetError(f"{str(file)!r}: column {column!r} has {empty} empty or NaN "
                               "cell(s); fill or drop those rows")
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            raise WidenetError(f"{str(file)!r}: feature column {column!r} is not numeric "
                               f"(first value {features[column].iloc[0]!r}); convert it to "
                               "numbers or drop it")
    return {"x": features.to_numpy(), "y": frame[label_column].to_numpy()}
