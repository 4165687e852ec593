"""MELD (declare-lab) as extracted from MELD.Raw.tar.gz: three CSVs and one folder of mp4 clips per split.

One utterance per CSV row; its clip `dia{Dialogue_ID}_utt{Utterance_ID}.mp4` gives both the video and the audio
(the extractors decode the mp4's sound track). Dialogue ids restart in each split, so ids carry the split:
`train_dia0_utt0`. The official split goes into `split`; `session` is the Friends episode (S01E08).

Traps handled (docs/corpora.md): CRLF line ends, curly quotes, quoted fields holding commas (the times always
do), `0:` and `00:` hours, UTF-8 or cp1252 text, dialogue and utterance id gaps (turns are renumbered 0..n-1),
a clip that is missing (the utterance keeps its text, has no audio/video, and is listed in stats), clips without
a CSV row (ignored, listed in stats), the corrupt train clip dia125_utt3 (kept; extraction marks it missing);
times with one to three digits after the comma (`00:06:47,28` is 407.28 s), read as a decimal fraction.

Protocols (`PROTOCOLS`, for `models.<m>.protocol`): `speaker`, `dialogue` and `official` all mean the official
train/dev/test split (MELD's speakers recur across its splits, so no speaker-independent protocol is standard).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.corpora import PreparedCorpus, common
from pipeline.manifest import ManifestError, Segment, Utterance, VideoSegment

log = logging.getLogger(__name__)

CORPUS = "meld"
HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
          "Episode", "StartTime", "EndTime"]
EMOTIONS = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")  # the official index order
SENTIMENTS = ("neutral", "positive", "negative")
LABEL_SETS: dict[str, dict[str, Any]] = {
    "emotion": {"column": "Emotion", "classes": list(EMOTIONS), "label_map": {}},
    "sentiment": {"column": "Sentiment", "classes": list(SENTIMENTS), "label_map": {}},
}
SPLITS = ("train", "dev", "test")
PROTOCOLS: dict[str, dict[str, Any]] = {
    name: {"protocol": "holdout", "val": "official"} for name in ("speaker", "dialogue", "official")
}
DEFAULTS: dict[str, Any] = {
    **common.label_defaults("emotion"),
    "splits": list(SPLITS),
    "csv": {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"},
    "clips": {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"},
    "encoding": "auto",
}
# hh:mm:ss,fff with one to three fractional digits, read as a decimal fraction: the release has `00:06:47,28`
# (train and test), which is 407.28 s, not 407.028 s.
TIME_PATTERN = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})[,.](?P<frac>\d{1,3})$")


def parse_time(value: str, source: Path, line: int, field: str) -> float:
    """`00:16:16,059`, `0:16:16,059` or `00:06:47,28` (= 407.28) -> seconds into the episode."""
    match = TIME_PATTERN.match(value.strip())
    if not match:
        raise ManifestError(f"expected a time hh:mm:ss,fff (1 to 3 digits after the comma), got {value!r}",
                            source=source, line=line, field=field)
    fraction = int(match["frac"]) / 10 ** len(match["frac"])
    return round(int(match["h"]) * 3600 + int(match["m"]) * 60 + int(match["s"]) + fraction, 3)


def _integer(value: str, source: Path, line: int, field: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ManifestError(f"expected a whole number, got {value!r}", source=source, line=line,
                            field=field) from None
    if number < 0:
        raise ManifestError(f"must not be negative, got {number}", source=source, line=line, field=field)
    return number


def read_rows(path: Path, encoding: str = "auto") -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """The checked rows of one `<split>_sent_emo.csv` as (line number, typed row), and the encoding found."""
    text, found = common.read_text(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError("empty file, expected the MELD header", source=path, line=1) from None
    header = [name.strip() for name in header]  # a trailing space or tab after EndTime in edited copies
    if header != HEADER:
        wrong = next((i for i, (a, b) in enumerate(zip(header, HEADER, strict=False)) if a != b),
                     min(len(header), len(HEADER)))
        got = header[wrong] if wrong < len(header) else "<end of line>"
        wanted = HEADER[wrong] if wrong < len(HEADER) else "<end of line>"
        raise ManifestError(f"header column {wrong + 1} is {got!r}, expected {wanted!r} (the header must be "
                            f"{','.join(HEADER)})", source=path, line=1, field=wanted)
    rows = []
    seen: dict[tuple[int, int], int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):  # blank or whitespace-only lines (a trailing CRLF, edited copies)
            continue
        if len(fields) != len(HEADER):
            raise ManifestError(f"expected {len(HEADER)} comma-separated fields, got {len(fields)} (an unquoted "
                                "comma?)", source=path, line=line)
        record = dict(zip(HEADER, fields, strict=True))
        row: dict[str, Any] = {"text": record["Utterance"].strip(), "speaker": record["Speaker"].strip()}
        if not row["speaker"]:
            raise ManifestError("is empty", source=path, line=line, field="Speaker")
        for column in ("Dialogue_ID", "Utterance_ID", "Season", "Episode"):
            row[column] = _integer(record[column], path, line, column)
        for column, allowed in (("Emotion", EMOTIONS), ("Sentiment", SENTIMENTS)):
            value = record[column].strip()
            if value not in allowed:
                raise ManifestError(f"{value!r} is not one of {list(allowed)}", source=path, line=line, field=column)
            row[column] = value
        row["start"] = parse_time(record["StartTime"], path, line, "StartTime")
        row["end"] = parse_time(record["EndTime"], path, line, "EndTime")
        key = (row["Dialogue_ID"], row["Utterance_ID"])
        if key in seen:
            raise ManifestError(f"dialogue {key[0]} utterance {key[1]} repeats (first on line {seen[key]})",
                                source=path, line=line, field="Utterance_ID")
        seen[key] = line
        rows.append((line, row))
    return rows, found


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    """Read an extracted MELD.Raw folder at `root` into manifest records (see the module docstring)."""
    opts = common.resolve_options(CORPUS, DEFAULTS, options)
    column = LABEL_SETS[common.option_choice(CORPUS, opts, "label_set", sorted(LABEL_SETS))]["column"]
    scheme = common.label_scheme(CORPUS, opts, LABEL_SETS, EMOTIONS if column == "Emotion" else SENTIMENTS)
    splits = common.option_list(CORPUS, opts, "splits", allowed=SPLITS)
    encoding = common.option_encoding(CORPUS, opts)
    csv_names = common.option_mapping(CORPUS, opts, "csv")
    clip_dirs = common.option_mapping(CORPUS, opts, "clips")
    for name, table in (("csv", csv_names), ("clips", clip_dirs)):
        lacking = [s for s in splits if not isinstance(table.get(s), str)]
        if lacking:
            raise common.CorpusOptionError(f"{CORPUS}: option {name!r} names no file for split(s) {lacking}")
    root = common.require_root(root, CORPUS, [csv_names[s] for s in splits],
                               hint="point it at the extracted MELD.Raw folder (the one holding train_sent_emo.csv)")

    stats: dict[str, Any] = {"encodings": {}, "missing_clips": [], "unannotated_clips": [], "dropped_unlabelled": 0}
    utterances: list[Utterance] = []
    turn_keys: dict[str, int] = {}
    for split in splits:
        csv_path = root / csv_names[split]
        clip_dir = root / clip_dirs[split]
        if not clip_dir.is_dir():
            raise common.CorpusLayoutError(f"{CORPUS}: clip folder {clip_dir} for split {split!r} is missing; extract "
                                           f"{split}.tar.gz from MELD.Raw.tar.gz into {root}")
        clips = common.stem_index(clip_dir, ".mp4", CORPUS)  # dia0_utt0 -> dia0_utt0.mp4 (or .MP4)
        clip_dir_path = common.relative(clip_dir, root)
        rows, stats["encodings"][split] = read_rows(csv_path, encoding)
        annotated = set()
        for _, row in tqdm(rows, desc=f"meld {split}", unit="utt", disable=None):
            clip_stem = f"dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
            annotated.add(clip_stem)
            label, keep = scheme.assign(row[column])
            if not keep:
                stats["dropped_unlabelled"] += 1
                continue
            audio = video = None
            if clip_stem in clips:
                clip = clips[clip_stem] if clip_dir_path == "." else f"{clip_dir_path}/{clips[clip_stem]}"
                audio, video = Segment(clip), VideoSegment(clip)
            else:
                stats["missing_clips"].append(f"{clip_dirs[split]}/{clip_stem}.mp4")
            utt_id = f"{split}_dia{row['Dialogue_ID']}_utt{row['Utterance_ID']}"
            utterances.append(Utterance(
                utt_id=utt_id, corpus=CORPUS, speaker=row["speaker"],
                session=f"S{row['Season']:02d}E{row['Episode']:02d}", dialogue_id=f"{split}_dia{row['Dialogue_ID']}",
                audio=audio, video=video, text=row["text"], label=label, split=split,
                extra={"code": row[column], "emotion": row["Emotion"], "sentiment": row["Sentiment"],
                       "episode_start": row["start"], "episode_end": row["end"]}))
            turn_keys[utt_id] = row["Utterance_ID"]
        stats["unannotated_clips"] += [f"{clip_dirs[split]}/{clips[stem]}" for stem in sorted(set(clips) - annotated)]
    utterances = common.number_turns(utterances, lambda u: turn_keys[u.utt_id])
    stats.update(scheme.stats())
    stats.update(common.summarise(utterances, scheme.classes))
    return PreparedCorpus(utterances, list(scheme.classes), stats)
