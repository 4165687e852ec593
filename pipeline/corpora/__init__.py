"""The corpus registry: `affectflow prepare <corpus>` finds its adapter here.

An adapter is a module with one function::

    def prepare(root: Path, options: dict) -> PreparedCorpus

that reads a corpus exactly as it ships and returns its utterances (DESIGN.md's manifest records, media paths
relative to `root`) and its class list in published order. Adding a corpus = one module + one line below + one
entry under `corpora:` in params.yaml.

An adapter also declares its corpus's standard evaluation protocols in a module-level `PROTOCOLS` dict (name ->
settings of one `pipeline.splits` builder), so a corpus entry needs no `splits` block: the split stage builds
these, with `corpora.<name>.splits` replacing or adding entries by name (`null` removes one). Models name a
protocol (`models.<m>.protocol`): every adapter defines `speaker` (utterance-level models: MMIN, SSMM, utt_fusion)
and `dialogue` (MMGCN: whole dialogues stay on one side). An adapter without `PROTOCOLS` gets
`DEFAULT_PROTOCOLS`.
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


# For an adapter that declares none: leave-one-speaker-out, validation on the next speaker, for both names.
DEFAULT_PROTOCOLS: dict[str, dict[str, Any]] = {
    "speaker": {"protocol": "speaker_folds", "val": "next"},
    "dialogue": {"protocol": "speaker_folds", "val": "next"},
}


def protocols(module: ModuleType, overrides: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The adapter's `PROTOCOLS` (or `DEFAULT_PROTOCOLS`) with `overrides` (params `corpora.<c>.splits`) applied:
    an entry replaces the protocol of the same name whole, a new name adds one, `None` removes one."""
    merged = {name: dict(config) for name, config in getattr(module, "PROTOCOLS", DEFAULT_PROTOCOLS).items()}
    for name, config in (overrides or {}).items():
        if config is None:
            merged.pop(name, None)
        else:
            merged[name] = dict(config)
    return merged


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
