"""The utterance record and the manifest: one JSON line per utterance, sorted by `utt_id`.

Every stage downstream of `prepare` keys its work on `utt_id`. The manifest is validated when it is written and
when it is read, so a bad corpus line fails early with the file, the line and the field in the message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import AffectflowError

UTT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
FACE_REGIONS = ("full", "left", "right")


class ManifestError(AffectflowError, ValueError):
    """A manifest or corpus line that breaks a rule; the message names the file, line and field."""

    def __init__(self, message: str, *, source: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.reason = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.field = field
        where = []
        if self.source is not None:
            where.append(self.source)
        if line is not None:
            where.append(f"line {line}")
        prefix = ":".join(where)
        if field is not None:
            prefix = f"{prefix} field '{field}'" if prefix else f"field '{field}'"
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclass(frozen=True)
class Segment:
    """A stretch of a media file; `start`/`end` in seconds, None = from the beginning / to the end."""

    path: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class VideoSegment(Segment):
    """A video segment plus which part of the frame shows the speaker (IEMOCAP's split screen)."""

    face_region: str = "full"


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    corpus: str
    speaker: str
    session: str
    dialogue_id: str | None = None
    turn: int | None = None
    audio: Segment | None = None
    video: VideoSegment | None = None
    text: str | None = None
    label: str | None = None
    vad: dict[str, float] | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        record = asdict(self)
        if not record["extra"]:
            del record["extra"]
        return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Utterance:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(record) - known
        if unknown:
            raise ManifestError(f"unknown fields {sorted(unknown)}", field=sorted(unknown)[0])
        data = dict(record)
        for name, kind in (("audio", Segment), ("video", VideoSegment)):
            value = data.get(name)
            if value is not None:
                if not isinstance(value, dict):
                    raise ManifestError(f"expected an object, got {type(value).__name__}", field=name)
                try:
                    data[name] = kind(**value)
                except TypeError as err:
                    raise ManifestError(str(err), field=name) from None
        data.setdefault("extra", {})
        for required in ("utt_id", "corpus", "speaker", "session"):
            if required not in data:
                raise ManifestError("is required", field=required)
        return cls(**data)


@dataclass(frozen=True)
class CorpusInfo:
    """What `corpus.json` holds: the class list in its published order, the adapter and its options. Not the corpus
    root: that is a machine fact (`corpora.<name>.root`, pipeline.prepare.corpus_root); media paths in the manifest
    are relative to it."""

    name: str
    classes: list[str]
    adapter: str
    options: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> CorpusInfo:
        data = json.loads(Path(path).read_text())
        data.pop("root", None)  # written by versions before the root became a machine-only fact
        return cls(**data)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_segment(seg: Segment, name: str, root: Path | None) -> None:
    if not isinstance(seg.path, str) or not seg.path:
        raise ManifestError("path must be a non-empty string", field=f"{name}.path")
    posix = PurePosixPath(seg.path)
    if posix.is_absolute() or ".." in posix.parts:
        raise ManifestError(f"path {seg.path!r} must be relative and stay inside the corpus root",
                            field=f"{name}.path")
    if root is not None:
        resolved = (root / seg.path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            raise ManifestError(f"path {seg.path!r} leaves the corpus root {root}", field=f"{name}.path")
    for bound in ("start", "end"):
        value = getattr(seg, bound)
        if value is not None and (not _is_number(value) or value < 0):
            raise ManifestError(f"must be a non-negative number, got {value!r}", field=f"{name}.{bound}")
    if seg.start is not None and seg.end is not None and not seg.start < seg.end:
        raise ManifestError(f"start {seg.start} must be before end {seg.end}", field=f"{name}.start")
    if isinstance(seg, VideoSegment) and seg.face_region not in FACE_REGIONS:
        raise ManifestError(f"must be one of {FACE_REGIONS}, got {seg.face_region!r}",
                            field=f"{name}.face_region")


def check_utterance(utt: Utterance, classes: Sequence[str] | None = None, root: Path | None = None) -> None:
    """Check one record on its own; raises ManifestError naming the field."""
    if not isinstance(utt.utt_id, str) or not UTT_ID_PATTERN.match(utt.utt_id):
        raise ManifestError(f"{utt.utt_id!r} must match {UTT_ID_PATTERN.pattern}", field="utt_id")
    for name in ("corpus", "speaker", "session"):
        value = getattr(utt, name)
        if not isinstance(value, str) or not value:
            raise ManifestError(f"must be a non-empty string, got {value!r}", field=name)
    if utt.dialogue_id is not None and (not isinstance(utt.dialogue_id, str) or not utt.dialogue_id):
        raise ManifestError(f"must be a non-empty string or null, got {utt.dialogue_id!r}", field="dialogue_id")
    if utt.turn is not None:
        if not isinstance(utt.turn, int) or isinstance(utt.turn, bool) or utt.turn < 0:
            raise ManifestError(f"must be a non-negative integer or null, got {utt.turn!r}", field="turn")
        if utt.dialogue_id is None:
            raise ManifestError("a turn needs a dialogue_id", field="turn")
    if utt.audio is not None:
        _check_segment(utt.audio, "audio", root)
    if utt.video is not None:
        _check_segment(utt.video, "video", root)
    if utt.text is not None and not isinstance(utt.text, str):
        raise ManifestError(f"must be a string or null, got {type(utt.text).__name__}", field="text")
    if utt.label is not None:
        if not isinstance(utt.label, str):
            raise ManifestError(f"must be a string or null, got {utt.label!r}", field="label")
        if classes is not None and utt.label not in classes:
            raise ManifestError(f"{utt.label!r} is not in the class list {list(classes)}", field="label")
    if utt.vad is not None:
        if not isinstance(utt.vad, dict) or not all(_is_number(v) for v in utt.vad.values()):
            raise ManifestError(f"must map names to numbers, got {utt.vad!r}", field="vad")
    if utt.split is not None and not isinstance(utt.split, str):
        raise ManifestError(f"must be a string or null, got {utt.split!r}", field="split")


def validate(utterances: Iterable[Utterance], classes: Sequence[str] | None = None,
             root: Path | None = None, source: str | Path | None = None,
             lines: Sequence[int] | None = None) -> list[Utterance]:
    """Check every record and the rules across records (unique ids, unique turns within a dialogue).

    `lines` gives the source line of each record for the error message (default: its 1-based position).
    """
    utts = list(utterances)
    seen_ids: dict[str, int] = {}
    seen_turns: dict[tuple[str, int], int] = {}
    for index, utt in enumerate(utts):
        line = lines[index] if lines is not None else index + 1
        try:
            check_utterance(utt, classes, root)
        except ManifestError as err:
            raise ManifestError(err.reason, source=source, line=line, field=err.field) from None
        if utt.utt_id in seen_ids:
            raise ManifestError(f"duplicate id {utt.utt_id!r} (first on line {seen_ids[utt.utt_id]})",
                                source=source, line=line, field="utt_id")
        seen_ids[utt.utt_id] = line
        if utt.turn is not None and utt.dialogue_id is not None:
            key = (utt.dialogue_id, utt.turn)
            if key in seen_turns:
                raise ManifestError(
                    f"turn {utt.turn} of dialogue {utt.dialogue_id!r} repeats (first on line {seen_turns[key]})",
                    source=source, line=line, field="turn")
            seen_turns[key] = line
    return utts


def write_manifest(path: str | Path, utterances: Iterable[Utterance],
                   classes: Sequence[str] | None = None, root: Path | None = None) -> list[Utterance]:
    """Validate and write the manifest sorted by id; written to a temporary file and renamed."""
    utts = sorted(validate(utterances, classes, root, source="<manifest being written>"),
                  key=lambda u: u.utt_id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for utt in utts:
            fh.write(utt.to_json() + "\n")
    tmp.replace(path)
    return utts


def read_manifest(path: str | Path, classes: Sequence[str] | None = None,
                  root: Path | None = None) -> list[Utterance]:
    """Read and validate a manifest; every error names the file, the line and the field."""
    path = Path(path)
    utts: list[Utterance] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ManifestError(f"not valid JSON ({err.msg} at column {err.colno})",
                                    source=path, line=number) from None
            if not isinstance(record, dict):
                raise ManifestError("expected a JSON object", source=path, line=number)
            try:
                utts.append(Utterance.from_dict(record))
            except ManifestError as err:
                raise ManifestError(err.reason, source=path, line=number, field=err.field) from None
            lines.append(number)
    validate(utts, classes, root, source=path, lines=lines)
    ids = [u.utt_id for u in utts]
    if ids != sorted(ids):
        first = next(i for i in range(1, len(ids)) if ids[i] < ids[i - 1])
        raise ManifestError(f"ids are not sorted: {ids[first]!r} after {ids[first - 1]!r}",
                            source=path, line=lines[first], field="utt_id")
    return utts
