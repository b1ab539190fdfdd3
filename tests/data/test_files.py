"""User files: .npz and .csv round trips through load_dataset, and clear errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from widenet import WidenetError
from widenet.data import load_dataset, read_csv, read_npz

X = np.linspace(-1, 1, 30).reshape(10, 3)
LABELS = np.array([4, 2, 4, 8, 2, 2, 8, 4, 4, 2])


def _order(count: int, seed: int) -> np.ndarray:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).numpy()


def test_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, x=X, y=LABELS)
    ds = load_dataset(str(path), n=6, n_test=3, seed=5)
    order = _order(10, 5)
    assert (ds.name, ds.task, ds.classes) == (str(path), "classification", 3)
    assert np.array_equal(ds.x.numpy(), X[order[:6]])
    assert np.array_equal(ds.y.numpy(), np.searchsorted([2, 4, 8], LABELS[order[:6]]))
    assert np.array_equal(ds.x_test.numpy(), X[order[6:9]])


def test_npz_with_its_own_test_split_and_float_targets(tmp_path: Path) -> None:
    path = tmp_path / "reg.npz"
    np.savez(path, x=X, y=X[:, :2] * 3, x_test=X[:4], y_test=X[:4, :2])
    ds = load_dataset(path, seed=1)
    assert ds.task == "regression"
    assert ds.y.shape == (10, 2)
    assert np.array_equal(ds.x_test.numpy(), X[:4])
    assert np.array_equal(ds.y_test.numpy(), X[:4, :2])
    assert np.array_equal(ds.y.numpy(), X[_order(10, 1), :2] * 3)


def test_csv_round_trip_with_string_and_float_labels(tmp_path: Path) -> None:
    path = tmp_path / "set.csv"
    rows = [f"{a},{b},{label},{c}" for (a, b, c), label in zip(X, LABELS, strict=True)]
    path.write_text("a,b,kind,c\n" + "\n".join(rows) + "\n")
    ds = load_dataset(str(path), label_column="kind", n_test=2)
    order = _order(10, 0)
    assert (ds.task, ds.classes) == ("classification", 3)
    assert np.allclose(ds.x.numpy(), X[order[:8]], rtol=0, atol=1e-15)
    assert np.array_equal(ds.y.numpy(), np.searchsorted([2, 4, 8], LABELS[order[:8]]))
    named = tmp_path / "named.csv"
    named.write_text("f,label\n0.5,cat\n1.5,dog\n2.5,cat\n")
    assert read_csv(named, "label")["y"].tolist() == ["cat", "dog", "cat"]
    assert load_dataset(named, label_column="label").classes == 2
    floats = tmp_path / "floats.csv"
    floats.write_text("f,target\n0.5,1.0\n1.5,2.0\n")
    assert load_dataset(floats, label_column="target").task == "regression"


def _write(path: Path, content: str | dict[str, np.ndarray] | np.ndarray) -> Path:
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, dict):
        with path.open("wb") as file:
            np.savez(file, **content)
    else:
        with path.open("wb") as file:
            np.save(file, content)
    return path


@pytest.mark.parametrize(("content", "message"), [
    ({"x": X}, r"lacks the array\(s\) y \(it has: x\)"),
    ({"x": X, "y": LABELS, "x_tst": X}, r"unexpected array\(s\) x_tst"),
    ({"x": X[:, 0], "y": LABELS}, r"non-empty \(n, d\) array"),
    ({"x": X.astype(str), "y": LABELS}, "x must be numeric"),
    ({"x": np.where(X > 0, np.inf, X), "y": LABELS}, "NaN or inf"),
    ({"x": X, "y": LABELS[:4]}, "one target per point"),
    ({"x": X, "y": LABELS, "x_test": X}, "give both x_test and y_test"),
    ({"x": X, "y": np.array([None] * 10, dtype=object)}, "cannot read .* as an .npz archive"),
    (X, "holds a single .npy array"),
    ("garbage", r"is not an .npz archive \(not a zip file\)"),
])
def test_bad_npz(tmp_path: Path, content: str | dict[str, np.ndarray] | np.ndarray,
                 message: str) -> None:
    path = _write(tmp_path / "bad.npz", content)
    with pytest.raises(WidenetError, match=message):
        load_dataset(str(path))


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("a,b,label\n", "has a header but no rows"),
    ("a,b,y\n1,2,0\n", "has no column 'label'; its columns are: a, b, y"),
    ("a,b,label\n1,x,0\n2,y,1\n", "feature column 'b' is not numeric"),
    ("a,b,label\n1,,0\n2,3,1\n", "column 'b' has 1 empty or NaN cell"),
    ("a,b,label\n1,2,\n2,3,1\n", "column 'label' has 1 empty or NaN cell"),
    ("label\n0\n1\n", "only the label column"),
    ("a,b,label\n1,2,0\n3,4,1,5\n", r"cannot parse .* as CSV \(.*Expected 3 fields in line 3, "
                                     r"saw 4\)$"),  # pandas ends its message with a newline
])
def test_bad_csv(tmp_path: Path, content: str, message: str) -> None:
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(WidenetError, match=message) as raised:
        load_dataset(str(path), label_column="label")
    assert "\n" not in str(raised.value)


def test_missing_files_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(WidenetError, match="does not exist; check the path"):
        load_dataset(str(tmp_path / "absent.npz"))
    with pytest.raises(WidenetError, match="is a directory, not a file"):
        read_npz(tmp_path)
    path = _write(tmp_path / "ok.csv", "a,label\n1,0\n2,1\n")
    with pytest.raises(WidenetError, match="pass label_column="):
        load_dataset(str(path))
    with pytest.raises(WidenetError, match="needs label_column"):
        read_csv(path, 3)  # type: ignore[arg-type]
    with pytest.raises(WidenetError, match="noise does not apply to the fixed set"):
        load_dataset(str(path), label_column="label", noise=0.1)


def test_an_npz_member_whose_header_asks_for_terabytes_is_refused(tmp_path: Path) -> None:
    """numpy allocates what a member's header says before it finds the data missing: that was
    a MemoryError traceback."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue())
        archive.writestr("y.npy", header.getvalue())
    with pytest.raises(WidenetError, match=r"cannot read .*lie\.npz.* as an .npz archive "
                                           r"\(.*7\.28 TiB"):
        load_dataset(str(tmp_path / "lie.npz"))
