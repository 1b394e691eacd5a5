"""Typed options: a plug-in (phase method, coil model, ...) declares its settings as a frozen
dataclass, and `build_options` turns what a user typed (`--phase-opt KEY=VALUE`, strings) or what
code passes (Python values) into an instance of it, converted to the annotated types.

So a setting has one declaration (its field: name, type, default, `help` metadata), one parser, and
one validation (the dataclass's `__post_init__`). A key the schema does not name is an error that
lists the known ones: a typo must never fall back silently to a default. Non-finite numbers are
refused for every float (no setting of ours means anything at inf or nan).

Supported annotations: bool, int, float, str, pathlib.Path, Literal[...] of strings, enums, tuples of those
(fixed length `tuple[float, float]` or variable `tuple[int, ...]`), and `X | None` (`none` gives
None). Tuples are written `1.5,3` or as JSON `[1.5, 3]`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union

from kspacify.errors import OptionError

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One declared option, for listings (`kspacify methods`)."""

    name: str
    type: str
    default: Any
    help: str


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def describe(schema: type) -> list[OptionInfo]:
    """The options of `schema`, in declaration order, a schema's own before those it inherits (so a
    method lists its own options before shared ones); fields whose names start with `_` are internal."""
    hints = _hints(schema)
    depth: dict[str, int] = {}
    for level, cls in enumerate(schema.__mro__):
        for name in inspect.get_annotations(cls):
            depth.setdefault(name, level)
    out = []
    for f in sorted(dataclasses.fields(schema), key=lambda f: depth.get(f.name, 0)):
        if f.name.startswith("_") or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        out.append(OptionInfo(f.name, type_name(hints[f.name]), default, str(f.metadata.get("help", ""))))
    return out


def type_name(annotation: Any) -> str:
    """A short human name for an annotation: `float`, `float,float`, `noise|model`, `int or none`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in rest) + " or none"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{type_name(args[0])},..."
        return ",".join(type_name(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def convert_value(value: Any, annotation: Any, name: str) -> Any:
    """`value` (a string from the command line, or a Python value) as `annotation`; ValueError if not."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert_value(value, option, name)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if errors else f"{name}: expected {type_name(annotation)}, got {value!r}")
    if origin is Literal:
        text = value.strip() if isinstance(value, str) else value
        if text not in args:
            raise ValueError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
        return text
    if origin is tuple:
        items = _tuple_items(value, name)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert_value(item, args[0], name) for item in items)
        if len(items) != len(args):
            raise ValueError(f"{name} expects {len(args)} values ({type_name(annotation)}), got {value!r}")
        return tuple(convert_value(item, kind, name) for item, kind in zip(items, args))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return value if isinstance(value, annotation) else annotation(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be one of {', '.join(str(m.value) for m in annotation)}, got {value!r}") from None
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be text, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ValueError(f"{name} must be a path, got {value!r}")
        return Path(value)
    raise TypeError(f"option {name}: unsupported annotation {annotation!r}")  # a schema bug, not a user error


def _tuple_items(value: Any, name: str) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                parsed = json.loads("[" + text[1:-1] + "]")
            except json.JSONDecodeError:
                raise ValueError(f"{name}: cannot read {value!r} as a list") from None
            return list(parsed)
        return [item.strip() for item in text.split(",") if item.strip()]
    return [value]


def build_options(schema: type[T], values: Mapping[str, Any], owner: str) -> T:
    """An instance of the dataclass `schema` from `values` (strings or Python values; keys may use
    `-` for `_`). Unknown keys, unconvertible values and values `__post_init__` rejects are an
    OptionError that starts with `owner` (e.g. "smooth phase")."""
    hints = _hints(schema)
    known = [info.name for info in describe(schema)]
    converted: dict[str, Any] = {}
    unknown = []
    for raw_key, value in values.items():
        key = raw_key.replace("-", "_")
        if key not in known:
            unknown.append(raw_key)
            continue
        try:
            converted[key] = convert_value(value, hints[key], key)
        except ValueError as error:
            raise OptionError(f"{owner}: {error}") from None
    if unknown:
        listing = ", ".join(known) if known else "none"
        raise OptionError(f"{owner}: unknown option(s) {', '.join(sorted(unknown))}; known: {listing}")
    try:
        return schema(**converted)
    except ValueError as error:
        text = str(error)
        raise OptionError(text if text.startswith(owner) else f"{owner}: {text}") from None


def parse_pairs(pairs: list[str], flag: str = "--phase-opt") -> dict[str, str]:
    """`["a=1", "b=x"]` -> {"a": "1", "b": "x"} (values stay text: the schema converts them)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"{flag} expects KEY=VALUE, got {pair!r}")
        options[key.strip().replace("-", "_")] = text
    return options


def as_dict(options: Any) -> dict[str, Any]:
    """JSON-able settings of an options instance (tuples as lists, paths as text)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return {info.name: plain(getattr(options, info.name)) for info in describe(type(options))}
