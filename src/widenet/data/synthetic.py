"""Synthetic data sets, each a seeded function of its sizes.

Every generator draws from its own ``torch.Generator().manual_seed(seed)`` (never torch's
global state), in float64 on the CPU, and casts at the end: the same arguments give
bit-identical data, and a seed gives the same points (up to rounding) in every dtype.
Draws happen in a fixed order: first the distribution's own parameters (a teacher network,
a direction w), then all train points, then the test points, so the train split does not
depend on ``n_test``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from widenet.data.dataset import Dataset, Task
from widenet.data.transforms import sphere_normalize
from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.seeds import check_seed
from widenet.validation import finite_real, floating_dtype, nonnegative_int, positive_int

Draw = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def _generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (a non-negative integer)."""
    return torch.Generator().manual_seed(check_seed(seed))


def _sphere_draw(generator: torch.Generator, n: int, dim: int) -> torch.Tensor:
    """n float64 points uniform on the sphere ||x||^2 = dim, drawn from ``generator``."""
    return sphere_normalize(torch.randn(n, dim, generator=generator, dtype=torch.float64))


def _unit_vector(generator: torch.Generator, dim: int) -> torch.Tensor:
    """A float64 unit vector uniform on the sphere of radius 1 in R^dim."""
    return _sphere_draw(generator, 1, dim)[0] / dim**0.5


def _assemble(name: str, task: Task, draw: Draw, n: int, n_test: int,
              dtype: torch.dtype) -> Dataset:
    """Draw n train points, then n_test test points, and cast inputs (and regression targets)
    to ``dtype``; classification sets here are binary."""
    dtype = floating_dtype(dtype)
    x, y = draw(positive_int(n, "n"))
    x_test, y_test = draw(nonnegative_int(n_test, "n_test"))
    dataset = Dataset(name, task, x, y, x_test, y_test,
                      classes=2 if task == "classification" else None)
    return dataset.to(dtype=dtype)


def sphere_points(n: int, dim: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """``n`` points uniform on the sphere of radius ``sqrt(dim)``, so ``||x||^2 = dim``.

    Gaussian draws ``g ~ N(0, I_dim)`` (float64) rescaled to ``sqrt(dim) g / ||g||``, then cast.
    """
    n, dim = positive_int(n, "n"), positive_int(dim, "dim")
    return _sphere_draw(_generator(seed), n, dim).to(floating_dtype(dtype))


def sphere_regression(n: int, dim: int, *, n_test: int = 0, seed: int = 0,
                      dtype: torch.dtype = torch.float64) -> Dataset:
    """The set "sphere": x uniform on ||x||^2 = dim, targets y ~ N(0, 1) i.i.d. of shape (n, 1),
    independent of x (pure noise: a set to memorize, with nothing to generalize)."""
    dim = positive_int(dim, "dim")
    generator = _generator(seed)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = _sphere_draw(generator, count, dim)
        return x, torch.randn(count, 1, generator=generator, dtype=torch.float64)

    return _assemble("sphere", "regression", draw, n, n_test, dtype)


def _teacher(dim: int, width: int, depth: int, generator: torch.Generator) -> MLP:
    """The float64 ReLU teacher MLP(dim, [width] * depth, 1), drawn from ``generator``."""
    hidden = [positive_int(width, "width")] * nonnegative_int(depth, "depth")
    return MLP(dim, hidden, 1, activation="relu", generator=generator, dtype=torch.float64)


def teacher_network(dim: int, *, width: int = 64, depth: int = 2, seed: int = 0) -> MLP:
    """The teacher of :func:`teacher_student`: ``MLP(dim, [width] * depth, 1, "relu")`` in
    float64, NTK parametrization at the edge of chaos (sigma_w = sqrt(2), no biases),
    initialized from ``seed``. With ||x||^2 = dim its output has variance 2 over teachers
    (the NNGP diagonal sigma_w^2 ||x||^2 / dim), for every depth."""
    return _teacher(positive_int(dim, "dim"), width, depth, _generator(seed))


def teacher_student(n: int, dim: int, *, n_test: int = 0, seed: int = 0, width: int = 64,
                    depth: int = 2, noise: float = 0.0, dtype: torch.dtype = torch.float64
                    ) -> Dataset:
    """The set "teacher": x uniform on ||x||^2 = dim and y = f(x) + noise * eps of shape (n, 1),
    with f = :func:`teacher_network` (dim, width, depth, seed) and eps ~ N(0, 1) i.i.d.

    The teacher is drawn first from the seed's generator, so ``teacher_network(dim,
    width=width, depth=depth, seed=seed)`` rebuilds it exactly. ``noise`` is the standard
    deviation of the label noise, on train and test alike (eps is drawn even when noise is
    0, so changing ``noise`` changes only the targets).
    """
    dim = positive_int(dim, "dim")
    noise = finite_real(noise, "noise", minimum=0.0)
    generator = _generator(seed)
    teacher = _teacher(dim, width, depth, generator)

    @torch.no_grad()
    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = _sphere_draw(generator, count, dim)
        eps = torch.randn(count, 1, generator=generator, dtype=torch.float64)
        return x, teacher(x) + noise * eps

    return _assemble("teacher", "regression", draw, n, n_test, dtype)


def random_direction(dim: int, *, seed: int = 0) -> torch.Tensor:
    """The float64 unit vector w that :func:`separable` and :func:`noisy_clusters` draw first
    from ``seed``: uniform on the unit sphere of R^dim."""
    return _unit_vector(_generator(seed), positive_int(dim, "dim"))


def separable(n: int, dim: int, *, n_test: int = 0, seed: int = 0, margin: float = 0.5,
              dtype: torch.dtype = torch.float64) -> Dataset:
    """The set "separable": binary labels y = 1[<w, x> > 0] with |<w, x>| >= margin and
    ||x||^2 = dim, for w = :func:`random_direction` (dim, seed).

    A point u uniform on ||u||^2 = dim with t = <w, u> is moved to the point x with
    <w, x> = sign(t) (margin + (1 - margin / sqrt(dim)) |t|) and the part orthogonal to w
    rescaled so that ||x||^2 = dim: the labels are those of u (balanced in expectation) and
    every point is at least ``margin`` from the separating hyperplane <w, x> = 0.
    ``margin`` must lie in [0, sqrt(dim)).
    """
    dim = positive_int(dim, "dim")
    margin = finite_real(margin, "margin", minimum=0.0)
    if margin >= dim**0.5:
        raise WidenetError(f"margin must be below sqrt(dim) = {dim**0.5:.6g}, the largest "
                           f"possible |<w, x>| on ||x||^2 = dim; got {margin!r}")
    generator = _generator(seed)
    w = _unit_vector(generator, dim)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        u = _sphere_draw(generator, count, dim)
        t = u @ w
        positive = t >= 0
        magnitude = margin + (1 - margin / dim**0.5) * t.abs()
        along = torch.where(positive, magnitude, -magnitude)
        across = u - t[:, None] * w
        length = torch.linalg.vector_norm(across, dim=1, keepdim=True)
        room = (dim - along**2).clamp_min(0).sqrt()[:, None]
        across = across * (room / torch.where(length > 0, length, torch.ones_like(length)))
        return along[:, None] * w + across, positive.long()

    return _assemble("separable", "classification", draw, n, n_test, dtype)


def noisy_clusters(n: int, dim: int, *, n_test: int = 0, seed: int = 0, noise: float = 0.0,
                   dtype: torch.dtype = torch.float64) -> Dataset:
    """The set "noisy": two overlapping Gaussian clusters, x = (2c - 1) w + g with the class
    c ~ Bernoulli(1/2), g ~ N(0, I_dim) and w = :func:`random_direction` (dim, seed).

    The label is c, flipped independently with probability ``noise`` in [0, 1] (on train and
    test alike). The Bayes classifier is 1[<w, x> > 0], with error
    noise + (1 - 2 noise) Phi(-1) (Phi(-1) = 0.1587).
    """
    dim = positive_int(dim, "dim")
    noise = finite_real(noise, "noise", minimum=0.0)
    if noise > 1:
        raise WidenetError(f"noise is the label-flip probability of 'noisy' and must lie in "
                           f"[0, 1], got {noise!r}")
    generator = _generator(seed)
    w = _unit_vector(generator, dim)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.randint(0, 2, (count,), generator=generator)
        x = (2 * c - 1)[:, None] * w + torch.randn(count, dim, generator=generator,
                                                     dtype=torch.float64)
        flip = torch.rand(count, generator=generator, dtype=torch.float64) < noise
        return x, torch.where(flip, 1 - c, c)

    return _assemble("noisy", "classification", draw, n, n_test, dtype)


def two_spirals(n: int, *, n_test: int = 0, seed: int = 0, noise: float = 0.0,
                dtype: torch.dtype = torch.float64) -> Dataset:
    """The set "spirals": two interleaved spirals in the plane (dim = 2).

    With class c ~ Bernoulli(1/2) and t ~ U(0, 1): x = sqrt(2) t (cos a, sin a) + noise * g,
    a = 3 pi t + pi c (one and a half turns; class 1 is class 0 turned by pi), g ~ N(0, I_2).
    So without jitter the spirals fill the disc ||x||^2 <= 2 = dim; ``noise`` is the
    standard deviation of the Gaussian jitter.
    """
    noise = finite_real(noise, "noise", minimum=0.0)
    generator = _generator(seed)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.randint(0, 2, (count,), generator=generator)
        t = torch.rand(count, generator=generator, dtype=torch.float64)
        angle = 3 * math.pi * t + math.pi * c
        x = math.sqrt(2) * t[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
        return x + noise * torch.randn(count, 2, generator=generator, dtype=torch.float64), c

    return _assemble("spirals", "classification", draw, n, n_test, dtype)
