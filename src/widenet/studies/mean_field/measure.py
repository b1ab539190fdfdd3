"""The measurements of the mean-field study (docs/theory.md sections 1 and 6), one task at a time.

The student is a two-layer ReLU net written as particles w_i = (a_i, b_i, c_i), all stored
N(0, 1) (:func:`two_layer_net`):

    f(x) = (sigma / s_m) sum_i c_i relu(sigma (a_i . x + b_i) / sqrt(d + 1)),  sigma = sqrt(2),

with s_m = m (mean field) or sqrt(m) (NTK). ``widenet.MLP`` gives a bias to every layer or to
none, and its hidden biases are scaled by ``bias_std`` rather than like the input weights; the
formula has a bias in every particle and no output bias (a width-independent parameter outside
the particle measure). So the net is the bias-free ``MLP(d + 1, [m], 1)`` fed x' = (x, 1): the
last input weight of neuron i is its bias b_i (:func:`with_bias_coordinate`), scaled, drawn and
trained like a_i, and there is no output bias.
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pandas as pd
import torch

from widenet.data.synthetic import teacher_network, teacher_student
from widenet.dynamics.losses import mse
from widenet.dynamics.train import train
from widenet.models import MLP
from widenet.parametrizations import NTK, MeanFieldParametrization, Parametrization
from widenet.seeds import derived_seed
from widenet.studies.common.base import StudyContext, Tables
from widenet.studies.mean_field.config import MeanFieldConfig

SCALINGS: dict[str, Parametrization] = {"mean-field": MeanFieldParametrization(base_width=1),
                                        "ntk": NTK}
"""Output scaling 1/m with every learning rate times m, and 1/sqrt(m) with learning rates
unscaled (docs/theory.md section 1, abc table: c = -1 and c = 0)."""
STAGES = ("initial", "trained")
_DATA, _NET, _PROJECTIONS = 11, 12, 13  # stream tags of derived_seed


def data_seed(config: MeanFieldConfig, replicate: int) -> int:
    """The seed of replicate ``replicate``'s teacher and data set."""
    return derived_seed(config.seed, _DATA, replicate)


def with_bias_coordinate(x: torch.Tensor) -> torch.Tensor:
    """x' = (x, 1): inputs with a constant last coordinate, whose weight is each neuron's bias."""
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def two_layer_net(scaling: str, dim: int, width: int, seed: int,
                  device: torch.device | str | None = None) -> MLP:
    """The bias-free ReLU ``MLP(dim + 1, [width], 1)`` at the edge of chaos (sigma_w^2 = 2) in
    the parametrization ``SCALINGS[scaling]``, float64, drawn from ``seed``: the module
    docstring's f on inputs :func:`with_bias_coordinate` (x)."""
    return MLP(dim + 1, [width], 1, "relu", parametrization=SCALINGS[scaling], seed=seed,
               device=device, dtype=torch.float64)


def particles(net: MLP) -> torch.Tensor:
    """The (m, d + 2) matrix of particles w_i = (a_i, b_i, c_i): row i of the stored input
    weight (a_i, then the bias b_i) and the stored output weight c_i, detached copies."""
    first, second = net.layers
    return torch.cat([first.weight, second.weight.T], dim=1).detach().clone()


def neuron_movement(initial: torch.Tensor, final: torch.Tensor) -> float:
    """(1/m) sum_i ||w_i(T) - w_i(0)||, the mean Euclidean distance travelled by a particle in
    the coordinates where particles are O(1) (the stored N(0, 1) variables)."""
    return float((final - initial).norm(dim=1).mean())


def sliced_wasserstein(source: torch.Tensor, target: torch.Tensor, projections: np.ndarray
                       ) -> float:
    """The sliced 2-Wasserstein distance between the uniform empirical measures on the rows of
    ``source`` and ``target``: SW_2 = (mean_k W_2^2(theta_k # mu, theta_k # nu))^(1/2) over the
    unit directions theta_k, the columns of ``projections`` (POT's
    ``ot.sliced_wasserstein_distance``; each 1-D W_2 is computed exactly from quantiles)."""
    return float(ot.sliced_wasserstein_distance(source.cpu().numpy(), target.cpu().numpy(),
                                                projections=projections))


def random_projections(dim: int, count: int, seed: int) -> np.ndarray:
    """``count`` directions uniform on the unit sphere of R^dim, as the columns of a
    (dim, count) matrix, from a seeded numpy generator."""
    draws = np.random.default_rng(seed).standard_normal((dim, count))
    return draws / np.linalg.norm(draws, axis=0, keepdims=True)


def compute_task(config: MeanFieldConfig, scaling: str, replicate: int, context: StudyContext
                 ) -> Tables:
    """Train one net per width in ``config.widths`` with ``scaling`` on replicate
    ``replicate``'s data; tables ``runs`` (one row per width), ``transport`` (per width below
    the widest and stage: the sliced distance between its particles and the widest width's)
    and ``particles`` (every particle of width ``config.particle_width``, both stages)."""
    dataset = teacher_student(config.n, config.dim, n_test=config.n_test,
                              seed=data_seed(config, replicate), width=config.teacher_width,
                              depth=1, noise=config.noise).to(device=context.device)
    x, x_test = with_bias_coordinate(dataset.x), with_bias_coordinate(dataset.x_test)
    parameters = {"scaling": scaling, "seed": replicate}
    zero_loss = float(mse(torch.zeros_like(dataset.y_test), dataset.y_test))
    rows, clouds = [], {}
    for width in config.widths:
        net = two_layer_net(scaling, config.dim, width,
                            derived_seed(config.seed, _NET, replicate, width), context.device)
        row, clouds[width] = _train_one(net, x, dataset.y, (x_test, dataset.y_test), config)
        rows.append({**parameters, "width": width, "zero_test_loss": zero_loss, **row})
    widest = config.widths[-1]
    projections = random_projections(config.dim + 2, config.projections,
                                     derived_seed(config.seed, _PROJECTIONS, replicate))
    transport = [{**parameters, "width": width, "reference_width": widest, "stage": stage,
                  "distance": _distance(clouds[width], clouds[widest], index, projections)}
                 for width in config.widths[:-1] for index, stage in enumerate(STAGES)]
    return {"runs": pd.DataFrame(rows), "transport": pd.DataFrame(transport),
            "particles": particle_table(clouds[config.particle_width], parameters,
                                        config.particle_width)}


def _train_one(net: MLP, x: torch.Tensor, y: torch.Tensor,
               test_data: tuple[torch.Tensor, torch.Tensor], config: MeanFieldConfig
               ) -> tuple[dict[str, object], tuple[torch.Tensor, torch.Tensor | None]]:
    """GD on (1/(2n)) ||f - y||^2 for ``config.steps`` steps at base rate ``config.lr``; the
    row of measurements (NaN ones and status "diverged" when the loss blew up) and the
    particles before and after (None after a divergence)."""
    initial = particles(net)
    with torch.no_grad():
        initial_test = float(mse(net(test_data[0]), test_data[1]))
    result = train(net, x, y, lr=config.lr, steps=config.steps, test_data=test_data,
                   log_every=max(config.steps, 1), progress=False)
    row: dict[str, object] = {"lr": config.lr, "status": result.status, "steps": result.steps,
                              "initial_test_loss": initial_test}
    if result.status != "completed":
        return row | dict.fromkeys(("train_loss", "test_loss", "movement"), math.nan), (
            initial, None)
    final = particles(net)
    last = result.history.iloc[-1]
    return row | {"train_loss": float(last["loss"]), "test_loss": float(last["test_loss"]),
                  "movement": neuron_movement(initial, final)}, (initial, final)


def _distance(cloud: tuple[torch.Tensor, torch.Tensor | None],
              widest: tuple[torch.Tensor, torch.Tensor | None], stage: int,
              projections: np.ndarray) -> float:
    """The sliced distance between two widths' particles at one stage (0 initial, 1 trained);
    NaN when either training diverged."""
    if cloud[stage] is None or widest[stage] is None:
        return math.nan
    return sliced_wasserstein(cloud[stage], widest[stage], projections)


def particle_table(cloud: tuple[torch.Tensor, torch.Tensor | None], parameters: dict,
                   width: int) -> pd.DataFrame:
    """One row per particle and stage: ``angle`` = atan2(a_i2, a_i1) in degrees (the direction
    of the input weight in the plane of the first two input coordinates), ``norm_a`` =
    ||a_i||, ``bias`` = b_i and ``c`` = c_i (stages whose training diverged are left out)."""
    frames = []
    for stage, values in zip(STAGES, cloud, strict=True):
        if values is None:
            continue
        points = values.cpu().numpy()
        frames.append(pd.DataFrame({
            **parameters, "width": width, "stage": stage, "neuron": np.arange(len(points)),
            "angle": np.degrees(np.arctan2(points[:, 1], points[:, 0])),
            "norm_a": np.linalg.norm(points[:, :-2], axis=1), "bias": points[:, -2],
            "c": points[:, -1]}))
    return pd.concat(frames, ignore_index=True)


def teacher_angles(config: MeanFieldConfig, replicate: int) -> np.ndarray:
    """The directions atan2(v_j2, v_j1), in degrees, of the teacher's input weights v_j (the
    teacher of replicate ``replicate``: a bias-free two-layer ReLU net of width
    ``config.teacher_width``)."""
    teacher = teacher_network(config.dim, width=config.teacher_width, depth=1,
                              seed=data_seed(config, replicate))
    weight = teacher.layers[0].weight.detach().numpy()
    return np.degrees(np.arctan2(weight[:, 1], weight[:, 0]))
