"""Config layering and validation: defaults < quick < YAML < --set, with named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.studies.toy_study import ToyConfig
from widenet.errors import WidenetError
from widenet.studies.config import build_config, parse_overrides, parse_value


def test_sources_apply_in_order(tmp_path: Path) -> None:
    assert build_config(ToyConfig).values == [1, 2, 3, 4]
    assert build_config(ToyConfig, quick=True).values == [1, 2]
    file = tmp_path / "c.yaml"
    file.write_text("values: [7]\nseed: 3\n")
    from_file = build_config(ToyConfig, quick=True, file=file)
    assert (from_file.values, from_file.seed) == ([7], 3)
    final = build_config(ToyConfig, quick=True, file=file, overrides=["values=8,9"])
    assert (final.values, final.seed) == ([8, 9], 3)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert build_config(ToyConfig, file=empty).seed == 0


def test_errors_name_the_key_and_its_source(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("valuez: [1]\n")
    with pytest.raises(WidenetError, match=r"unknown config key 'valuez' \(from config file"):
        build_config(ToyConfig, file=file)
    with pytest.raises(WidenetError, match=r"config key 'seed' \(from --set\).*got 'x'"):
        build_config(ToyConfig, overrides=["seed=x"])
    with pytest.raises(WidenetError, match="the keys of this study are: crash_at, diverge_at"):
        build_config(ToyConfig, overrides=["nope=1"])


@pytest.mark.parametrize(("text", "value"), [
    ("64,128", [64, 128]), ("[1,2],[3]", [[1, 2], [3]]), ("[1, 2]", [1, 2]), ("abs", "abs"),
    ("1e-3", 1e-3), ("true", True), ("null", None), ('"a,b"', "a,b"), ("", ""),
])
def test_values_parse_as_yaml_or_comma_lists(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_malformed_overrides_are_refused() -> None:
    with pytest.raises(WidenetError, match="--set expects key=value"):
        parse_overrides(["=3"])
    assert parse_overrides([" seed = 2 "]) == {"seed": 2}
