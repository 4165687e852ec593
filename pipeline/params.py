"""params.yaml: loading and checked access. Configuration errors name the key and fail before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = Path("params.yaml")
_MISSING = object()


class ConfigError(ValueError):
    """A configuration problem: names the params file and the key."""


def load_params(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found (run affectflow from the project root, or pass --params)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
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
            raise ConfigError(f"{params.get('_path', 'params.yaml')}: key '{key}' is missing")
    return node


def section(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = lookup(params, key)
    if not isinstance(value, dict):
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: '{key}' must be a mapping")
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
