"""What a sweep covers: a grid, random samples and seeds, expanded into labelled points.

A point is a dict of config overrides on top of the sweep's base values. The grid is the
Cartesian product of its keys' values (in the order given); each random sample draws every
random key uniformly from ``[low, high]`` (integers when both bounds are integers), with the
sweep's own seed; ``seeds`` repeats every point with ``seed = 0 .. seeds - 1``.
:func:`plan_sweep` validates every point's whole config against the study's config type (which
imports only the study's config module, never torch: a ``--dry-run`` stays fast).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from widenet.errors import WidenetError
from widenet.studies import get_study
from widenet.studies.common.config import cut, parse_value, quote, validate_config

MAX_POINTS = 100_000
"""The most points of one sweep (grid values x samples x seeds); more is a typo."""


@dataclass(frozen=True)
class SweepSpec:
    """The swept keys: ``grid`` key -> values, ``random`` key -> (low, high), ``samples``
    random draws (seeded by ``sampling_seed``), ``seeds`` repeats (0: leave the seed alone)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: dict[str, tuple[float, float]] = field(default_factory=dict)
    samples: int = 0
    seeds: int = 0
    sampling_seed: int = 0

    def __post_init__(self) -> None:
        overlap = set(self.grid) & set(self.random)
        if overlap:
            raise WidenetError(f"key {sorted(overlap)[0]!r} is both in --grid and --random; "
                               "sweep it one way")
        if self.seeds and ("seed" in self.grid or "seed" in self.random):
            raise WidenetError("--seeds sets the key 'seed'; do not also sweep it with --grid "
                               "or --random")
        for key, values in self.grid.items():
            if not values:
                raise WidenetError(f"--grid {key}= has no values")
            _check_distinct(key, values)
        if self.random and self.samples < 1:
            raise WidenetError("--random needs --samples N (N >= 1)")
        if self.samples and not self.random:
            raise WidenetError("--samples needs at least one --random key=low:high")
        if self.seeds < 0 or self.samples < 0:
            raise WidenetError("--seeds and --samples must be >= 0")
        count = math.prod(len(values) for values in self.grid.values())
        count *= max(self.samples, 1) * max(self.seeds, 1)
        if count > MAX_POINTS:
            raise WidenetError(f"the sweep has {count:,} points, more than {MAX_POINTS:,}; "
                               "use fewer --grid values, --samples or --seeds")

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-ready data (stored with the sweep)."""
        return {"grid": self.grid, "random": {k: list(v) for k, v in self.random.items()},
                "samples": self.samples, "seeds": self.seeds,
                "sampling_seed": self.sampling_seed}

    @property
    def keys(self) -> list[str]:
        """The swept keys, in the order of the points' labels."""
        return [*self.grid, *self.random, *(["seed"] if self.seeds else [])]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """Every point as (label, overrides), grid-major, then samples, then seeds.

        Labels read ``width=64,sample=2,seed=1`` (``base`` for a sweep of one point); the
        random keys' values stay in the overrides, the label names the sample.
        """
        grid = [dict(zip(self.grid, values, strict=True))
                for values in itertools.product(*self.grid.values())]
        rng = random.Random(self.sampling_seed)
        draws = [({"sample": i}, {key: _draw(rng, low, high)
                                  for key, (low, high) in self.random.items()})
                 for i in range(self.samples)] or [({}, {})]
        seeds = [{"seed": seed} for seed in range(self.seeds)] or [{}]
        return [(_label({**g, **named, **s}), {**g, **drawn, **s})
                for g in grid for named, drawn in draws for s in seeds]


def _check_distinct(key: str, values: list[Any]) -> None:
    """Refuse two values of a grid key that would be the same point (the same label)."""
    seen: dict[str, Any] = {}
    for value in values:
        text = _text(value)
        if text in seen:
            alike = "" if seen[text] == value else (f" ({seen[text]!r} and {value!r} print "
                                                    "alike to 6 significant digits)")
            raise WidenetError(f"--grid {key}= lists the value {text} twice{alike}; give "
                               "each value once")
        seen[text] = value


def _label(values: dict[str, Any]) -> str:
    return ",".join(f"{key}={_text(value)}" for key, value in values.items()) or "base"


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["width=64,256", "depth=2"]`` -> ``{"width": [64, 256], "depth": [2]}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, value = _split(item, "--grid", "key=v1,v2,...")
        if key in grid:
            raise WidenetError(f"--grid {key}= is given twice; list all its values in one "
                               f"--grid {key}=v1,v2,...")
        parsed = parse_value(value, f"--grid {quote(key)}")
        grid[key] = parsed if isinstance(parsed, list) else [parsed]
    return grid


def parse_random(items: list[str] | tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """``["lr=0.01:0.1"]`` -> ``{"lr": (0.01, 0.1)}`` (bounds as numbers, low <= high)."""
    ranges: dict[str, tuple[float, float]] = {}
    for item in items:
        key, value = _split(item, "--random", "key=low:high")
        if key in ranges:
            raise WidenetError(f"--random {key}= is given twice; give each key one range "
                               "low:high")
        low_text, colon, high_text = value.partition(":")
        low, high = parse_value(low_text.strip()), parse_value(high_text.strip())
        numeric = all(isinstance(b, int | float) and not isinstance(b, bool) for b in (low, high))
        if not colon or not numeric or low > high:
            raise WidenetError(f"--random {item!r}: write key=low:high with numbers low <= high")
        ranges[key] = (low, high)
    return ranges


def _split(item: str, flag: str, form: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise WidenetError(f"{flag} expects {form}, got {item!r}")
    return key.strip(), value.strip()


def _draw(rng: random.Random, low: float, high: float) -> float | int:
    if isinstance(low, int) and isinstance(high, int):
        return rng.randint(low, high)
    return rng.uniform(low, high)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def plan_sweep(study: str, spec: SweepSpec,
               base: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every point of ``spec`` as (label, full validated config values): the study's defaults
    < ``base`` < the point's values. Raises, naming the point, if any config is invalid."""
    schema = get_study(study).config
    return [(label, _validated(schema, {**(base or {}), **overrides}, label))
            for label, overrides in spec.points()]


def _validated(schema: Any, values: dict[str, Any], label: str) -> dict[str, Any]:
    try:
        return validate_config(schema, values).model_dump(mode="json")
    except WidenetError as error:
        raise WidenetError(f"sweep point {cut(label)}: {error}") from None
