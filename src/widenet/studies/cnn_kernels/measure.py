"""The tasks of the ``cnn-kernels`` study: (a) empirical NTKs of CNNs against the CNTK, one
task per (readout, m); (b) kernel regression with the limit and trained CNNs, one task per
readout."""

from __future__ import annotations

import zlib
from functools import partial

import pandas as pd
import torch
from torch import nn

from widenet import nn as wnn
from widenet.data import Dataset, load_dataset
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.infinite import infinite_kernels
from widenet.seeds import derived_seed
from widenet.studies.cnn_kernels.config import CnnKernelsConfig, Readout
from widenet.studies.common.base import StudyContext, Tables, Task


def cnn(readout: Readout, depth: int, m: int, outputs: int, seed: int,
        device: torch.device) -> nn.Module:
    """``depth`` 3x3 "same" ReLU convolutions with m channels on 1x8x8 digits, then the
    readout (flatten, or global average pooling) and a dense layer to ``outputs``; NTK
    parametrization, no biases, edge-of-chaos stds (sigma_w^2 = 2), float64
    (:func:`widenet.nn.cnn`), drawn from a generator on ``device`` seeded with ``seed``."""
    net = wnn.cnn(1, (8, 8), m, depth, readout=readout, outputs=outputs, device=device,
                  dtype=torch.float64)
    net.reset_parameters(generator=torch.Generator(device=device).manual_seed(seed))
    return net


def digits(config: CnnKernelsConfig, device: torch.device) -> Dataset:
    """The digits 0..classes-1 as (n, 1, 8, 8) images, each scaled to ||x||^2 = 64."""
    return load_dataset("digits-images", n=config.train_points, n_test=config.test_points,
                        classes=config.classes, normalize="sphere",
                        seed=config.seed).to(device)


def task_seed(config: CnnKernelsConfig, key: str, replicate: int) -> int:
    """The weight seed of network ``replicate`` of task ``key`` (config seed, key, replicate)."""
    return derived_seed(config.seed, zlib.crc32(key.encode()), replicate)


def concentration_task(config: CnnKernelsConfig, readout: Readout, m: int,
                       context: StudyContext) -> Tables:
    """Relative Frobenius error ||K_m - Theta||_F / ||Theta||_F of ``seeds`` CNNs of width m."""
    key = _key("concentration", readout, m)
    x = digits(config, context.device).x[:config.kernel_points]
    theta = infinite_kernels(cnn(readout, config.depth, 1, 1, 0, context.device), x).ntk
    rows = []
    for replicate in range(config.seeds):
        net = cnn(readout, config.depth, m, 1, task_seed(config, key, replicate), context.device)
        error = torch.linalg.matrix_norm(empirical_ntk(net, x).ntk - theta)
        rows.append({"readout": readout, "m": m, "seed": replicate,
                     "error": float(error / torch.linalg.matrix_norm(theta))})
    return {"concentration": pd.DataFrame(rows)}


def _accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(dim=1) == labels).double().mean())


def ntk_prediction(theta: torch.Tensor, cross: torch.Tensor, targets: torch.Tensor,
                   lr: float, steps: int) -> torch.Tensor:
    """The test outputs of the linearized, centered (f_0 = 0) network after ``steps`` of
    gradient descent with rate ``lr`` on (1/2) ||f(X) - Y||^2:

        cross Theta^-1 (I - (I - lr Theta)^steps) Y = cross V diag(g) V^T Y,
        g(lambda) = lr sum_{j < steps} (1 - lr lambda)^j = (1 - (1 - lr lambda)^steps) / lambda,

    in Theta's eigenbasis (Theta = V diag(lambda) V^T). g is evaluated as
    -lr expm1(steps log1p(-x)) / x with x = lr lambda when |x| < 1/2, so that round-off-sized
    eigenvalues of either sign give their limit lr * steps instead of 0/0."""
    values, vectors = torch.linalg.eigh(theta)
    x = lr * values
    safe = torch.where(x == 0, torch.ones_like(x), x)
    small = -torch.expm1(steps * torch.log1p(-safe.clamp(-0.5, 0.5))) / safe
    large = (1 - (1 - safe) ** steps) / safe
    ratio = torch.where(x == 0, torch.full_like(x, float(steps)),
                        torch.where(x.abs() < 0.5, small, large))
    return cross @ (vectors @ (lr * ratio[:, None] * (vectors.T @ targets)))


def _solve(kernel: torch.Tensor, cross: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Kernel regression's test outputs cross kernel^-1 Y (least squares, so a singular
    kernel gives the minimum-norm interpolant)."""
    return cross @ torch.linalg.lstsq(kernel, targets).solution


def regression_task(config: CnnKernelsConfig, readout: Readout,
                    context: StudyContext) -> Tables:
    """The NNGP and NTK regression accuracies of the limit, and CNNs of every train width
    trained by full-batch gradient descent, compared with the NTK's prediction."""
    data = digits(config, context.device)
    targets = nn.functional.one_hot(data.y, config.classes).double()
    limit_net = cnn(readout, config.depth, 1, 1, 0, context.device)
    train = infinite_kernels(limit_net, data.x)
    cross = infinite_kernels(limit_net, data.x_test, data.x)
    lr = config.lr_fraction * 2 / float(torch.linalg.eigvalsh(train.ntk)[-1])
    predicted = ntk_prediction(train.ntk, cross.ntk, targets, lr, config.steps)
    limits = {"nngp": _accuracy(_solve(train.nngp, cross.nngp, targets), data.y_test),
              "ntk": _accuracy(_solve(train.ntk, cross.ntk, targets), data.y_test),
              f"ntk after {config.steps} steps": _accuracy(predicted, data.y_test)}
    kernel_rows = [{"readout": readout, "kernel": name, "accuracy": value}
                   for name, value in limits.items()]
    rows = []
    for m in config.train_widths:
        key = _key("regression", readout, m)
        for replicate in range(config.train_seeds):
            net = cnn(readout, config.depth, m, config.classes,
                      task_seed(config, key, replicate), context.device)
            outputs = _train(net, data, targets, lr, config.steps)
            distance = torch.linalg.matrix_norm(outputs - predicted)
            rows.append({"readout": readout, "m": m, "seed": replicate,
                         "accuracy": _accuracy(outputs, data.y_test),
                         "distance": float(distance / torch.linalg.matrix_norm(predicted))})
    return {"kernel_accuracy": pd.DataFrame(kernel_rows), "trained": pd.DataFrame(rows)}


def _train(net: nn.Module, data: Dataset, targets: torch.Tensor, lr: float,
           steps: int) -> torch.Tensor:
    """Full-batch gradient descent on (1/2) ||f(X) - f_0(X) - Y||^2 (the network centered at
    its initial outputs f_0); returns the centered test outputs f(X*) - f_0(X*)."""
    with torch.no_grad():
        start, start_test = net(data.x), net(data.x_test)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.5 * (net(data.x) - start - targets).pow(2).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return net(data.x_test) - start_test


def _key(part: str, readout: str, m: int) -> str:
    return f"{part}/{readout}/m={m}"


def plan(config: CnnKernelsConfig) -> list[Task]:
    """Part (a): one task per (readout, m); part (b): one task per readout."""
    tasks = [Task(_key("concentration", readout, m),
                  partial(concentration_task, config, readout, m))
             for readout in config.readouts for m in config.widths]
    tasks += [Task(f"regression/{readout}", partial(regression_task, config, readout))
              for readout in config.readouts]
    return tasks
