"""The extract stage: `affectflow extract <corpus> <extractor>` -> `features/<corpus>/<extractor>.h5`.

`extractors.<name>` in params.yaml holds the stage settings (executor, workers, threads, shard size, failure
threshold) and, under `config`, exactly what the extractor itself reads; `corpora.<corpus>.extractors.<name>`
overrides either for one corpus (the demo's text model, say). An entry runs the extractor registered under its
own name, or the one its `extractor` key names, so that two entries can run one extractor with two models
(`wavlm_large: {extractor: hf_audio, ...}` writes `features/<corpus>/wavlm_large.h5`). The extractor is built, and
its configuration checked, before any work starts.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.extract import FACE_TRACK, extractor_class
from pipeline.extract.executor import ExtractionSummary
from pipeline.extract.to_store import extract_to_store
from pipeline.layout import corpus_info_path, manifest_path, store_path
from pipeline.manifest import CorpusInfo, read_manifest
from pipeline.modalities import corpus_modalities, extractor_modality
from pipeline.params import ConfigError, lookup, merged
from pipeline.prepare import corpus_root

log = logging.getLogger(__name__)

STAGE_KEYS = ("modality", "extractor", "executor", "workers", "threads_per_worker", "start_method", "shard_size",
              "max_failure_rate", "expected_missing", "ray", "config")


def extractor_settings(params: dict[str, Any], corpus: str, name: str) -> dict[str, Any]:
    base = lookup(params, f"extractors.{name}")
    override = lookup(params, f"corpora.{corpus}.extractors.{name}", {}) or {}
    settings = merged(base, override)
    unknown = sorted(set(settings) - set(STAGE_KEYS))
    if unknown:
        raise ConfigError(f"extractors.{name}: unknown keys {unknown}; stage keys are {list(STAGE_KEYS)} and the "
                          "extractor's own settings go under `config`")
    return settings


def track_faces(params: dict[str, Any], corpus: str) -> ExtractionSummary:
    """The faces stage: MTCNN once over the corpus -> features/<corpus>/faces.h5 (`extractors.faces`)."""
    return extract_corpus(params, corpus, FACE_TRACK)


def check_corpus_has_modality(params: dict[str, Any], corpus: str, name: str) -> None:
    """Refuse, before any work, an extractor whose modality the corpus does not declare."""
    modality = extractor_modality(params, name)
    have = corpus_modalities(params, corpus)
    if modality not in have:
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: extractor {name!r} reads {modality}, which corpus "
                          f"{corpus!r} does not have (corpora.{corpus}.modalities: {list(have)}); nothing to "
                          f"extract - add {modality} to the corpus's modalities if it has it")


def extract_corpus(params: dict[str, Any], corpus: str, name: str) -> ExtractionSummary:
    check_corpus_has_modality(params, corpus, name)
    settings = extractor_settings(params, corpus, name)
    info = CorpusInfo.read(corpus_info_path(corpus))
    root = corpus_root(params, corpus)
    utts = read_manifest(manifest_path(corpus), info.classes)
    cls = extractor_class(settings.get("extractor") or name)
    config = dict(settings.get("config") or {})
    if cls.reads_face_track:  # a face embedder reads the crops the faces stage detected, never the video
        extractor = cls(config, root, face_track=store_path(corpus, FACE_TRACK))
    else:
        extractor = cls(config, root)
    executor = settings.get("executor", "local")
    options: dict[str, Any] = {"workers": int(settings.get("workers", 1)),
                               "threads_per_worker": int(settings.get("threads_per_worker", 1))}
    if executor == "local" and "start_method" in settings:
        options["start_method"] = str(settings["start_method"])
    if executor == "ray":
        options.update(settings.get("ray") or {})
    return extract_to_store(extractor, utts, store_path(corpus, name), executor=executor,
                            executor_options=options, shard_size=int(settings.get("shard_size", 256)),
                            max_failure_rate=float(settings.get("max_failure_rate", 0.05)),
                            expected_missing=list(settings.get("expected_missing") or []))
