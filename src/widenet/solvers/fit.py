"""Kernel machines from a blocked kernel: labels in, predictions out (``widenet fit``).

:func:`fit` turns labels into targets (integer labels -> one-hot columns, one per class, in
sorted order; real targets as given), solves for the weights with the kernel read a block at
a time and predicts:

- ``time=None`` or ``time=inf``: kernel ridge regression, alpha = (K + ridge I)^-1 Y by
  preconditioned conjugate gradients (:mod:`widenet.solvers.cg`); the training predictions
  are K alpha = Y - ridge alpha (exact up to the residual, tol ||Y||), the test predictions
  K_*X alpha. With ridge 0 it is the t -> inf limit of gradient flow for a positive definite
  K; with a ridge, the t -> inf limit of gradient flow on the loss plus
  (ridge / (2n)) ||f||_K^2 (a weight decay in the kernel regime), whose minimizer this is.
- ``time=t`` (finite): the network trained by gradient flow for time t in the kernel regime
  (:mod:`widenet.solvers.flow`, Lanczos): f_train(t) = (I - exp(-K t/n)) Y and
  f_test(t) = K_*X phi_t(K) Y. It has no ridge and no preconditioner: a ridge, ``rank``,
  ``seed`` or a ``preconditioner`` other than the default are refused with it, not ignored.

Test predictions come from the test-by-train kernel K_*X (m, n), read a block of test rows at
a time in one pass. :func:`fit_files` does the same from ``.npy`` files and writes the
predictions (class labels, or values) atomically.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np
import torch

from widenet.errors import WidenetError
from widenet.files import atomic_write
from widenet.solvers.arguments import square_size, targets_matrix
from widenet.solvers.blocked import BlockedKernel
from widenet.solvers.cg import DEFAULT_MAX_ITERATIONS, conjugate_gradients
from widenet.solvers.flow import gradient_flow
from widenet.solvers.progress import Progress
from widenet.validation import finite_real, positive_int

KernelLike = BlockedKernel | np.ndarray | torch.Tensor | str | Path


@dataclass(frozen=True)
class KernelFit:
    """A fitted kernel machine. ``train`` (n, k) and ``test`` (m, k) (None without a test
    kernel) are the predicted outputs (one column per class for integer labels, whose values
    are ``classes``; else as many columns as the targets, squeezed for 1-D targets);
    ``weights`` the coefficients on the training points. ``iterations`` passes over the
    kernel; ``history`` the relative residuals of conjugate gradients (iterations + 1, k) or
    Lanczos's error estimates."""

    train: torch.Tensor
    test: torch.Tensor | None
    weights: torch.Tensor
    classes: np.ndarray | None
    iterations: int
    converged: bool
    history: torch.Tensor

    def labels(self, which: str = "test") -> np.ndarray:
        """The predicted class of each ``which`` ("train" or "test") point: the class of the
        largest output."""
        if self.classes is None:
            raise WidenetError("the fit is a regression (real targets); it has no classes")
        outputs = {"train": self.train, "test": self.test}.get(which)
        if outputs is None:
            raise WidenetError(f"which must be 'train' or 'test' (with a test kernel), got "
                               f"{which!r}")
        return self.classes[outputs.argmax(dim=1).numpy()]


def fit(kernel: KernelLike, labels: np.ndarray | torch.Tensor, *, ridge: float = 0.0,
        time: float | None = None, test_kernel: KernelLike | None = None,
        preconditioner: str | None = "nystrom", rank: int | None = None,
        seed: int | None = None,
        tol: float = 1e-6, max_iterations: int | None = None,
        progress: bool | Progress | None = False) -> KernelFit:
    """Fit a kernel machine on the training kernel ``kernel`` (n, n) and ``labels`` (n,)
    integers or (n,) / (n, k) reals, and predict on the test points of ``test_kernel``
    (m, n) (module docstring). Kernels are :class:`BlockedKernel`, ``.npy`` paths or arrays.
    ``preconditioner``, ``rank`` and ``seed`` are those of
    :func:`~widenet.solvers.cg.conjugate_gradients` (regression only). ``tol`` and
    ``max_iterations`` stop conjugate gradients (relative residual) or Lanczos (estimated
    relative error; default 300 iterations, 1000 for conjugate gradients)."""
    train_kernel = as_blocked(kernel, "kernel")
    n = square_size(train_kernel)
    targets, classes = targets_and_classes(labels, n)
    ridge = finite_real(ridge, "ridge", minimum=0.0)
    if max_iterations is not None:
        max_iterations = positive_int(max_iterations, "max_iterations")
    cross = None if test_kernel is None else as_blocked(test_kernel, "test_kernel")
    if cross is not None and cross.shape[1] != n:
        raise WidenetError(f"the test kernel has {cross.shape[1]} columns but the training "
                           f"kernel has {n} points; it must be (test points, {n})")
    flow_time = _flow_time(time)
    if flow_time is not None:
        if ridge != 0:
            raise WidenetError("ridge must be 0 with a finite time (gradient flow has no "
                               "ridge); leave out the ridge or the time")
        unused = [name for name, value in (("rank", rank), ("seed", seed)) if value is not None]
        if not (isinstance(preconditioner, str) and preconditioner == "nystrom"):
            unused.insert(0, "preconditioner")
        if unused:
            names = " and ".join(unused)
            raise WidenetError(f"{names} {'apply' if len(unused) > 1 else 'applies'} to "
                               "conjugate gradients (no time, or time=inf); gradient flow for "
                               f"a finite time (Lanczos) has none: leave out {names} or the "
                               "time")
        flow = gradient_flow(train_kernel, targets, flow_time, tol=tol,
                             max_iterations=max_iterations or 300, progress=progress)
        weights, train, iterations = flow.weights, flow.train, flow.iterations
        converged, history = flow.converged, torch.tensor(flow.changes, dtype=torch.float64)
    else:
        solved = conjugate_gradients(train_kernel, targets, ridge=ridge,
                                     preconditioner=preconditioner, rank=rank, seed=seed,
                                     tol=tol,
                                     max_iterations=max_iterations or DEFAULT_MAX_ITERATIONS,
                                     progress=progress)
        weights, iterations = solved.weights, solved.iterations
        train = targets - ridge * weights
        converged, history = solved.converged, solved.residuals
    test = None if cross is None else cross.matmul(weights)
    squeeze = classes is None and torch.as_tensor(labels).ndim == 1
    if squeeze:
        train, test, weights = train[:, 0], None if test is None else test[:, 0], weights[:, 0]
    return KernelFit(train, test, weights, classes, iterations, converged, history)


def _flow_time(time: float | None) -> float | None:
    """The finite time of a gradient-flow fit, or None for regression (None or inf)."""
    if isinstance(time, torch.Tensor) and time.numel() == 1:
        time = time.item()
    if time is None or (isinstance(time, Real) and not isinstance(time, bool)
                        and time == math.inf):
        return None
    return finite_real(time, "time", minimum=0.0)


def as_blocked(kernel: KernelLike, name: str) -> BlockedKernel:
    """``kernel`` as a :class:`BlockedKernel` (a path is opened, an array wrapped)."""
    if isinstance(kernel, BlockedKernel):
        return kernel
    if isinstance(kernel, str | Path):
        return BlockedKernel.open(kernel)
    if isinstance(kernel, np.ndarray | torch.Tensor):
        return BlockedKernel(kernel)
    raise WidenetError(f"{name} must be a BlockedKernel, a .npy path or an array, got "
                       f"{type(kernel).__name__}")


def targets_and_classes(labels: np.ndarray | torch.Tensor, n: int
                        ) -> tuple[torch.Tensor, np.ndarray | None]:
    """(targets (n, k), classes): integer or boolean labels (n,) give one-hot targets and the
    sorted distinct labels; real labels are the targets themselves (classes None)."""
    if isinstance(labels, torch.Tensor):
        if labels.device.type == "meta":
            raise WidenetError("labels is a meta tensor, which holds no values")
        labels = labels.detach().cpu()
        # numpy has no bfloat16; its values are float32 numbers
        labels = (labels.float() if labels.dtype == torch.bfloat16 else labels).numpy()
    if not isinstance(labels, np.ndarray):
        raise WidenetError(f"labels must be a numpy array or tensor, got "
                           f"{type(labels).__name__}")
    if labels.dtype.kind in "iub":
        if labels.shape != (n,):
            hint = ("; for a column of labels pass labels.ravel()" if labels.shape == (n, 1)
                    else "; for one-hot rows pass labels.argmax(1) (or labels.astype(float) to "
                    "fit them as real targets)" if labels.shape[:1] == (n,) else "")
            raise WidenetError(f"integer labels must have shape ({n},) to match the kernel's "
                               f"{n} points, got {labels.shape}{hint}")
        classes, index = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise WidenetError(f"the labels hold one class only ({classes[0]}); a classifier "
                               "needs at least two")
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(index.reshape(-1)),
                                              len(classes))
        return one_hot.to(torch.float64), classes
    if labels.dtype.kind != "f":
        raise WidenetError(f"labels must be integers (classes) or real numbers (targets), got "
                           f"dtype {labels.dtype}")
    return targets_matrix(labels, n, "labels"), None


@dataclass(frozen=True)
class FileFit:
    """What :func:`fit_files` did: the fit, the accuracy on the test (or training) labels
    when they are known, and where the predictions went."""

    fit: KernelFit
    on: str
    accuracy: float | None
    out: Path

    def summary(self) -> str:
        """One line: passes over the kernel, convergence, accuracy, where the output went."""
        result = self.fit
        last = float(result.history[-1].max()) if len(result.history) else 0.0
        what = "relative residual" if result.history.ndim == 2 else "estimated error"
        state = "converged" if result.converged else "NOT converged: raise --max-iterations"
        points = len(result.train if result.test is None else result.test)
        accuracy = "" if self.accuracy is None else (
            f"; {self.on} accuracy {self.accuracy:.4f} on {points} points")
        return (f"{result.iterations} passes over the kernel, {what} {last:.2e} ({state})"
                f"{accuracy}; {self.on} predictions in {self.out}")


def fit_files(kernel: str | Path, labels: str | Path, out: str | Path, *,
              train: int | None = None, test_kernel: str | Path | None = None,
              test_labels: str | Path | None = None, **options: object) -> FileFit:
    """``widenet fit``: fit on the kernel file ``kernel`` and the labels file ``labels``
    (``.npy``) and save the predicted class labels (or values, for real targets) of the test
    points, or of the training points without test points, to ``out`` (``.npy``).

    ``train=N``: ``kernel`` holds all points, the first N for training and the rest for
    testing (as ``widenet kernel`` writes one matrix of all points); ``labels`` then has N
    entries, or one per point (the rest are the test labels). Otherwise ``test_kernel`` is
    the (m, n) test-by-train kernel file. ``test_labels`` (``.npy``) gives the test labels.
    ``options`` go to :func:`fit`."""
    out = _output_path(out, (kernel, labels, test_kernel, test_labels))
    whole = BlockedKernel.open(kernel)
    for name, path in (("labels", labels), ("test labels", test_labels)):
        if path is not None and Path(path).exists() and Path(path).samefile(kernel):
            raise WidenetError(f"the {name} file {path} is the kernel file; give the .npy file "
                               f"of the {name}")
    values = _load(labels, "labels")
    known_test = None if test_labels is None else _load(test_labels, "test labels")
    if train is not None:
        if test_kernel is not None:
            raise WidenetError("give either --train (test points in the same kernel) or "
                               "--test-kernel, not both")
        train = positive_int(train, "train")
        total = whole.shape[0]
        if whole.shape[1] != total:
            raise WidenetError(f"with --train the kernel file holds the kernel of all points, "
                               f"square, but {kernel} has shape {whole.shape}")
        if not train < total:
            raise WidenetError(f"--train must be below the kernel's {total} points, got "
                               f"{train}")
        if values.ndim == 0 or len(values) not in (train, total):
            raise WidenetError(f"with --train {train} the labels must have {train} entries "
                               f"(the training points) or {total} (all points, the rest "
                               f"being test labels), got shape {values.shape}")
        if len(values) == total:
            rest = values[train:]
            if known_test is not None and known_test.shape == rest.shape and not (
                    np.array_equal(known_test, rest)):
                raise WidenetError(f"the labels have one entry per point, so their last "
                                   f"{total - train} are the test labels, and the test labels "
                                   "file differs from them: give only one of the two")
            known_test, values = rest if known_test is None else known_test, values[:train]
        square = whole.part(range(train), range(train))
        cross = whole.part(range(train, total), range(train))
    else:
        square, cross = whole, None if test_kernel is None else BlockedKernel.open(test_kernel)
        if cross is None and known_test is not None:
            raise WidenetError("test labels without test points: give --train N (the kernel's "
                               "points after the first N are the test points) or "
                               "--test-kernel")
    if test_labels is not None:
        points = cross.shape[0]
        if known_test.shape != (points,):
            raise WidenetError(f"the test labels must have shape ({points},), one per test "
                               f"point, got {known_test.shape}")
        if known_test.dtype.kind not in "iub":
            raise WidenetError(f"the test labels must be integer class labels (they give the "
                               f"accuracy of the predicted classes), got {known_test.dtype}")
        if values.dtype.kind not in "iub":
            raise WidenetError(f"test labels give a classifier's accuracy, but the labels are "
                               f"{values.dtype} (real targets: a regression); save integer "
                               "class labels to classify")
    result = fit(square, values, test_kernel=cross, **options)
    outputs = result.train if result.test is None else result.test
    on = "train" if result.test is None else "test"
    predicted = (result.labels(on) if result.classes is not None
                 else outputs.numpy())
    known = values if on == "train" else known_test
    accuracy = (float(np.mean(predicted == known))
                if known is not None and result.classes is not None else None)
    buffer = io.BytesIO()
    np.save(buffer, predicted)
    try:
        atomic_write(out, buffer.getvalue())
    except OSError as error:
        raise WidenetError(f"cannot write {out}: {error.strerror or error}; choose another "
                           "path") from None
    return FileFit(result, on, accuracy, out)


def _output_path(out: str | Path, inputs: tuple[str | Path | None, ...]) -> Path:
    """``out``, checked before anything is computed: a ``.npy`` path that is none of the
    ``inputs`` files (the predictions would replace it) and not a folder, under a folder that
    exists or can be made (no file in the way). Another file there is replaced whole."""
    out = Path(out)
    if out.suffix != ".npy":
        raise WidenetError(f"the output file must end in .npy, got {out}")
    if out.is_dir():
        raise WidenetError(f"the output path {out} is a folder; name a .npy file")
    if out.exists() and any(path is not None and Path(path).exists() and out.samefile(path)
                            for path in inputs):
        raise WidenetError(f"the output file {out} is one of the input files (kernel or "
                           "labels), which the predictions would replace; choose another path")
    nearest = next(folder for folder in out.absolute().parents if folder.exists())
    if not nearest.is_dir():
        raise WidenetError(f"cannot write {out}: {nearest} is a file; choose another path")
    return out


def _load(path: str | Path, name: str) -> np.ndarray:
    """The array in the ``.npy`` file ``path`` (not pickled objects)."""
    path = Path(path)
    try:
        values = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise WidenetError(f"the {name} file {path} does not exist") from None
    except (OSError, ValueError, MemoryError) as error:  # MemoryError: a header's huge shape
        raise WidenetError(f"cannot read the {name} file {path} as .npy ({error})") from None
    if not isinstance(values, np.ndarray):
        values.close()
        raise WidenetError(f"the {name} file {path} is an .npz archive of several arrays; "
                           "save the one array with np.save")
    return values
