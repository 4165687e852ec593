"""The prepare stage: a corpus adapter turns a corpus root into `data/<corpus>/manifest.jsonl` + `corpus.json`."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline import corpora
from pipeline.manifest import CorpusInfo, write_manifest
from pipeline.params import ConfigError, lookup, section

log = logging.getLogger(__name__)


def corpus_dir(name: str) -> Path:
    return Path("data") / name


def manifest_path(name: str) -> Path:
    return corpus_dir(name) / "manifest.jsonl"


def corpus_info_path(name: str) -> Path:
    return corpus_dir(name) / "corpus.json"


def corpus_root(params: dict[str, Any], name: str) -> Path:
    """Where corpus `name` sits on this machine (`corpora.<name>.root`). A machine fact: no output records it and
    no stage depends on it, so a lab member whose copy sits elsewhere shares every output (README, sharing)."""
    return Path(lookup(params, f"corpora.{name}.root"))


def prepare_corpus(params: dict[str, Any], name: str, out_dir: Path | None = None) -> CorpusInfo:
    """Run the adapter named in `corpora.<name>` and write the manifest and corpus.json under `data/<name>/`."""
    cfg = section(params, f"corpora.{name}")
    adapter_name = lookup(params, f"corpora.{name}.adapter")
    root = corpus_root(params, name)
    options = dict(cfg.get("options") or {})
    try:
        module = corpora.adapter(adapter_name)
    except corpora.UnknownAdapterError as err:
        raise ConfigError(f"corpora.{name}.adapter: {err}") from None
    if not getattr(module, "GENERATED", False) and not root.is_dir():
        raise ConfigError(f"corpora.{name}.root: the corpus root {str(root)!r} does not exist or is not a "
                          f"directory; point it at the corpus as released (see README, 'Use a real corpus')")
    start = time.perf_counter()
    prepared = module.prepare(root, options)
    out_dir = out_dir or corpus_dir(name)
    utts = write_manifest(out_dir / "manifest.jsonl", prepared.utterances, prepared.classes, root)
    info = CorpusInfo(name=name, classes=list(prepared.classes), adapter=adapter_name, options=options)
    info.write(out_dir / "corpus.json")
    (out_dir / "stats.json").write_text(json.dumps(prepared.stats, indent=2, sort_keys=True, default=str) + "\n")
    labels = Counter(u.label or "<none>" for u in utts)
    log.info("prepared %s: %d utterances, %d dialogues, %d speakers, %d sessions; labels %s; %s; %.1f s",
             name, len(utts), len({u.dialogue_id for u in utts if u.dialogue_id}), len({u.speaker for u in utts}),
             len({u.session for u in utts}), dict(sorted(labels.items())), prepared.stats,
             time.perf_counter() - start)
    return info
