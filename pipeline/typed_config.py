"""Typed configuration: a params mapping parsed into dataclasses, every key and value checked, one line per error.

The one pattern for every params section (`pipeline/schema.py` declares them): a section is a dataclass whose
fields are its keys; their annotations give the types (int, float, bool, str, None, Literal, list, dict, unions,
nested dataclasses, Any for content owned elsewhere) and `setting(...)` adds a default and value limits. `parse`
turns a mapping into the dataclass or raises a `ConfigError` naming the full key path: an unknown key with the
closest valid one, a wrong type or value with an example, a missing key. A dataclass may define
`check(self) -> None` for rules across its fields (raise `Invalid(message, key)` there) and a classmethod
`variant(cls, value)` returning the subclass a mapping is parsed as (a model entry's `family`).

With `partial=True` missing keys and `check` rules are skipped: an override block (a corpus's model settings) is
checked key by key where it is written, and the merged result is checked whole.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, NewType, Union, get_args, get_origin

from pipeline.params import ConfigError

_NO_DEFAULT = dataclasses.MISSING
NAME_PATTERN = r"[A-Za-z0-9_-]+"
# A corpus, model, extractor or set name: it becomes part of output paths (data/<corpus>/, features/<corpus>/...),
# so it can never be an absolute path or climb out of the project.
Name = NewType("Name", str)


class Invalid(Exception):
    """Raised by a dataclass's `check`: `key` is the field (or dotted sub-key) the message is about."""

    def __init__(self, message: str, key: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message, self.key, self.fix = message, key, fix


def setting(default: Any = _NO_DEFAULT, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, pattern: str | None = None, means: str | None = None,
            name: str | None = None, example: Any = _NO_DEFAULT) -> Any:
    """A dataclass field with an optional default and limits: ge/gt/le/lt for numbers (and each number of a list),
    `pattern` (a full-match regex) for strings, `name` when the params key is no Python identifier (`lambda`),
    `example` for the message when there is no default to show, `means` to say in words what `pattern` allows."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "pattern": pattern, "means": means, "name": name,
            "example": example}
    if default is _NO_DEFAULT:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_of(field: dataclasses.Field) -> str:
    return field.metadata.get("name") or field.name


def describe(tp: Any) -> str:
    """A type annotation in words, for messages."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "anything"
    if tp is Name:
        return "a name of letters, digits, _ and -"
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if dataclasses.is_dataclass(tp) or origin in (dict, Mapping):
        return "a mapping"
    if origin is Literal:
        return _yaml(args[0]) if len(args) == 1 else "one of " + ", ".join(_yaml(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_plural(describe(args[0]))}" if args else "a list"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _plural(words: str) -> str:
    many = {"an integer": "integers", "a number": "numbers", "a string": "strings", "a mapping": "mappings",
            "true or false": "true/false values", "null": "nulls"}
    if words in many:
        return many[words]
    if words.startswith("one of "):
        return f"({words.removeprefix('one of ')})"
    return " or ".join(many.get(part, part) for part in words.split(" or "))


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _leaf(key: str) -> str:
    return re.split(r"[.\[]", key.rsplit(".", 1)[-1])[0] or key


class _Mismatch(Exception):
    """A value that does not fit a type; turned into one ConfigError at the outermost level that knows the key."""

    def __init__(self, message: str, key: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message, self.key, self.fix = message, key, fix


def parse(tp: Any, value: Any, key: str, source: str = "params.yaml", *, partial: bool = False,
          locate: Callable[[str], str] | None = None) -> Any:
    """`value` (from YAML) checked against the annotation `tp`; a ConfigError names `source` and the key path.

    `locate` maps the path of a bad key within `value` to its full key, for a value merged from several blocks
    (it is then called with the path below `value`, and `key` is not used in messages)."""
    try:
        return _parse(tp, value, "" if locate else key, partial)
    except _Mismatch as err:
        raise ConfigError(err.message, f"{source}: {locate(err.key) if locate else err.key}", err.fix) from None


def _type_error(tp: Any, value: Any, key: str, example: Any = _NO_DEFAULT) -> _Mismatch:
    fix = f"e.g. {_leaf(key)}: {_yaml(example)}" if example is not _NO_DEFAULT else f"write {describe(tp)}"
    return _Mismatch(f"{_leaf(key)} must be {describe(tp)}, got {_yaml(value) if value is None else repr(value)}",
                     key, fix)


_SCALARS: dict[Any, Callable[[Any], bool]] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _parse(tp: Any, value: Any, key: str, partial: bool, example: Any = _NO_DEFAULT) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if tp is Name:
        if isinstance(value, str) and re.fullmatch(NAME_PATTERN, value):
            return value
        raise _Mismatch(f"name {value!r} may hold only letters, digits, _ and - (it becomes part of output paths)",
                        key, "rename it with letters, digits, _ and - only")
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, key, partial)
    if origin in (Union, types.UnionType):
        return _parse_union(tp, value, key, partial, example)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        fix = f"did you mean {close[0]}?" if close else f"use one of {', '.join(_yaml(a) for a in args)}"
        raise _Mismatch(f"{_leaf(key)} must be {describe(tp)}, got {value!r}", key, fix)
    if isinstance(tp, type) and tp in _SCALARS:
        if not _SCALARS[tp](value):
            raise _type_error(tp, value, key, example)
        return float(value) if tp is float else value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _type_error(tp, value, key, example)
        item = args[0] if args else Any
        return [_parse(item, v, f"{key}[{i}]", partial) for i, v in enumerate(value)]
    if origin in (dict, Mapping):
        return _parse_mapping(tp, value, key, partial, example)
    raise TypeError(f"typed_config: unsupported annotation {tp!r} at {key}")


def _parse_union(tp: Any, value: Any, key: str, partial: bool, example: Any) -> Any:
    """The first alternative that parses; else the one precise message, or a message naming them all."""
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for option in args:
        if option is type(None):
            continue
        try:
            return _parse(option, value, key, partial, example)
        except _Mismatch as err:
            errors.append(err)
    # one alternative that fits the value's kind (a mapping for a dataclass) gives the precise message
    deeper = [e for e in errors if e.key != key]
    if len(deeper) == 1:
        raise deeper[0]
    raise _type_error(tp, value, key, example)


def _parse_mapping(tp: Any, value: Any, key: str, partial: bool, example: Any) -> dict:
    if not isinstance(value, dict):
        raise _type_error(tp, value, key, example)
    args = get_args(tp)
    key_tp, value_tp = args if args else (str, Any)
    out = {}
    for k, v in value.items():
        try:
            _parse(key_tp, k, f"{key}.{k}", partial)
        except _Mismatch as err:
            if key_tp is not Name:
                err.message = f"key {k!r} must be {describe(key_tp)}"
            raise
        out[k] = _parse(value_tp, v, f"{key}.{k}", partial)
    return out


def _limits(field: dataclasses.Field, value: Any, key: str) -> None:
    meta = field.metadata
    numbers = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else (
        [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)] if isinstance(value, list)
        else [])
    rules = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b), ("le", "<=", lambda v, b: v <= b),
             ("lt", "<", lambda v, b: v < b))
    for v in numbers:
        for name, _sign, ok in rules:
            bound = meta.get(name)
            if bound is not None and not ok(v, bound):
                raise _Mismatch(f"{_leaf(key)} must be {_bounds(field)}, got {v!r}", key,
                                _example_fix(field, key))
    pattern = meta.get("pattern")
    if pattern is not None and isinstance(value, str) and not re.fullmatch(pattern, value):
        raise _Mismatch(f"{_leaf(key)} must be {meta.get('means') or 'a string matching ' + pattern}, got {value!r}",
                        key, _example_fix(field, key))


def _bounds(field: dataclasses.Field) -> str:
    signs = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    return " and ".join(f"{sign} {field.metadata[n]}" for n, sign in signs if field.metadata.get(n) is not None)


def _example_fix(field: dataclasses.Field, key: str) -> str | None:
    example = field.metadata.get("example", _NO_DEFAULT)
    if example is _NO_DEFAULT and field.default is not _NO_DEFAULT:
        example = field.default
    if example is _NO_DEFAULT and field.default_factory is not _NO_DEFAULT:  # type: ignore[misc]
        example = field.default_factory()  # type: ignore[misc]
    return None if example is _NO_DEFAULT else f"e.g. {_leaf(key)}: {_yaml(example)}"


def unknown_key(name: str, known: list[str], key: str) -> _Mismatch:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    fix = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
    return _Mismatch(f"unknown key '{name}'", f"{key}.{name}" if key else str(name), fix)


@functools.cache
def _schema_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A dataclass's resolved annotations and its fields by params key (resolved once per class)."""
    return typing.get_type_hints(cls), {key_of(f): f for f in dataclasses.fields(cls)}


def _parse_dataclass(cls: type, value: Any, key: str, partial: bool) -> Any:
    if not isinstance(value, dict):
        raise _Mismatch(f"{_leaf(key)} must be a mapping, got {_yaml(value) if value is None else repr(value)}",
                        key, "write it as key: value lines (or {key: value})")
    variant = getattr(cls, "variant", None)
    if variant is not None:
        try:
            chosen = variant(value)
        except Invalid as err:
            raise _Mismatch(err.message, f"{key}.{err.key}", err.fix) from None
        if chosen is not cls:
            return _parse_dataclass(chosen, value, key, partial)
    hints, fields = _schema_of(cls)
    for name in value:
        if name not in fields:
            raise unknown_key(name, list(fields), key)
    kwargs = {}
    for name, field in fields.items():
        sub = f"{key}.{name}" if key else name
        if name not in value:
            if field.default is _NO_DEFAULT and field.default_factory is _NO_DEFAULT:  # type: ignore[misc]
                if partial:
                    kwargs[field.name] = None
                    continue
                example = field.metadata.get("example", _NO_DEFAULT)
                raise _Mismatch(f"key '{name}' is missing", sub,
                                f"add {name}: {_yaml(example)}" if example is not _NO_DEFAULT
                                else f"add {name} ({describe(hints[field.name])})")
            continue
        example = field.metadata.get("example", _NO_DEFAULT)
        if example is _NO_DEFAULT and field.default is not _NO_DEFAULT:
            example = field.default
        if example is _NO_DEFAULT and field.default_factory is not _NO_DEFAULT:  # type: ignore[misc]
            example = field.default_factory()  # type: ignore[misc]
        try:
            parsed = _parse(hints[field.name], value[name], sub, partial, example)
        except _Mismatch as err:
            bounds = _bounds(field)
            if err.key == sub and bounds and " must be " in err.message and ", got " in err.message:
                head, _, rest = err.message.partition(", got ")
                if head.endswith(" or null"):
                    err.message = f"{head.removesuffix(' or null')} {bounds} or null, got {rest}"
                else:
                    err.message = f"{head} {bounds}, got {rest}"
            raise
        _limits(field, parsed, sub)
        kwargs[field.name] = parsed
    out = cls(**kwargs)
    check = getattr(out, "check", None)
    if check is not None and not partial:
        try:
            check()
        except Invalid as err:
            raise _Mismatch(err.message, f"{key}.{err.key}" if key else err.key, err.fix) from None
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A parsed dataclass back as the params mapping (params names, nested dataclasses as mappings)."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        out[key_of(field)] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out
