"""Sweep specs: grids, random samples, seeds and labels."""

from __future__ import annotations

import pytest

from widenet.errors import WidenetError
from widenet.sweeps.spec import SweepSpec, parse_grid, parse_random


def test_the_grid_is_the_product_in_order_with_seeds_innermost() -> None:
    spec = SweepSpec(grid=parse_grid(["width=64,256", "act=abs"]), seeds=2)
    labels = [label for label, _ in spec.points()]
    assert labels == ["width=64,act=abs,seed=0", "width=64,act=abs,seed=1",
                      "width=256,act=abs,seed=0", "width=256,act=abs,seed=1"]
    assert spec.points()[3][1] == {"width": 256, "act": "abs", "seed": 1}
    assert spec.keys == ["width", "act", "seed"]


def test_random_samples_are_seeded_and_within_bounds() -> None:
    spec = SweepSpec(random=parse_random(["lr=0.01:0.1", "depth=1:4"]), samples=20)
    points = spec.points()
    assert points == spec.points()
    assert [label for label, _ in points][:2] == ["sample=0", "sample=1"]
    assert all(0.01 <= p["lr"] <= 0.1 and p["depth"] in {1, 2, 3, 4} for _, p in points)
    assert isinstance(points[0][1]["depth"], int)
    other = SweepSpec(random=spec.random, samples=20, sampling_seed=1).points()
    assert other != points


def test_no_swept_keys_is_one_base_point() -> None:
    assert SweepSpec().points() == [("base", {})]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"grid": {"lr": [1]}, "random": {"lr": (0, 1)}, "samples": 1}, "both in --grid and"),
    ({"grid": {"seed": [1]}, "seeds": 2}, "--seeds sets the key 'seed'"),
    ({"random": {"lr": (0, 1)}}, "--random needs --samples"),
    ({"samples": 3}, "--samples needs at least one --random"),
    ({"grid": {"lr": []}}, "has no values"),
    ({"grid": {"width": [8, 16, 8]}}, r"--grid width= lists the value 8 twice; give each"),
    ({"grid": {"lr": [0.1, 0.1000001]}}, r"value 0.1 twice \(0.1 and 0.1000001 print alike"),
])
def test_inconsistent_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        SweepSpec(**kwargs)


@pytest.mark.parametrize(("parse", "item", "message"), [
    (parse_grid, "width", "--grid expects key=v1,v2"),
    (parse_random, "lr=0.1", "key=low:high"),
    (parse_random, "lr=1:0", "low <= high"),
    (parse_random, "lr=a:b", "with numbers"),
])
def test_malformed_items_are_refused(parse, item: str, message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        parse([item])


@pytest.mark.parametrize(("parse", "items", "message"), [
    (parse_grid, ["points=8", "points=16"], r"--grid points= is given twice; list all its"),
    (parse_random, ["lr=0:1", "lr=1:2"], r"--random lr= is given twice; give each key one"),
])
def test_a_key_given_twice_is_refused(parse, items: list[str], message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        parse(items)


def test_grid_values_given_twice_are_refused_from_the_command_line() -> None:
    with pytest.raises(WidenetError, match="--grid points= lists the value 8 twice"):
        SweepSpec(grid=parse_grid(["points=8,8"]))
