"""The prepare stage: a corpus adapter turns a corpus root into `data/<corpus>/manifest.jsonl` + `corpus.json`."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import corpora
from pipeline.layout import CORPUS_INFO, MANIFEST, corpus_dir
from pipeline.manifest import CorpusInfo, Utterance, write_manifest
from pipeline.params import ConfigError, lookup, section

log = logging.getLogger(__name__)


def corpus_root(params: dict[str, Any], name: str) -> Path:
    """Where corpus `name` sits on this machine (`corpora.<name>.root`). A machine fact: no output records it and
    no stage depends on it, so a lab member whose copy sits elsewhere shares every output (README, sharing)."""
    return Path(lookup(params, f"corpora.{name}.root"))


def prepare_corpus(params: dict[str, Any], name: str, out_dir: Path | None = None) -> CorpusInfo:
    """Run the adapter named in `corpora.<name>` and write the manifest and corpus.json under `data/<name>/`."""
    config = section(params, f"corpora.{name}")
    adapter_name = lookup(params, f"corpora.{name}.adapter")
    root = corpus_root(params, name)
    options = dict(config.get("options") or {})
    try:
        module = corpora.adapter(adapter_name)
    except corpora.UnknownAdapterError as err:
        raise ConfigError(err.what, f"{params.get('_path', 'params.yaml')}: corpora.{name}.adapter",
                          "name a registered adapter or a dotted module path (README, 'Add a corpus')") from None
    if getattr(module, "GENERATED", False) and (root.is_absolute() or ".." in root.parts):
        raise ConfigError(f"the root of a generated corpus is an output and must stay inside the project, got "
                          f"{str(root)!r}", f"{params.get('_path', 'params.yaml')}: corpora.{name}.root",
                          f"give a relative path such as data/{name}/raw")
    if not getattr(module, "GENERATED", False) and not root.is_dir():
        raise ConfigError(f"the corpus root {str(root)!r} does not exist or is not a directory",
                          f"{params.get('_path', 'params.yaml')}: corpora.{name}.root",
                          "point it at the corpus as released (see README, 'Use a real corpus')")
    start = time.perf_counter()
    prepared = module.prepare(root, options)
    out_dir = out_dir or corpus_dir(name)
    utts = write_manifest(out_dir / MANIFEST, prepared.utterances, prepared.classes, root)
    info = CorpusInfo(name=name, classes=list(prepared.classes), adapter=adapter_name, options=options)
    info.write(out_dir / CORPUS_INFO)
    (out_dir / "stats.json").write_text(json.dumps(prepared.stats, indent=2, sort_keys=True, default=str) + "\n")
    log.info("%s", summary_line(name, utts, prepared.stats, time.perf_counter() - start,
                                out_dir / "stats.json"))
    return info


MAX_LOG_LINE = 500  # characters: lists (missing clips, bad names, ...) go to stats.json, never into the log


def summary_line(name: str, utts: Sequence[Utterance], stats: dict[str, Any], seconds: float,
                 stats_path: Path) -> str:
    """The one log line of the prepare stage: counts only (a list in stats.json appears as its length), at most
    MAX_LOG_LINE characters."""
    labels = Counter(u.label for u in utts if u.label is not None)
    core = (f"prepared {name}: {len(utts)} utterances, {len({u.dialogue_id for u in utts if u.dialogue_id})} "
            f"dialogues, {len({u.speaker for u in utts})} speakers, {len({u.session for u in utts})} sessions in "
            f"{seconds:.1f} s; {sum(labels.values())} labelled: "
            + ", ".join(f"{label} {count}" for label, count in sorted(labels.items())))
    shown = {"utterances", "labelled", "unlabelled", "labels", "dialogues", "speakers", "sessions", "seconds"}
    counts = []
    for key, value in sorted(stats.items()):
        if key in shown or not value or isinstance(value, bool):
            continue
        if isinstance(value, int):
            counts.append(f"{key} {value}")
        elif isinstance(value, (list, tuple)):
            counts.append(f"{key} {len(value)}")
    tail = f"; details in {stats_path}"
    line = core + ("; " + ", ".join(counts) if counts else "")
    if len(line) + len(tail) > MAX_LOG_LINE:
        line = line[: MAX_LOG_LINE - len(tail) - 3] + "..."
    return line + tail
