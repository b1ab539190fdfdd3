"""Training losses, each a mean over the n points of a batch.

    mse:          (1/(2n)) sum_i ||f(x_i) - y_i||^2        (real targets; docs/theory.md section 5)
    cross_entropy: (1/n) sum_i -log softmax(f(x_i))_{y_i}   (class labels 0..k-1)
    logistic:     (1/n) sum_i log(1 + exp(-y_i f(x_i)))     (y in {-1, +1}, one output)
    exponential:  (1/n) sum_i exp(-y_i f(x_i))              (y in {-1, +1}, one output)

Classification losses also have an accuracy (:func:`accuracy_for`): cross-entropy (widenet's,
``torch.nn.functional.cross_entropy`` or a ``torch.nn.CrossEntropyLoss``) the argmax accuracy
(1/n) #{i: argmax_k f(x_i)_k = y_i}; logistic and exponential the sign accuracy
(1/n) #{i: y_i f(x_i) > 0}.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from widenet.errors import WidenetError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/(2n)) sum_i ||f(x_i) - y_i||^2 for real targets; a target of shape (n,) is read as
    (n, 1). Integer targets are refused: regressing on class indices would treat class 2 as
    twice class 1."""
    if not target.is_floating_point():
        raise WidenetError(f"mse targets hold integers (dtype {target.dtype}); "
                           f"{_integer_targets_hint(output, target)}")
    if target.numel() != output.numel():
        raise WidenetError(f"mse targets have {target.numel()} entries but the outputs have "
                           f"shape {tuple(output.shape)}; give one target per output")
    target = target.reshape(output.shape)
    return 0.5 * (output - target).square().sum() / output.shape[0]


def _integer_targets_hint(output: torch.Tensor, target: torch.Tensor) -> str:
    """How to give mse an integer ``target`` for ``output``: one integer per output (one-hot
    rows, say) is cast; class labels for one output go to logistic (two classes) or to
    cross_entropy on one output per class; class labels for k outputs are one-hot encoded."""
    k = output.shape[-1] if output.ndim > 1 else 1
    if k == 1:
        return ("for two classes use loss='logistic' with labels -1/+1 (2 * y - 1 maps 0/1 "
                "labels), for more one output per class and loss='cross_entropy'; to regress on "
                "the integers, y.double()")
    if target.numel() == output.numel():
        return ("cast them with y.double() (torch.nn.functional.one_hot returns integers), or "
                "train on the class labels y.argmax(1) with loss='cross_entropy'")
    return (f"for class labels use one-hot targets, torch.nn.functional.one_hot(y, {k})"
            ".double(), or loss='cross_entropy'")


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i -log softmax(f(x_i))_{y_i}, for class labels y (n,) in 0..k-1 (integers, or
    whole numbers stored as floats) and outputs (n, k). The labels are checked on every call
    (one device sync); ``train`` checks its targets once (:func:`check_targets`) and steps with
    :func:`unchecked` (cross_entropy)."""
    _class_labels(target, output.shape)
    return _cross_entropy(output, target)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`cross_entropy` of labels already checked by :func:`_class_labels`."""
    return F.cross_entropy(output, target.long())


def _class_labels(target: torch.Tensor, output_shape: tuple[int, ...]) -> None:
    """Raise unless ``target`` is (n,) class labels 0..k-1 for outputs of shape (n, k)."""
    if len(output_shape) != 2:
        raise WidenetError(f"cross_entropy needs outputs of shape (n, k), one score per class, "
                           f"but the model's are {tuple(output_shape)}; give the model k "
                           "outputs (for two classes and one output, loss='logistic')")
    points, classes = output_shape
    if target.shape != (points,):
        hint = "; for one-hot targets pass y.argmax(1)" if target.shape == output_shape else ""
        raise WidenetError(f"cross_entropy takes one class label per point, shape ({points},), "
                           f"got {tuple(target.shape)}{hint}")
    labels = target.long()
    if bool(((labels != target) | (labels < 0) | (labels >= classes)).any()):
        raise WidenetError(f"cross_entropy labels must be the class indices 0..{classes - 1} "
                           f"of the {classes} outputs, got values from {target.min().item():g} "
                           f"to {target.max().item():g}")


def _signed_labels(target: torch.Tensor, output_shape: tuple[int, ...]) -> None:
    """Raise unless every label is -1 or +1 (the outputs' shape is checked with the margins)."""
    if not bool((target.abs() == 1).all()):
        raise WidenetError("logistic and exponential losses take labels -1 and +1; map 0/1 "
                           "labels with 2 * y - 1")


def _signed_margins(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """y_i f(x_i) for one output and labels y in {-1, +1}."""
    if output.ndim == 2 and output.shape[1] != 1:
        raise WidenetError(f"logistic and exponential losses need one output, got "
                           f"{output.shape[1]}; use cross_entropy for several classes")
    return output.reshape(-1) * target.reshape(-1)


def logistic(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i log(1 + exp(-y_i f(x_i))), computed as softplus(-y f); the labels are
    checked on every call, like :func:`cross_entropy`'s."""
    _signed_labels(target, output.shape)
    return _logistic(output, target)


def _logistic(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`logistic` of labels already checked by :func:`_signed_labels`."""
    return F.softplus(-_signed_margins(output, target)).mean()


def exponential(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i exp(-y_i f(x_i)); the labels are checked on every call, like
    :func:`cross_entropy`'s."""
    _signed_labels(target, output.shape)
    return _exponential(output, target)


def _exponential(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`exponential` of labels already checked by :func:`_signed_labels`."""
    return torch.exp(-_signed_margins(output, target)).mean()


_LABEL_CHECKS: tuple[tuple[Loss, Callable[[torch.Tensor, tuple[int, ...]], None], Loss], ...] = (
    (cross_entropy, _class_labels, _cross_entropy), (logistic, _signed_labels, _logistic),
    (exponential, _signed_labels, _exponential))
"""Each loss that checks its labels on every call, that check, and the loss without it."""


def check_targets(loss: Loss, target: torch.Tensor, output_shape: tuple[int, ...]) -> None:
    """Raise unless ``target`` holds labels that ``loss`` takes, for outputs of shape
    ``output_shape``: class labels for cross_entropy, -1/+1 for logistic and exponential (one
    pass over the values, one device sync). Other losses take any targets here."""
    for checked, check, _ in _LABEL_CHECKS:
        if loss is checked:
            check(target, tuple(output_shape))


def unchecked(loss: Loss) -> Loss:
    """``loss`` without its per-call check of the labels, for targets that passed
    :func:`check_targets`: the check costs a device sync, once per training step. Other losses
    are returned as they are."""
    return next((fast for checked, _, fast in _LABEL_CHECKS if loss is checked), loss)


LOSSES: dict[str, Loss] = {"mse": mse, "cross_entropy": cross_entropy, "logistic": logistic,
                           "exponential": exponential}


def argmax_accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    """(1/n) #{i: argmax_k f(x_i)_k = y_i}; targets shaped like the outputs (one-hot or class
    probabilities) stand for their argmax."""
    labels = target.argmax(dim=1) if target.shape == output.shape and target.ndim == 2 \
        else target.reshape(-1)
    return float((output.argmax(dim=1) == labels.to(output.device)).double().mean())


def sign_accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    """(1/n) #{i: y_i f(x_i) > 0} for labels y in {-1, +1} and one output."""
    _signed_labels(target, output.shape)
    return float((_signed_margins(output, target.to(output)) > 0).double().mean())


Accuracy = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy_for(loss: str | Loss) -> Accuracy | None:
    """The accuracy that goes with a classification loss (see the module docstring), or None
    for mse and other losses."""
    loss = get_loss(loss)
    if loss in (cross_entropy, F.cross_entropy) or isinstance(loss, torch.nn.CrossEntropyLoss):
        return argmax_accuracy
    if loss in (logistic, exponential):
        return sign_accuracy
    return None


def get_loss(spec: str | Loss) -> Loss:
    """A loss by name (mse, cross_entropy, logistic, exponential) or any callable
    loss(output, target) -> scalar."""
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec in LOSSES:
        return LOSSES[spec]
    raise WidenetError(f"unknown loss {spec!r}; choose one of {', '.join(LOSSES)} or pass a "
                       "callable loss(output, target) -> scalar")
