"""Building a study's config: defaults < the quick preset < a YAML file < ``--set key=value``.

Every value is validated by the study's pydantic schema; an unknown key or a value of the wrong
type raises a :class:`~widenet.errors.WidenetError` that names the key and where it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from widenet.errors import WidenetError
from widenet.studies.base import StudyConfig


def build_config(schema: type[StudyConfig], *, quick: bool = False, file: str | Path | None = None,
                 overrides: Iterable[str] = ()) -> StudyConfig:
    """Merge the sources of a config in increasing priority and validate the result."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if quick:
        _merge(values, sources, schema.QUICK, "the quick preset")
    if file is not None:
        _merge(values, sources, read_config_file(file), f"config file {file}")
    _merge(values, sources, parse_overrides(overrides), "--set")
    return validate_config(schema, values, sources)


def validate_config(schema: type[StudyConfig], values: dict[str, Any],
                    sources: dict[str, str] | None = None) -> StudyConfig:
    """``schema(**values)``, with pydantic's errors turned into one line naming the key."""
    sources = sources or {}
    known = sorted(schema.model_fields)
    for key in values:
        if key not in schema.model_fields:
            origin = f" (from {sources[key]})" if key in sources else ""
            raise WidenetError(f"unknown config key {key!r}{origin}; the keys of this study "
                               f"are: {', '.join(known)}")
    try:
        return schema(**values)
    except ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # a model validator: about several keys together
            raise WidenetError(f"config: {first['msg']}") from None
        key = str(first["loc"][0])
        origin = f" (from {sources[key]})" if key in sources else ""
        raise WidenetError(f"config key {key!r}{origin}: {first['msg']}, "
                           f"got {first.get('input')!r}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of keys to values in a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise WidenetError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise WidenetError(f"cannot read config file {path}: {error}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WidenetError(f"config file {path} is not valid YAML: "
                           f"{str(error).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise WidenetError(f"config file {path} must hold a mapping of keys to values, "
                           f"got a {type(loaded).__name__}")
    return {str(key): value for key, value in loaded.items()}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["widths=64,128", "depth=3"]`` -> ``{"widths": [64, 128], "depth": 3}``.

    Values are read as YAML scalars; a value with commas outside brackets is a list.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WidenetError(f"--set expects key=value, got {item!r}")
        parsed[key] = parse_value(text.strip())
    return parsed


def parse_value(text: str) -> Any:
    """One value of ``--set``: a YAML scalar or flow list, or a list of such values separated
    by commas outside brackets (``64,128`` -> [64, 128]; ``[1,2],[3]`` -> [[1, 2], [3]]).
    Numbers such as ``1e-3``, which YAML 1.1 leaves as text, are read as numbers."""
    parts = _top_level_split(text)
    if len(parts) > 1:
        return [parse_value(part.strip()) for part in parts]
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text
    return _number(value) if isinstance(value, str) else value


def _number(text: str) -> str | float:
    """``"1e-3"`` -> 0.001: YAML 1.1 reads exponents without a dot as strings."""
    try:
        return float(text) if text.strip().lower() not in ("nan", "inf", "-inf") else text
    except ValueError:
        return text


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas that are not inside brackets or quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]


def _merge(values: dict[str, Any], sources: dict[str, str], new: dict[str, Any],
           source: str) -> None:
    for key, value in new.items():
        values[key] = value
        sources[key] = source
