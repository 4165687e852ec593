"""params.yaml: loading and checked access. Configuration errors name the key and fail before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import AffectflowError

DEFAULT_PATH = Path("params.yaml")
_MISSING = object()


class ConfigError(AffectflowError, ValueError):
    """A configuration problem: names the params file and the key."""


class _UniqueKeys:
    """YAML's safe loader, refusing a key written twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} written twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python parser: its messages are the ones reported (the same with or without libyaml)."""


class _FastUniqueKeyLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser when PyYAML has it (5x faster on params.yaml); a file it rejects is parsed again by
    `_UniqueKeyLoader` for the message."""


def load_params(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found", str(path),
                          "run affectflow from the project root (the folder with dvc.yaml), or pass --params")
    try:
        text = path.read_text(encoding="utf-8")
        try:
            data = yaml.load(text, Loader=_FastUniqueKeyLoader)  # noqa: S506 - a safe loader
        except yaml.YAMLError:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - the same file, for the message
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = str(getattr(err, "problem", None) or err)
        fix = ("keep one of the two" if "written twice" in problem else
               "fix the YAML syntax there (indentation, brackets, quotes, a colon after each key)")
        raise ConfigError(f"not valid YAML: {problem}", where, fix) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})", str(path),
                          "save the file as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"cannot read the params file ({err.strerror or err})", str(path),
                          "check the file and its permissions") from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections", str(path),
                          "start from the project's params.yaml")
    data["_path"] = str(path)
    return data


def lookup(params: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted key (`corpora.demo.root`); a missing key without default is a ConfigError."""
    node: Any = params
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif default is not _MISSING:
            return default
        else:
            raise ConfigError(f"key '{key}' is missing", str(params.get("_path", "params.yaml")),
                              f"add {key} to the params file")
    return node


def section(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = lookup(params, key)
    if not isinstance(value, dict):
        raise ConfigError(f"'{key}' must be a mapping", f"{params.get('_path', 'params.yaml')}: {key}",
                          "write it as key: value lines")
    return value


def merged(base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, everything else in `override` replaces."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
