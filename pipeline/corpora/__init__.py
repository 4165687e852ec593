"""The corpus registry: `affectflow prepare <corpus>` finds its adapter here.

An adapter is a module with one function::

    def prepare(root: Path, options: dict) -> PreparedCorpus

that reads a corpus exactly as it ships and returns its utterances (DESIGN.md's manifest records, media paths
relative to `root`) and its class list in published order. Adding a corpus = one module + one line below + one
entry under `corpora:` in params.yaml.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.manifest import Utterance

ADAPTERS: dict[str, str] = {
    "demo": "pipeline.corpora.demo",
    "iemocap": "pipeline.corpora.iemocap",
    "meld": "pipeline.corpora.meld",
    "msp_improv": "pipeline.corpora.msp_improv",
    "crema_d": "pipeline.corpora.crema_d",
    "ravdess": "pipeline.corpora.ravdess",
}


@dataclass
class PreparedCorpus:
    utterances: list[Utterance]
    classes: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


PrepareFn = Callable[[Path, dict[str, Any]], PreparedCorpus]


class UnknownAdapterError(AffectflowError, KeyError):
    pass


def register(name: str, module: str) -> None:
    """Register an adapter module by import path (used by plug-ins and tests)."""
    ADAPTERS[name] = module


def adapter(name: str) -> ModuleType:
    """The adapter module for a registered name, or for a dotted import path (a lab's own package)."""
    if name in ADAPTERS:
        path = ADAPTERS[name]
    elif "." in name:
        path = name
    else:
        raise UnknownAdapterError(f"no corpus adapter named {name!r}; known: {sorted(ADAPTERS)} "
                                  "(or give a dotted module path)")
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as err:
        raise UnknownAdapterError(f"corpus adapter {name!r}: cannot import {path} ({err})") from None
    if not callable(getattr(module, "prepare", None)):
        raise UnknownAdapterError(f"adapter module {path} has no prepare(root, options) function")
    return module
