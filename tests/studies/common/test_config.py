"""Config layering and validation: defaults < quick < YAML < --set, with named errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import field_validator, model_validator

from tests.studies.toy_study import ToyConfig
from widenet.errors import WidenetError
from widenet.studies import get_study
from widenet.studies.common.config import (
    build_config,
    parse_overrides,
    parse_value,
    read_config_file,
    validate_config,
)


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


@pytest.mark.parametrize(("text", "message"), [
    ("seed: 2\nseed: 3\n", r"c\.yaml: the key 'seed' is given on line 1 and again on line 2; "
                           "keep one"),
    ("values: {a: 1, a: 2}\n", "the key 'a' is given twice on line 1; keep one"),
    ("values: [1, 2\n", r"not valid YAML: expected ',' or '\]', but got '<stream end>' at line "
                        r"2, column 1 \(while parsing a flow sequence started at line 1, "
                        r"column 9\)"),
    ("a: b: c\n", "mapping values are not allowed here at line 1, column 5"),
    ("3\n", r"must hold a mapping of keys to values \(key: value lines\), got an integer$"),
    ("- 1\n", "got a list$"),
])
def test_bad_config_files_are_refused_saying_what_and_where(tmp_path: Path, text: str,
                                                            message: str) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(WidenetError, match=message) as raised:
        build_config(ToyConfig, file=file)
    assert "\n" not in str(raised.value)


def test_keys_merged_into_a_mapping_may_be_overridden(tmp_path: Path) -> None:
    file = tmp_path / "m.yaml"
    file.write_text("b: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert read_config_file(file) == {"b": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}}


class _CheckedConfig(ToyConfig):
    @field_validator("values")
    @classmethod
    def _short(cls, values: list[int]) -> list[int]:
        if len(values) > 3:
            raise ValueError("at most 3 values")
        return values

    @model_validator(mode="after")
    def _small_seed(self) -> _CheckedConfig:
        if self.seed > 100:
            raise ValueError("seed must be <= 100")
        return self


def test_validator_messages_come_without_pydantic_prefix() -> None:
    with pytest.raises(WidenetError, match=r"^config key 'values' \(from --set\): at most 3 "
                                           r"values, got \[1, 2, 3, 4\]$"):
        build_config(_CheckedConfig, overrides=["values=1,2,3,4"])
    with pytest.raises(WidenetError, match=r"^config: seed must be <= 100$"):
        build_config(_CheckedConfig, quick=True, overrides=["seed=101"])


def test_a_message_that_names_the_value_does_not_repeat_it() -> None:
    with pytest.raises(WidenetError) as error:
        validate_config(get_study("ntk-spectrum").config, {"depths": [1, 2]})
    assert str(error.value).count("got [1, 2]") == 1


def test_a_single_value_for_a_list_key_is_a_one_item_list() -> None:
    config = build_config(get_study("ntk-concentration").config,
                          overrides=["activations=abs", "depths=3"])
    assert config.activations == ["abs"]
    assert config.depths == [3]
    toy = build_config(ToyConfig, overrides=["values=7"])
    assert toy.values == [7]


def test_an_alias_bomb_is_counted_without_expanding_it() -> None:
    import time

    from widenet.studies.common.config import MAX_VALUES, check_size

    bomb: list = [1] * 10
    for _ in range(8):
        bomb = [bomb] * 10  # 10^9 leaves, 90 list objects
    start = time.perf_counter()
    with pytest.raises(WidenetError, match=f"more than {MAX_VALUES:,} values"):
        check_size({"widths": bomb}, "config file c.yaml")
    assert time.perf_counter() - start < 10.0  # expanding 10^9 leaves would take minutes


def test_the_size_bound_counts_every_value() -> None:
    from widenet.studies.common.config import MAX_VALUES, check_size

    check_size([0] * (MAX_VALUES - 1), "here")  # the list and its items
    with pytest.raises(WidenetError, match=r"^here: the value holds more than"):
        check_size([0] * MAX_VALUES, "here")


def test_a_value_that_contains_itself_is_refused() -> None:
    from widenet.studies.common.config import check_size

    loop: list = [1]
    loop.append(loop)
    with pytest.raises(WidenetError, match="nested deeper than 20 levels"):
        check_size(loop, "here")


def test_quote_cuts_a_long_value_with_an_ellipsis() -> None:
    from widenet.studies.common.config import QUOTE, quote

    assert quote("abc") == "'abc'"
    assert len(quote("x" * 10 ** 6)) == QUOTE
    assert quote("x" * 10 ** 6).endswith("x…")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_config_file_is_refused_after_its_first_megabyte() -> None:
    """/dev/zero has size 0 to stat, so the size check passed and reading it filled the
    memory; at most MAX_TEXT + 1 bytes are read now."""
    with pytest.raises(WidenetError, match="config file /dev/zero is larger than 1,000,000 "
                                           "bytes"):
        read_config_file("/dev/zero")
