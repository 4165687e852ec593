"""CREMA-D (CheyneyComputerScience/CREMA-D, a Git LFS repository): acted sentences, one wav and one flv per clip.

A clip `1001_DFA_ANG_XX` is actor _ sentence _ emotion _ level; every part is checked, so the misnamed
`1040_ITH_SAD_X.wav` of older clones fails with its path (or is skipped and listed, with `bad_names: skip`).
Speakers (and sessions, the unit of folds) are the 91 actors. Labels are the intended emotion of the file name
by default, or the majority vote of the perception study (`processedResults/summaryTable.csv`): voice, face or
multimodal; a vote without a single winner leaves the clip unlabelled.

A clone or zip download made without git-lfs holds ~130-byte pointer files instead of media. They are detected by
their first bytes; by default that is an error before anything else happens (`lfs_pointers: missing` instead
treats those clips' media as missing). Blank (0-byte) media files are treated as missing and counted.

Audio is read from `audio_dir`, whose files have the extension `audio_format` says: `auto` (the default) takes it
from the release's folder name (`AudioWAV` -> .wav, `AudioMP3` -> .mp3; any other folder needs the option). File
names are matched whatever the case of the extension (`.WAV`); two files differing only in that case are an error
naming both. With `audio_from_video: true` a clip without an audio file (or a checkout without `AudioWAV/`) takes
its audio from the sound track of its FLV.

Protocols (`PROTOCOLS`, for `models.<m>.protocol`): `speaker` = 5 speaker-disjoint folds over the 91 actors (in id
order, about 18 actors each; validation = the next fold's actors); `dialogue` = the same folds (the clips are
isolated utterances, so whole "dialogues" are single clips).
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

CORPUS = "crema_d"
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
LEVELS = ("LO", "MD", "HI", "XX")
VOTE_LETTERS = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
VOTE_COLUMNS = {"voice": "VoiceVote", "face": "FaceVote", "multimodal": "MultiModalVote"}
LABEL_SETS: dict[str, dict[str, Any]] = {
    "6class": {"classes": ["ang", "dis", "fea", "hap", "neu", "sad"],
               "label_map": {code: code.lower() for code in EMOTIONS}},
}
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
DEFAULTS: dict[str, Any] = {
    **common.label_defaults("6class"),
    "label_source": "intended",
    "audio_dir": "AudioWAV",
    "audio_format": "auto",
    "audio_from_video": False,
    "video_dir": "VideoFlash",
    "votes_file": "processedResults/summaryTable.csv",
    "sentences": dict(SENTENCES),
    "bad_names": "error",
    "lfs_pointers": "error",
    "encoding": "auto",
}
AUDIO_FOLDERS = {"audiowav": "wav", "audiomp3": "mp3"}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "speaker": {"protocol": "speaker_folds", "folds": 5, "val": "next"},
    "dialogue": {"protocol": "speaker_folds", "folds": 5, "val": "next"},
}


def audio_suffix(options: dict[str, Any]) -> str:
    """The audio files' extension: `audio_format`, or under `auto` the one the release's folder name implies."""
    fmt = common.option_choice(CORPUS, options, "audio_format", ["auto", "wav", "mp3"])
    if fmt == "auto":
        folder = Path(str(options["audio_dir"])).name.lower()
        if folder not in AUDIO_FOLDERS:
            raise common.CorpusOptionError(f"{CORPUS}: option 'audio_format' is auto, but audio_dir "
                                           f"{options['audio_dir']!r} is neither AudioWAV nor AudioMP3; set "
                                           "audio_format: wav or mp3")
        fmt = AUDIO_FOLDERS[folder]
    return f".{fmt}"


def check_name(stem: str, sentences: dict[str, str]) -> str | None:
    """Why a clip name is not `ACTOR_SENTENCE_EMOTION_LEVEL`, or None when it is."""
    parts = stem.split("_")
    if len(parts) != 4:
        return f"has {len(parts)} '_'-separated fields, expected 4 (ACTOR_SENTENCE_EMOTION_LEVEL)"
    actor, sentence, emotion, level = parts
    if not re.fullmatch(r"\d{4}", actor):
        return f"actor {actor!r} is not a 4-digit id"
    if sentence not in sentences:
        return f"sentence {sentence!r} is not one of {sorted(sentences)}"
    if emotion not in EMOTIONS:
        return f"emotion {emotion!r} is not one of {list(EMOTIONS)}"
    if level not in LEVELS:
        return f"level {level!r} is not one of {list(LEVELS)}"
    return None


def read_votes(path: Path, column: str, encoding: str) -> tuple[dict[str, str | None], int]:
    """clip -> emotion code of the majority vote in `column` (None when tied or blank), and the tie count."""
    text, _ = common.read_text(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    for needed in ("FileName", column):
        if needed not in header:
            raise ManifestError(f"no column {needed!r} in header {header}", source=path, line=1, field=needed)
    name_at, vote_at = header.index("FileName"), header.index(column)
    votes: dict[str, str | None] = {}
    ties = 0
    for fields in reader:
        if not any(f.strip() for f in fields):  # blank or whitespace-only lines
            continue
        if len(fields) != len(header):
            raise ManifestError(f"expected {len(header)} fields, got {len(fields)}", source=path,
                                line=reader.line_num)
        name, vote = fields[name_at].strip(), fields[vote_at].strip()
        if name in votes:
            raise ManifestError(f"clip {name!r} repeats", source=path, line=reader.line_num, field="FileName")
        votes[name] = VOTE_LETTERS.get(vote)
        ties += votes[name] is None
    return votes, ties


def _index_media(root: Path, opts: dict[str, Any], suffix: str, sentences: dict[str, str], bad_names: str,
                 stats: dict[str, Any]) -> dict[str, dict[str, Path]]:
    """clip stem -> {"audio": path, "video": path}; a badly named clip fails or, with `bad_names: skip`, is listed
    in `stats["bad_names"]` and left out."""
    media: dict[str, dict[str, Path]] = {}
    for modality, folder, ext in (("audio", opts["audio_dir"], suffix), ("video", opts["video_dir"], ".flv")):
        for stem, name in common.stem_index(root / folder, ext, CORPUS).items():
            path = root / folder / name
            problem = check_name(stem, sentences)
            if problem is not None:
                if bad_names == "error":
                    raise ManifestError(f"clip name {path.name!r} {problem}; rename it (CREMA-D issue #6) or set "
                                        "bad_names: skip", source=path, field="file name")
                stats["bad_names"].append(common.relative(path, root))
                continue
            media.setdefault(stem, {})[modality] = path
    return media


def _clip_segments(clip: dict[str, Path], root: Path, bad: set[Path], from_video: bool,
                   stats: dict[str, Any]) -> dict[str, Segment | None]:
    """A clip's audio and video segments (None for a missing, empty or LFS-pointer file; audio read from the video
    with `audio_from_video`), counted in `stats`."""
    segments: dict[str, Segment | None] = {}
    for modality, kind in (("audio", Segment), ("video", VideoSegment)):
        path = clip.get(modality)
        borrowed = modality == "audio" and path is None and from_video
        if borrowed:
            path = clip.get("video")
        if path is not None and path not in bad and path.stat().st_size == 0:
            stats["empty_media"] += 1
            path = None
        segments[modality] = kind(common.relative(path, root)) if path is not None and path not in bad else None
        stats["audio_from_video"] += borrowed and segments[modality] is not None
        stats[f"missing_{modality}"] += segments[modality] is None
    return segments


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    """Read a CREMA-D checkout at `root` into manifest records (see the module docstring)."""
    opts = common.resolve_options(CORPUS, DEFAULTS, options)
    scheme = common.label_scheme(CORPUS, opts, LABEL_SETS, EMOTIONS)
    source = common.option_choice(CORPUS, opts, "label_source", ["intended", *VOTE_COLUMNS])
    bad_names = common.option_choice(CORPUS, opts, "bad_names", ["error", "skip"])
    lfs_policy = common.option_choice(CORPUS, opts, "lfs_pointers", ["error", "missing"])
    encoding = common.option_encoding(CORPUS, opts)
    sentences = common.option_mapping(CORPUS, opts, "sentences")
    if not sentences or not all(isinstance(v, str) for v in sentences.values()):
        raise common.CorpusOptionError(f"{CORPUS}: option 'sentences' must map sentence codes to their text")
    suffix = audio_suffix(opts)
    from_video = common.option_bool(CORPUS, opts, "audio_from_video")
    root = common.require_root(root, CORPUS, [opts["video_dir"] if from_video else opts["audio_dir"]],
                               hint="point it at the CREMA-D checkout (the folder holding AudioWAV/ and VideoFlash/)"
                               + ("" if from_video else ", or set audio_from_video: true to read audio from the FLVs"))

    stats: dict[str, Any] = {"bad_names": [], "lfs_pointers": 0, "empty_media": 0, "missing_audio": 0,
                             "missing_video": 0, "dropped_unlabelled": 0, "audio_from_video": 0}
    media = _index_media(root, opts, suffix, sentences, bad_names, stats)
    if not media:
        raise common.CorpusLayoutError(f"{CORPUS}: no clips in {root / opts['audio_dir']} or "
                                       f"{root / opts['video_dir']}")

    pointers = [p for clip in tqdm(media.values(), desc="crema_d LFS check", unit="clip", disable=None)
                for p in clip.values() if common.is_lfs_pointer(p)]
    stats["lfs_pointers"] = len(pointers)
    if pointers and lfs_policy == "error":
        examples = ", ".join(common.relative(p, root) for p in pointers[:3])
        raise common.CorpusLayoutError(f"{CORPUS}: {len(pointers)} media files under {root} are Git LFS pointer "
                                       f"files, not media (e.g. {examples}); the checkout was made without "
                                       f"git-lfs. Run `git lfs install && git lfs pull` in {root}, or set "
                                       "lfs_pointers: missing")

    votes: dict[str, str | None] = {}
    if source != "intended":
        votes_path = root / opts["votes_file"]
        if not votes_path.is_file():
            raise common.CorpusLayoutError(f"{CORPUS}: label_source {source!r} needs {votes_path}, which is missing")
        votes, stats["vote_ties"] = read_votes(votes_path, VOTE_COLUMNS[source], encoding)
        stats["without_votes"] = sum(1 for stem in media if stem not in votes)

    bad = set(pointers)
    utterances = []
    for stem in sorted(media):
        parts = dict(zip(("actor", "sentence", "emotion", "level"), stem.split("_"), strict=True))
        segments = _clip_segments(media[stem], root, bad, from_video, stats)
        code = parts["emotion"] if source == "intended" else votes.get(stem)
        label, keep = scheme.assign(code)
        if not keep:
            stats["dropped_unlabelled"] += 1
            continue
        utterances.append(Utterance(
            utt_id=stem, corpus=CORPUS, speaker=parts["actor"], session=parts["actor"], audio=segments["audio"],
            video=segments["video"], text=sentences[parts["sentence"]], label=label,
            extra={"code": code, "sentence": parts["sentence"], "level": parts["level"], "intended": parts["emotion"]}))
    stats.update(scheme.stats())
    stats.update(common.summarise(utterances, scheme.classes))
    return PreparedCorpus(utterances, list(scheme.classes), stats)
