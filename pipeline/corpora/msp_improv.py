"""MSP-IMPROV (UT Dallas MSP lab): per-turn wav/avi, one transcript per turn, consensus labels in Evaluation.txt.

The utterances are the consensus lines of `Evaluation.txt` (spelled `Evalution.txt` in some releases); media are
found by id anywhere under the root, so both packagings work: `session1/S01A/S/<id>.wav|avi` and the split
`Audio/session1/...` + `Video/session1/...`. Transcripts are `All_human_transcriptions/<id>.txt`.

An id `MSP-IMPROV-S01A-F01-S-FM01` holds the target sentence (S01) and scenario emotion (A), the actor (F01:
gender + session digit), the condition letter (P/R/S/T) and a turn code. The speaker is the actor (12 speakers,
MMIN's 12 folds); the session is the digit. Consensus letters A/H/S/N are classes, O (other) and X (no agreement)
are the unlabelled pool. The consensus line names the avi with a `UTD-` prefix; its spacing is irregular
(`D:3.000000 ; N:...`), older copies lack the N (naturalness) field and some values read `NaN`.

Protocols (`PROTOCOLS`, for `models.<m>.protocol`): `speaker` = MMIN's 12 leave-one-speaker-out folds, validation
on the test actor's session partner; `session` = 6 leave-one-session-out folds, validation on the next session;
`dialogue` = the session folds (a session's improvisations stay on one side).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.corpora import PreparedCorpus, common
from pipeline.manifest import ManifestError, Segment, Utterance, VideoSegment

log = logging.getLogger(__name__)

CORPUS = "msp_improv"
CODES = ("A", "H", "S", "N", "O", "X")
LABEL_SETS: dict[str, dict[str, Any]] = {
    "4class": {"classes": ["ang", "hap", "neu", "sad"], "label_map": {"A": "ang", "H": "hap", "N": "neu", "S": "sad"}},
}
CONDITIONS = ("P", "R", "S", "T")
EVALUATION_NAMES = ("Evaluation.txt", "Evalution.txt")
PROTOCOLS: dict[str, dict[str, Any]] = {
    "speaker": {"protocol": "speaker_folds", "val": "partner"},
    "session": {"protocol": "session_folds", "val": "next"},
    "dialogue": {"protocol": "session_folds", "val": "next"},
}
DEFAULTS: dict[str, Any] = {
    **common.label_defaults("4class"),
    "sessions": [1, 2, 3, 4, 5, 6],
    "conditions": list(CONDITIONS),
    "evaluation_file": None,
    "transcripts": "All_human_transcriptions",
    "encoding": "auto",
}
ID_PATTERN = re.compile(r"^MSP-IMPROV-(?P<sentence>S\d{2})(?P<scenario>[AHSN])-(?P<gender>[FM])(?P<session>\d{2})"
                        r"-(?P<condition>[PRST])-(?P<turn>[FM]{2}\d{2,3})$")
NAME_PATTERN = re.compile(r"^(?:UTD|MSP)-IMPROV-(?P<rest>[A-Z0-9-]+?)(?:\.avi|\.wav)?$")
VALUE_PATTERN = re.compile(r"^(?P<key>[AVDN])\s*:\s*(?P<value>-?\d+(?:\.\d+)?|NaN)$")
VAD_NAMES = {"A": "arousal", "V": "valence", "D": "dominance"}


@dataclass(frozen=True)
class Rating:
    """One consensus line: the utterance, its consensus letter, mean attribute ratings and rater count."""

    utt_id: str
    code: str
    values: dict[str, float]
    line: int
    raters: int = 0


def utt_id_from_name(name: str) -> str | None:
    """`UTD-IMPROV-S01A-F01-S-FM01.avi` (Evaluation.txt) or a media stem -> `MSP-IMPROV-S01A-F01-S-FM01`."""
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    utt_id = f"MSP-IMPROV-{match['rest']}"
    return utt_id if ID_PATTERN.match(utt_id) else None


def parse_evaluation(path: Path, encoding: str = "auto") -> list[Rating]:
    """The consensus lines of Evaluation.txt; each is followed by its raters' lines, which are counted."""
    text, _ = common.read_text(path, encoding)
    ratings: list[Rating] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(";")]
        if fields and fields[-1] == "":
            fields.pop()
        head = fields[0]
        if not re.match(r"^(UTD|MSP)-IMPROV-", head):
            if not ratings:
                raise ManifestError(f"a rater line before any consensus line (UTD-IMPROV-...avi; ...): {line!r}",
                                    source=path, line=number)
            if len(fields) < 2:
                raise ManifestError(f"expected 'RATER; Emotion; ...' fields separated by ';', got {line!r}",
                                    source=path, line=number)
            last = ratings[-1]
            ratings[-1] = Rating(last.utt_id, last.code, last.values, last.line, last.raters + 1)
            continue
        utt_id = utt_id_from_name(head)
        if utt_id is None:
            raise ManifestError(f"{head!r} is not an MSP-IMPROV file name (UTD-IMPROV-S01A-F01-S-FM01.avi style)",
                                source=path, line=number, field="utt_id")
        if utt_id in seen:
            raise ManifestError(f"{utt_id} repeats (first on line {seen[utt_id]})", source=path, line=number,
                                field="utt_id")
        if len(fields) < 2 or fields[1] not in CODES:
            got = fields[1] if len(fields) > 1 else "nothing"
            raise ManifestError(f"consensus label must be one of {list(CODES)}, got {got!r}", source=path,
                                line=number, field="label")
        values: dict[str, float] = {}
        for item in fields[2:]:
            match = VALUE_PATTERN.match(item)
            if not match:
                raise ManifestError(f"expected 'A:number', 'V:number', 'D:number' or 'N:number', got {item!r}",
                                    source=path, line=number, field=item.split(":")[0].strip() or None)
            values[match["key"]] = float(match["value"])  # float("NaN") is nan
        lacking = [k for k in ("A", "V", "D") if k not in values]
        if lacking:
            raise ManifestError(f"consensus line lacks {lacking}", source=path, line=number, field=lacking[0])
        seen[utt_id] = number
        ratings.append(Rating(utt_id, fields[1], values, number))
    return ratings


def find_evaluation(root: Path, name: str | None) -> Path:
    """The labels file: `evaluation_file` if set, else Evaluation.txt or Evalution.txt in any case of letters."""
    candidates = [name] if name else list(EVALUATION_NAMES)
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    if not name:
        found = [n for n in common.list_names(root, ".txt") if n.lower() in {c.lower() for c in candidates}]
        if found:
            return root / found[0]
    raise common.CorpusLayoutError(f"{CORPUS}: no {' or '.join(candidates)} in {root}; set the option evaluation_file "
                                   "to the labels file's path common.relative to the root")


def index_media(root: Path) -> tuple[dict[str, Path], dict[str, Path], int]:
    """id -> wav and id -> avi anywhere under the root (both packagings); the count of unrecognised names."""
    wavs: dict[str, Path] = {}
    avis: dict[str, Path] = {}
    unrecognised = 0
    for path in common.walk_files(root, (".wav", ".avi")):
        utt_id = utt_id_from_name(path.stem) if path.stem.startswith("MSP-IMPROV-") else None
        if utt_id is None:
            unrecognised += 1
            continue
        table = wavs if path.suffix.lower() == ".wav" else avis
        if utt_id in table:
            raise common.CorpusLayoutError(f"{CORPUS}: {utt_id} has two {path.suffix} files: {table[utt_id]} and "
                                           f"{path}; keep one packaging of the corpus under the root")
        table[utt_id] = path
    return wavs, avis, unrecognised


def read_transcript(path: Path, encoding: str) -> str:
    text, _ = common.read_text(path, encoding)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    """Read an MSP-IMPROV release at `root` into manifest records (see the module docstring)."""
    opts = common.resolve_options(CORPUS, DEFAULTS, options)
    scheme = common.label_scheme(CORPUS, opts, LABEL_SETS, CODES)
    sessions = set(common.option_list(CORPUS, opts, "sessions", allowed=[1, 2, 3, 4, 5, 6]))
    conditions = set(common.option_list(CORPUS, opts, "conditions", allowed=CONDITIONS))
    encoding = common.option_encoding(CORPUS, opts)
    root = common.require_root(root, CORPUS, hint="point it at the MSP-IMPROV folder holding Evaluation.txt")
    evaluation = find_evaluation(root, opts["evaluation_file"])
    ratings = parse_evaluation(evaluation, encoding)
    wavs, avis, unrecognised = index_media(root)
    transcripts = {p.stem: p for p in common.list_files(root / opts["transcripts"], ".txt")}

    stats: dict[str, Any] = {"evaluation_file": common.relative(evaluation, root), "missing_audio": 0,
                             "missing_video": 0, "missing_text": 0, "dropped_unlabelled": 0, "dropped_by_options": 0,
                             "unrecognised_media": unrecognised, "conditions": {}}
    rated = {r.utt_id for r in ratings}
    stats["unannotated_media"] = len((set(wavs) | set(avis)) - rated)
    utterances: list[Utterance] = []
    for rating in tqdm(ratings, desc="msp_improv", unit="utt", disable=None):
        parts = ID_PATTERN.match(rating.utt_id)
        session = int(parts["session"])
        if session not in sessions or parts["condition"] not in conditions:
            stats["dropped_by_options"] += 1
            continue
        label, keep = scheme.assign(rating.code)
        if not keep:
            stats["dropped_unlabelled"] += 1
            continue
        audio = Segment(common.relative(wavs[rating.utt_id], root)) if rating.utt_id in wavs else None
        video = VideoSegment(common.relative(avis[rating.utt_id], root)) if rating.utt_id in avis else None
        text = read_transcript(transcripts[rating.utt_id], encoding) \
            if rating.utt_id in transcripts else None
        stats["missing_audio"] += audio is None
        stats["missing_video"] += video is None
        stats["missing_text"] += text is None
        vad = {VAD_NAMES[k]: v for k, v in rating.values.items() if k in VAD_NAMES and math.isfinite(v)}
        extra: dict[str, Any] = {"code": rating.code, "condition": parts["condition"],
                                 "scenario": parts["sentence"] + parts["scenario"],
                                 "raters": rating.raters}
        if math.isfinite(rating.values.get("N", math.nan)):
            extra["naturalness"] = rating.values["N"]
        stats["conditions"][parts["condition"]] = stats["conditions"].get(parts["condition"], 0) + 1
        utterances.append(Utterance(
            utt_id=rating.utt_id, corpus=CORPUS, speaker=parts["gender"] + parts["session"],
            session=f"session{session}", audio=audio, video=video, text=text, label=label, vad=vad or None,
            extra=extra))
    utterances.sort(key=lambda u: u.utt_id)
    stats["conditions"] = dict(sorted(stats["conditions"].items()))
    stats.update(scheme.stats())
    stats.update(common.summarise(utterances, scheme.classes))
    return PreparedCorpus(utterances, list(scheme.classes), stats)
