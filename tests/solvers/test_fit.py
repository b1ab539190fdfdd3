"""fit and fit_files: labels to one-hot targets and back, kernel ridge regression and gradient
flow against dense references, test points from a test kernel or the same kernel file, and
refusals of bad files and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from widenet.dynamics.predict import KernelDynamics, kernel_regression
from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.fit import fit, fit_files


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_classes_become_one_hot_columns_and_come_back(ill_conditioned: dict) -> None:
    kernel, cross = ill_conditioned["train"], ill_conditioned["cross"]
    labels = np.array([3, 7, 9])[ill_conditioned["labels"].numpy()]
    result = fit(kernel, labels, ridge=1e-2, test_kernel=cross, tol=1e-10)
    assert result.converged
    np.testing.assert_array_equal(result.classes, [3, 7, 9])
    y = ill_conditioned["y"]
    expected = kernel_regression(kernel, cross, y, ridge=1e-2)
    assert _relative(result.test, expected) < 1e-7
    assert _relative(result.train, kernel_regression(kernel, kernel, y, ridge=1e-2)) < 1e-7
    np.testing.assert_array_equal(result.labels("test"),
                                  np.array([3, 7, 9])[expected.argmax(1).numpy()])
    assert result.labels("train").shape == (300,)


def test_real_targets_are_a_regression(ill_conditioned: dict) -> None:
    kernel, cross, x = ill_conditioned["train"], ill_conditioned["cross"], ill_conditioned["x"]
    y = torch.sin(2 * x[:, 0])
    result = fit(BlockedKernel(kernel), y.numpy(), ridge=1e-3, test_kernel=cross, tol=1e-10)
    assert result.classes is None
    assert result.test.shape == (40,)
    assert _relative(result.test, kernel_regression(kernel, cross, y, ridge=1e-3)) < 1e-6
    with pytest.raises(WidenetError, match="no classes"):
        result.labels()


def test_a_finite_time_is_gradient_flow(ill_conditioned: dict) -> None:
    kernel, cross, y = ill_conditioned["train"], ill_conditioned["cross"], ill_conditioned["y"]
    result = fit(kernel, ill_conditioned["labels"].numpy(), time=50.0, test_kernel=cross,
                 tol=1e-10)
    dynamics = KernelDynamics(kernel, y)
    assert _relative(result.test, dynamics.test(cross, 50.0)) < 1e-8
    assert _relative(result.train, dynamics.train(50.0)) < 1e-8
    infinite = fit(kernel, ill_conditioned["labels"].numpy(), time=float("inf"), tol=1e-10)
    assert infinite.history.shape[1] == 3  # conjugate gradients' residuals per class
    for inf in [np.float32("inf"), np.float64("inf"), torch.tensor(float("inf"))]:
        again = fit(kernel, ill_conditioned["labels"].numpy(), time=inf, tol=1e-10)
        torch.testing.assert_close(again.train, infinite.train, rtol=0, atol=0)
    with pytest.raises(WidenetError, match="ridge must be 0 with a finite time"):
        fit(kernel, ill_conditioned["labels"].numpy(), time=50.0, ridge=1.0)
    with pytest.raises(WidenetError, match="time must be >= 0"):
        fit(kernel, ill_conditioned["labels"].numpy(), time=-1.0)


def test_on_demand_test_kernel_of_a_net(ill_conditioned: dict) -> None:
    from .conftest import relu_net

    net, x, x_test = relu_net(3, 8), ill_conditioned["x"], ill_conditioned["x_test"]
    result = fit(ill_conditioned["train"], ill_conditioned["labels"].numpy(), ridge=1e-2,
                 test_kernel=BlockedKernel.from_net(net, x_test, x), tol=1e-10)
    expected = kernel_regression(ill_conditioned["train"], infinite_kernels(net, x_test, x).ntk,
                                 ill_conditioned["y"], ridge=1e-2)
    assert _relative(result.test, expected) < 1e-7


def test_fit_files_with_test_points_in_the_same_kernel(disk_kernel: dict,
                                                       tmp_path: Path) -> None:
    x, ntk = disk_kernel["x"], disk_kernel["ntk"]
    labels = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    np.save(tmp_path / "labels.npy", labels.numpy())
    done = fit_files(disk_kernel["path"], tmp_path / "labels.npy", tmp_path / "out.npy",
                     train=100, ridge=1e-3, tol=1e-10)
    expected = kernel_regression(ntk[:100, :100], ntk[100:, :100],
                                 torch.nn.functional.one_hot(labels[:100], 4).double(),
                                 ridge=1e-3).argmax(1).numpy()
    saved = np.load(tmp_path / "out.npy")
    np.testing.assert_array_equal(saved, expected)
    assert done.on == "test"
    assert done.accuracy == pytest.approx(float(np.mean(expected == labels[100:].numpy())))
    alone = fit_files(disk_kernel["path"], tmp_path / "labels.npy", tmp_path / "train.npy",
                      ridge=1e-3)
    assert alone.on == "train"
    assert np.load(tmp_path / "train.npy").shape == (120,)
    assert alone.accuracy == 1.0  # ridge 1e-3 on a positive definite kernel: interpolation


def test_fit_files_with_a_test_kernel_file(ill_conditioned: dict, tmp_path: Path) -> None:
    np.save(tmp_path / "train.npy", ill_conditioned["train"].numpy())
    np.save(tmp_path / "cross.npy", ill_conditioned["cross"].numpy().astype(np.float32))
    np.save(tmp_path / "labels.npy", ill_conditioned["labels"].numpy())
    cross = ill_conditioned["cross"].float().double()
    expected = kernel_regression(ill_conditioned["train"], cross, ill_conditioned["y"],
                                 ridge=1e-2).argmax(1).numpy()
    np.save(tmp_path / "test_labels.npy", expected)
    done = fit_files(tmp_path / "train.npy", tmp_path / "labels.npy", tmp_path / "out.npy",
                     test_kernel=tmp_path / "cross.npy", test_labels=tmp_path / "test_labels.npy",
                     ridge=1e-2, tol=1e-10)
    assert done.accuracy == 1.0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_bad_labels_and_files_are_refused(ill_conditioned: dict, tmp_path: Path) -> None:
    kernel, labels = ill_conditioned["train"], ill_conditioned["labels"].numpy()
    with pytest.raises(WidenetError, match=r"integer labels must have shape \(300,\)"):
        fit(kernel, labels[:-1])
    with pytest.raises(WidenetError, match=r"for one-hot rows pass labels\.argmax\(1\)"):
        fit(kernel, np.eye(3, dtype=int)[labels])
    with pytest.raises(WidenetError, match=r"\(300, 1\); for a column of labels pass "
                                           r"labels\.ravel\(\)$"):
        fit(kernel, labels[:, None])
    with pytest.raises(WidenetError, match="one class only"):
        fit(kernel, np.zeros(300, dtype=int))
    with pytest.raises(WidenetError, match=r"integers .* or real numbers"):
        fit(kernel, np.array(["a"] * 300))
    nan = labels.astype(float)
    nan[3] = np.nan
    with pytest.raises(WidenetError, match="NaN or inf"):
        fit(kernel, nan)
    with pytest.raises(WidenetError, match="test kernel has 299 columns"):
        fit(kernel, labels, test_kernel=ill_conditioned["cross"][:, 1:])
    with pytest.raises(WidenetError, match="must be square"):
        fit(kernel[:, 1:], labels)
    np.save(tmp_path / "k.npy", kernel.numpy())
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(WidenetError, match=r"labels file .* does not exist"):
        fit_files(tmp_path / "k.npy", tmp_path / "nothing.npy", tmp_path / "out.npy")
    with pytest.raises(WidenetError, match=r"kernel file .* does not exist"):
        fit_files(tmp_path / "none.npy", tmp_path / "labels.npy", tmp_path / "out.npy")
    with pytest.raises(WidenetError, match=r"must end in \.npy"):
        fit_files(tmp_path / "k.npy", tmp_path / "labels.npy", tmp_path / "out.csv")
    with pytest.raises(WidenetError, match="below the kernel's 300 points"):
        fit_files(tmp_path / "k.npy", tmp_path / "labels.npy", tmp_path / "out.npy", train=300)
    with pytest.raises(WidenetError, match=r"either --train .* or --test-kernel"):
        fit_files(tmp_path / "k.npy", tmp_path / "labels.npy", tmp_path / "out.npy", train=10,
                  test_kernel=tmp_path / "k.npy")
    assert not (tmp_path / "out.npy").exists()


def test_the_predictions_never_replace_an_input(ill_conditioned: dict, tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", ill_conditioned["train"].numpy())
    np.save(tmp_path / "cross.npy", ill_conditioned["cross"].numpy())
    np.save(tmp_path / "labels.npy", ill_conditioned["labels"].numpy())
    (tmp_path / "a_file").write_text("x")
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    files = {"kernel": tmp_path / "k.npy", "labels": tmp_path / "labels.npy",
             "test_kernel": tmp_path / "cross.npy"}
    for out in files.values():
        with pytest.raises(WidenetError, match="is one of the input files"):
            fit_files(**files, out=out)
    with pytest.raises(WidenetError, match="a_file is a file"):
        fit_files(**files, out=tmp_path / "a_file" / "out.npy")
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(WidenetError, match="is a folder"):
        fit_files(**files, out=tmp_path / "folder.npy")
    assert {path: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == before


def test_the_fit_command(disk_kernel: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from widenet.cli import main

    x = disk_kernel["x"]
    labels = ((x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()).numpy()
    np.save(tmp_path / "labels.npy", labels)
    command = ["fit", str(disk_kernel["path"]), "--labels", str(tmp_path / "labels.npy"),
               "--train", "100", "--ridge", "1e-3", "--out", str(tmp_path / "out.npy")]
    assert main(command) == 0
    printed = capsys.readouterr().out
    expected = fit_files(disk_kernel["path"], tmp_path / "labels.npy", tmp_path / "again.npy",
                         train=100, ridge=1e-3)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.load(tmp_path / "again.npy"))
    assert f"test accuracy {expected.accuracy:.4f} on 20 points" in printed
    assert "(converged)" in printed
    assert main([*command[:-2], "--out", str(tmp_path / "flow.npy"), "--time", "10"]) == 2
    assert "ridge must be 0 with a finite time" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.npy"), "--labels",
                 str(tmp_path / "labels.npy"), "--out", str(tmp_path / "x.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_options_that_a_fit_would_ignore_are_refused(ill_conditioned: dict) -> None:
    """Gradient flow (a finite time) has no preconditioner, and only Nystrom has a rank and a
    seed: they were silently ignored before the fix. time=inf with a ridge is kernel ridge
    regression (the t -> inf limit with a weight decay), as documented."""
    from widenet.solvers.cg import conjugate_gradients

    kernel, labels = ill_conditioned["train"], ill_conditioned["labels"].numpy()
    for options, named in (({"rank": 20}, "rank applies"), ({"seed": 1}, "seed applies"),
                           ({"preconditioner": None}, "preconditioner applies"),
                           ({"preconditioner": None, "rank": 5},
                            "preconditioner and rank apply")):
        with pytest.raises(WidenetError, match=f"^{named} to conjugate gradients .* "
                                               f"leave out {named.rsplit(' ', 1)[0]} or the "
                                               "time$"):
            fit(kernel, labels, time=5.0, **options)
    blocked, y = BlockedKernel(kernel), ill_conditioned["y"]
    for options, named in (({"rank": 20}, "rank chooses"), ({"seed": 3}, "seed chooses"),
                           ({"rank": 20, "seed": 3}, "rank and seed choose")):
        for preconditioner, what in ((None, "None"), (lambda r: r, "<function")):
            with pytest.raises(WidenetError, match=f"^{named} the Nystrom .* preconditioner "
                                                   f"is {what}"):
                conjugate_gradients(blocked, y, preconditioner=preconditioner, **options)
    ridge = fit(kernel, labels, time=float("inf"), ridge=1e-2, tol=1e-10)
    assert _relative(ridge.train, kernel_regression(kernel, kernel, y, ridge=1e-2)) < 1e-7


def test_label_files_that_do_not_fit_are_refused_before_the_solve(
        disk_kernel: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels of neither N nor all points with --train, test labels of the wrong length,
    test labels that contradict the labels' own, test labels of a regression, test labels
    that are not integers (an accuracy of 0 was printed for them before), a scalar
    labels file, an .npz archive, the kernel file as labels (a regression on its columns)
    and a kernel of all points that is not square (its parts were taken silently) are
    refused before anything is solved (the wrong length was found after the solve, the
    scalar and the archive were a TypeError and an AttributeError, the rest were ignored,
    before the fix)."""
    import importlib

    module = importlib.import_module("widenet.solvers.fit")  # the attribute is the function

    def no_solve(*_args: object, **_options: object) -> None:
        raise AssertionError("solved before the labels were checked")

    monkeypatch.setattr(module, "fit", no_solve)
    labels = (disk_kernel["x"][:, 0] > 0).long().numpy()  # 120 points
    cases = {"wrong count": (labels[:90], None, r"with --train 100 the labels must have 100 "
                                                r"entries .* or 120 .* got shape \(90,\)"),
             "scalar": (np.array(3), None, r"must have 100 entries .* got shape \(\)"),
             "test count": (labels[:100], labels[:19], r"test labels must have shape \(20,\)"),
             "contradiction": (labels, 1 - labels[100:], "differs from them: give only one"),
             "regression": (labels[:100].astype(float), labels[100:],
                            r"labels are float64 \(real targets: a regression\)"),
             "test shape": (labels, labels[None, 100:], r"must have shape \(20,\), one per "
                                                        r"test point, got \(1, 20\)"),
             "real test labels": (labels[:100], labels[100:] + 0.5,
                                  r"test labels must be integer class labels .* got float64"),
             "text test labels": (labels[:100], np.array(["a"] * 20),
                                  r"test labels must be integer class labels .* got <U1")}
    for name, (train_labels, test_labels, message) in cases.items():
        np.save(tmp_path / "labels.npy", train_labels)
        options = {}
        if test_labels is not None:
            np.save(tmp_path / "test.npy", test_labels)
            options["test_labels"] = tmp_path / "test.npy"
        with pytest.raises(WidenetError, match=message):
            fit_files(disk_kernel["path"], tmp_path / "labels.npy", tmp_path / "out.npy",
                      train=100, **options)
        assert not (tmp_path / "out.npy").exists(), name
    np.save(tmp_path / "labels.npy", labels[:100])
    np.save(tmp_path / "wide.npy", np.load(disk_kernel["path"])[:, :110])
    with pytest.raises(WidenetError, match=r"kernel of all points, square, but .* has shape "
                                           r"\(120, 110\)"):
        fit_files(tmp_path / "wide.npy", tmp_path / "labels.npy", tmp_path / "out.npy",
                  train=100)
    with pytest.raises(WidenetError, match=r"labels file .* is the kernel file"):
        fit_files(disk_kernel["path"], disk_kernel["path"], tmp_path / "out.npy")
    np.savez(tmp_path / "archive.npz", labels)
    with pytest.raises(WidenetError, match=r"is an \.npz archive of several arrays"):
        fit_files(disk_kernel["path"], tmp_path / "archive.npz", tmp_path / "out.npy")


def test_the_fit_command_refuses_options_it_would_ignore(disk_kernel: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from widenet.cli import main

    np.save(tmp_path / "labels.npy", (disk_kernel["x"][:, 0] > 0).long().numpy())
    command = ["fit", str(disk_kernel["path"]), "--labels", str(tmp_path / "labels.npy"),
               "--train", "100", "--out", str(tmp_path / "out.npy")]
    for extra, message in ((["--time", "10", "--rank", "20"], "rank applies to conjugate"),
                           (["--time", "10", "--no-preconditioner"], "preconditioner applies"),
                           (["--no-preconditioner", "--rank", "20"], "rank chooses the Nystrom")):
        assert main([*command, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists()


def test_bfloat16_targets_and_meta_tensors(ill_conditioned: dict) -> None:
    """bfloat16 targets (a TypeError of numpy before the fix) are the float32 numbers they
    hold; a meta tensor, which has no values, is refused (NotImplementedError before)."""
    kernel, x = ill_conditioned["train"], ill_conditioned["x"]
    y = torch.sin(2 * x[:, 0]).bfloat16()
    result = fit(kernel, y, ridge=1e-2, tol=1e-10)
    torch.testing.assert_close(result.weights,
                               fit(kernel, y.float(), ridge=1e-2, tol=1e-10).weights,
                               rtol=0, atol=0)
    with pytest.raises(WidenetError, match="kernel is a meta tensor"):
        fit(torch.empty(300, 300, device="meta"), y)
    with pytest.raises(WidenetError, match="labels is a meta tensor"):
        fit(kernel, torch.empty(300, device="meta"))


def test_a_labels_file_whose_header_asks_for_terabytes_is_refused(disk_kernel: dict,
                                                                  tmp_path: Path) -> None:
    """A damaged header of 10^12 entries was a MemoryError traceback (numpy allocates what the
    header says before it finds the data missing)."""
    with open(tmp_path / "labels.npy", "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<i8", "fortran_order": False,
                                                    "shape": (10**12,)})
    with pytest.raises(WidenetError, match=r"cannot read the labels file .*labels\.npy as "
                                           r"\.npy \(.*7\.28 TiB"):
        fit_files(disk_kernel["path"], tmp_path / "labels.npy", tmp_path / "out.npy",
                  train=100)
    assert not (tmp_path / "out.npy").exists()
