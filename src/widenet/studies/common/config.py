"""Building a study's config: defaults < the quick preset < a YAML file < ``--set key=value``.

Every value is validated by the study's pydantic schema; an unknown key or a value of the wrong
type raises a :class:`~widenet.errors.WidenetError` that names the key and where it came from,
and so does a key given twice in a YAML file (YAML itself would keep the last).

A config is small: a file or ``--set`` text of at most :data:`MAX_TEXT` characters, whose
values, with every YAML alias expanded, hold at most :data:`MAX_VALUES` values nested at most
:data:`MAX_DEPTH` deep; anything larger (a YAML alias bomb) is refused before it is validated.
An error quotes at most :data:`QUOTE` characters of a user's value.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import ValidationError

from widenet.errors import WidenetError
from widenet.studies.common.base import StudyConfig

MAX_TEXT = 1_000_000
"""The most characters of a config file or of one ``--set`` item."""

MAX_VALUES = 100_000
"""The most values (list items, mapping entries, scalars) of a config, aliases expanded."""

MAX_DEPTH = 20
"""The deepest nesting of lists and mappings in a config value."""

QUOTE = 80
"""The most characters of a user's value quoted in an error."""


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
            raise WidenetError(f"unknown config key {quote(key)}{origin}; the keys of this study "
                               f"are: {', '.join(known)}")
    try:
        return schema(**{key: _as_list_if_expected(schema, key, value)
                         for key, value in values.items()})
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")  # pydantic's wrapping of ValueError
        if not first["loc"]:  # a model validator: about several keys together
            raise WidenetError(f"config: {message}") from None
        key = str(first["loc"][0])
        origin = f" (from {sources[key]})" if key in sources else ""
        given = first.get("input")
        if first["type"] in _NUMBER_ERRORS and _is_nan(given):
            raise WidenetError(f"config key {key!r}{origin}: got {given!r}, which is not a "
                               "number; give a number") from None
        if isinstance(given, str) and repr(given) in message:  # quoted by a validator
            message = message.replace(repr(given), quote(given))
        elif ", got " not in message:
            message += f", got {quote(given)}"
        raise WidenetError(f"config key {key!r}{origin}: {message}") from None


def quote(value: object) -> str:
    """``repr(value)``, cut to :data:`QUOTE` characters with an ellipsis (``'xxx…'``)."""
    return cut(repr(value))


def cut(text: str) -> str:
    """``text``, cut to :data:`QUOTE` characters with an ellipsis."""
    return text if len(text) <= QUOTE else text[:QUOTE - 1] + "…"


_NUMBER_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                  "finite_number", "int_parsing", "float_parsing", "multiple_of"}
"""pydantic's error types of a value given to a number field."""


def _is_nan(value: object) -> bool:
    """Whether ``value`` is NaN or a text pydantic reads as NaN (``"nan"``, ``"-NaN"``)."""
    if isinstance(value, str):
        return value.strip().lower().lstrip("+-") == "nan"
    return isinstance(value, float) and value != value


def _as_list_if_expected(schema: type[StudyConfig], key: str, value: Any) -> Any:
    """``[value]`` for a single value given to a list key (``--set widths=64``), else value."""
    annotation = schema.model_fields[key].annotation
    expects_list = get_origin(annotation) is list or (
        get_origin(annotation) in (Union, UnionType)
        and any(get_origin(arm) is list for arm in get_args(annotation)))
    if expects_list and value is not None and not isinstance(value, (list, tuple)):
        return [value]
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of keys to values in a YAML config file."""
    path = Path(path)
    try:
        with path.open("rb") as file:  # read no more than the limit: /dev/zero has size 0
            data = file.read(MAX_TEXT + 1)
        if len(data) > MAX_TEXT:
            raise WidenetError(f"config file {path} is larger than {MAX_TEXT:,} bytes; a "
                               "config is a few lines of key: value")
        text = data.decode()
    except FileNotFoundError:
        raise WidenetError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise WidenetError(f"cannot read config file {path}: {error}") from None
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except _DuplicateKeyError as error:
        raise WidenetError(f"config file {path}: {error}") from None
    except yaml.YAMLError as error:
        raise WidenetError(f"config file {path} is not valid YAML: {_yaml_problem(error)}") \
            from None
    except RecursionError:
        raise WidenetError(f"config file {path}: {_TOO_DEEP}") from None
    check_size(loaded, f"config file {path}")
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise WidenetError(f"config file {path} must hold a mapping of keys to values "
                           f"(key: value lines), got {_kind(loaded)}")
    return {str(key): value for key, value in loaded.items()}


class _DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives a key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (instead of keeping the
    last)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``; raises on a key given twice, naming both lines."""
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # keys merged in with << may be overridden
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # the base constructor refuses it with its own message
                line = key_node.start_mark.line + 1
                if key in first_lines:
                    lines = (f"twice on line {line}" if first_lines[key] == line else
                             f"on line {first_lines[key]} and again on line {line}")
                    raise _DuplicateKeyError(f"the key {quote(key)} is given {lines}; "
                                             "keep one")
                first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line saying what is wrong and where: ``expected ',' or ']', but got '<stream end>'
    at line 3, column 1 (while parsing a flow sequence started at line 1, column 9)``."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem is None:
        return " ".join(str(error).split())
    where = _position(error.problem_mark)
    context = ""
    if error.context:
        started = f" started{_position(error.context_mark)}" if error.context_mark else ""
        context = f" ({error.context}{started})"
    return f"{error.problem}{where}{context}"


def _position(mark: yaml.Mark | None) -> str:
    """`` at line 3, column 1`` (counted from 1), or nothing without a mark."""
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _kind(value: object) -> str:
    """``[1]`` -> ``"a list"``, ``3`` -> ``"an integer"``: what a YAML value is, in words."""
    words = {list: "a list", str: "a string", int: "an integer", float: "a number",
             bool: "a boolean"}
    return words.get(type(value), f"a value of type {type(value).__name__}")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["widths=64,128", "depth=3"]`` -> ``{"widths": [64, 128], "depth": 3}``.

    Values are read as YAML scalars; a value with commas outside brackets is a list.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WidenetError(f"--set expects key=value, got {quote(item)}")
        parsed[key] = parse_value(text.strip(), f"--set {quote(key)}")
    return parsed


_TOO_DEEP = f"the value is nested deeper than {MAX_DEPTH} levels"


def check_size(value: object, where: str) -> None:
    """Refuse a value that, with the repeats of YAML aliases expanded, holds more than
    :data:`MAX_VALUES` values or nests deeper than :data:`MAX_DEPTH` (a value that contains
    itself nests infinitely). Counted without expanding: each shared list or mapping once,
    its count reused wherever it repeats."""
    counted: dict[int, tuple[int, int]] = {}  # id -> (values, depth), for shared containers

    def measure(item: object, depth: int) -> tuple[int, int]:
        if not isinstance(item, list | dict):
            return 1, 0
        if depth > MAX_DEPTH:
            raise WidenetError(f"{where}: {_TOO_DEEP}")
        if id(item) in counted:
            return counted[id(item)]
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        values, deepest = 1, 0
        for child in children:
            count, height = measure(child, depth + 1)
            values, deepest = values + count, max(deepest, height + 1)
            if values > MAX_VALUES or depth + deepest > MAX_DEPTH:
                raise WidenetError(f"{where}: " + (_TOO_DEEP if depth + deepest > MAX_DEPTH else
                                   f"the value holds more than {MAX_VALUES:,} values (YAML "
                                   "aliases repeat what they name); a config is small"))
        counted[id(item)] = (values, deepest)
        return values, deepest

    measure(value, 0)


def parse_value(text: str, where: str = "a value") -> Any:
    """One value of ``--set``: a YAML scalar or flow list, or a list of such values separated
    by commas outside brackets (``64,128`` -> [64, 128]; ``[1,2],[3]`` -> [[1, 2], [3]]).
    Numbers such as ``1e-3``, which YAML 1.1 leaves as text, are read as numbers. Raises,
    naming ``where`` (``--set 'widths'``), for a text longer than :data:`MAX_TEXT` or a value
    beyond the bounds of :func:`check_size`."""
    if len(text) > MAX_TEXT:
        raise WidenetError(f"{where}: the value is longer than {MAX_TEXT:,} characters; a "
                           "config value is short")
    try:
        value = _parse_parts(text)
    except RecursionError:
        raise WidenetError(f"{where}: {_TOO_DEEP}") from None
    check_size(value, where)
    return value


def _parse_parts(text: str) -> Any:
    """:func:`parse_value` without the bounds."""
    parts = _top_level_split(text)
    if len(parts) > 1:
        return [_parse_parts(part.strip()) for part in parts]
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
