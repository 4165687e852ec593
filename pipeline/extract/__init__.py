"""Extractors: one module per extractor, registered by name; the shared base class.

An extractor turns utterances into `UtteranceFeatures`. It is built in the stage process (to check its
configuration and describe itself before any work starts), then pickled to each worker, where `setup()` loads its
model once. `work_units` groups a shard's utterances into the batches one worker processes in one call; the
grouping depends only on the shard, never on the number of workers, so the store's bytes do not either.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import AffectflowError
from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures

EXTRACTORS: dict[str, str] = {}  # name -> "module:Class"
FACE_TRACK = "faces"  # the extractor of the faces@<corpus> stage: MTCNN once per corpus -> features/<corpus>/faces.h5
FACE_EMBEDDERS: set[str] = set()  # extractors that read the face track (their stages: extract-face@<corpus>-<name>)


class ExtractorConfigError(AffectflowError, ValueError):
    """A configuration problem found before any work starts."""


def register(name: str, module: str, *, face_embedder: bool = False) -> None:
    EXTRACTORS[name] = module
    if face_embedder:
        FACE_EMBEDDERS.add(name)


def extractor_class(name: str) -> type[Extractor]:
    """The class registered under `name` ("module:Class")."""
    if name not in EXTRACTORS:
        raise ExtractorConfigError(f"no extractor named {name!r}; known: {sorted(EXTRACTORS)}")
    module_name, _, class_name = EXTRACTORS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None:
        raise ExtractorConfigError(f"module {module_name} defines no class {class_name}")
    return cls


def library_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def sha256_of_files(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the bytes of the files, in the given order (model identity for the store attributes)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Extractor(ABC):
    """Base class. Subclasses set `name`, `version`, `modality` and implement the abstract methods."""

    name: ClassVar[str]
    version: ClassVar[str]
    modality: ClassVar[str]  # "audio" | "visual" | "text": the modality its store feeds
    has_frame_valid: ClassVar[bool] = False
    store_dtype: ClassVar[str] = "float32"  # /features' type: uint8 for the face track's crops
    store_columns: ClassVar[dict[str, tuple[str, tuple[int, ...]]]] = {}  # extra per-frame datasets (the track's box)
    reads_face_track: ClassVar[bool] = False  # a face embedder: reads features/<corpus>/faces.h5, never the video

    def __init__(self, config: dict[str, Any], corpus_root: Path) -> None:
        self.config = dict(config)
        self.corpus_root = Path(corpus_root)

    @classmethod
    def with_defaults(cls, config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        """`defaults` overlaid with `config`, after refusing any key `defaults` does not know."""
        unknown = sorted(set(config) - set(defaults))
        if unknown:
            raise ExtractorConfigError(f"{cls.name}: unknown config keys {unknown}; known: {sorted(defaults)}")
        return {**defaults, **config}

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Root attributes of the store: feature_names, frame_hop_s, model identity, library versions.

        The base adds extractor name, version and config; nothing here may vary between runs or hosts.
        """

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models; called once in each worker before its first `process` call."""

    @abstractmethod
    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        """Features for each utterance, in order. Per-utterance media failures are returned as missing."""

    def work_units(self, utts: Sequence[Utterance]) -> list[list[int]]:
        """Indices of a shard's utterances grouped into the units one `process` call handles."""
        size = int(self.config.get("batch_size", 1))
        return [list(range(i, min(i + size, len(utts)))) for i in range(0, len(utts), size)]

    def attributes(self) -> dict[str, Any]:
        return {"extractor": self.name, "extractor_version": self.version,
                "config": json.dumps(self.config, sort_keys=True), **self.describe()}

    def signature(self, utt: Utterance) -> str:
        """What decides whether a finished shard can be reused: the input this extractor reads (the media segment
        and the file's size and mtime, or the text), never fields it ignores such as the label."""
        if self.modality == "text":
            return json.dumps([utt.utt_id, utt.text], ensure_ascii=False)
        seg = getattr(utt, self.modality, None)
        if seg is None:
            return json.dumps([utt.utt_id, None])
        parts: list[Any] = [utt.utt_id, seg.path, seg.start, seg.end, getattr(seg, "face_region", None)]
        try:
            st = os.stat(self.corpus_root / seg.path)
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("unreadable")
        return json.dumps(parts)

register("compare", "pipeline.extract.compare:CompareExtractor")
register("compare_utterance", "pipeline.extract.compare:CompareUtteranceExtractor")
register("bert", "pipeline.extract.text_encoder:BertExtractor")  # hf_text under its first name
register("hf_text", "pipeline.extract.text_encoder:TextEncoderExtractor")
register("hf_audio", "pipeline.extract.hf_audio:HfAudioExtractor")
register(FACE_TRACK, "pipeline.extract.face_track:FaceTrackExtractor")
register("denseface", "pipeline.extract.face_embed:DensefaceEmbedder", face_embedder=True)
register("hf_vision", "pipeline.extract.hf_vision:HfVisionExtractor", face_embedder=True)
