"""IEMOCAP (USC SAIL) as released in `IEMOCAP_full_release/`: dyadic dialogues, split-screen video, EmoEvaluation.

Utterances come from the block heads of `Session<N>/dialog/EmoEvaluation/<dialogue>.txt` (times, consensus code,
valence/arousal/dominance); text from `dialog/transcriptions/<dialogue>.txt`; audio from the per-utterance wavs
in `sentences/wav/<dialogue>/` (or cut from the dialogue wav); video is cut from the dialogue's split-screen avi.

Traps handled (docs/corpora.md): `a`/`b` dialogue suffixes; transcript ids with `XX` that have no wav; macOS `._`
twins; the speaker of a turn is session + the letter starting the utterance id's last field (the letter after
`SesNN` only says who wore the motion-capture markers); EmoEvaluation lists one actor's turns before the
other's, so turns are numbered by start time; which half of the video shows which actor is an option.

Labels: `4class` (MMIN, SSMM: ang, hap = hap + exc, neu, sad; 5,531 utterances of the release) or `6class`
(MMGCN, DialogueRNN: hap, sad, neu, ang, exc, fru). The release's consensus code is always kept in `extra.code`,
so a frustrated utterance (`fru`) stays distinguishable from one without agreement (`xxx`) after both became
unlabelled; `outside_classes: drop` leaves such utterances out instead; stats.json counts every code (`codes`).

Protocols (`PROTOCOLS`, for `models.<m>.protocol`): `speaker` = MMIN's 10 leave-one-speaker-out folds, validation
on the test speaker's session partner; `dialogue` = MMGCN's holdout, sessions 1-4 train (10% of their dialogues
for validation) vs Session 5 test; `session` = 5 leave-one-session-out folds, validation on the next session.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.corpora import PreparedCorpus, common
from pipeline.manifest import FACE_REGIONS, ManifestError, Segment, Utterance, VideoSegment

log = logging.getLogger(__name__)

CORPUS = "iemocap"
# Consensus codes of the EmoEvaluation block heads (xxx = the annotators did not agree).
CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx")
LABEL_SETS: dict[str, dict[str, Any]] = {
    # MMIN / SSMM: 5,531 utterances, excited merged into happy.
    "4class": {"classes": ["ang", "hap", "neu", "sad"], "label_map": {"exc": "hap"}},
    # MMGCN / DialogueRNN ERC setting: 7,433 utterances.
    "6class": {"classes": ["hap", "sad", "neu", "ang", "exc", "fru"], "label_map": {}},
}
PROTOCOLS: dict[str, dict[str, Any]] = {
    "speaker": {"protocol": "speaker_folds", "val": "partner"},
    "dialogue": {"protocol": "holdout", "test_sessions": ["Ses05"], "val": 0.1},
    "session": {"protocol": "session_folds", "val": "next"},
}
DEFAULTS: dict[str, Any] = {
    **common.label_defaults("4class"),
    "sessions": [1, 2, 3, 4, 5],
    "audio": "sentences",
    "video": True,
    "face_region": {"mocap": "left", "partner": "right"},
    "face_region_by_speaker": {},
    "face_region_by_dialogue": {},
    "encoding": "auto",
}

DIALOGUE_PATTERN = re.compile(r"^Ses(?P<session>\d{2})(?P<mocap>[FM])_[A-Za-z0-9_]+$")
UTT_PATTERN = re.compile(r"^(?P<dialogue>Ses\d{2}[FM]_[A-Za-z0-9_]+)_(?P<speaker>[FM])[0-9A-Z]*$")
TIMES_PATTERN = re.compile(r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]$")
VAD_PATTERN = re.compile(r"^\[\s*(?P<v>-?\d+(?:\.\d+)?)\s*,\s*(?P<a>-?\d+(?:\.\d+)?)\s*,"
                         r"\s*(?P<d>-?\d+(?:\.\d+)?)\s*\]$")
TRANSCRIPT_PATTERN = re.compile(r"^(?P<utt>\S+)\s+\[(?P<start>\d+(?:\.\d+)?)-(?P<end>\d+(?:\.\d+)?)\]:\s?(?P<text>.*)$")


@dataclass(frozen=True)
class Block:
    """One EmoEvaluation block head: the utterance, its times in the dialogue, consensus code and V/A/D."""

    utt_id: str
    start: float
    end: float
    code: str
    vad: dict[str, float]
    line: int


def parse_emo_evaluation(path: Path, dialogue: str, encoding: str = "auto") -> list[Block]:
    """The block heads (lines starting with `[`) of one EmoEvaluation file; annotator lines are skipped."""
    text, _ = common.read_text(path, encoding)
    blocks = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.startswith("["):
            continue
        fields = [f.strip() for f in line.split("\t") if f.strip()]
        if len(fields) != 4:
            raise ManifestError(f"expected 4 tab-separated fields '[START - END]  UTT_ID  CODE  [V, A, D]', "
                                f"got {len(fields)}: {line!r}", source=path, line=number)
        times = TIMES_PATTERN.match(fields[0])
        if not times:
            raise ManifestError(f"expected '[START - END]' in seconds, got {fields[0]!r}", source=path,
                                line=number, field="time")
        start, end = float(times["start"]), float(times["end"])
        if not start < end:
            raise ManifestError(f"start {start} is not before end {end}", source=path, line=number, field="time")
        utt_id = fields[1]
        match = UTT_PATTERN.match(utt_id)
        if not match or match["dialogue"] != dialogue:
            raise ManifestError(f"{utt_id!r} is not an utterance id of dialogue {dialogue!r} "
                                f"(expected {dialogue}_F000 or {dialogue}_M000 style)", source=path, line=number,
                                field="utt_id")
        code = fields[2]
        if code not in CODES:
            raise ManifestError(f"unknown emotion code {code!r}; expected one of {list(CODES)}", source=path,
                                line=number, field="label")
        vad = VAD_PATTERN.match(fields[3])
        if not vad:
            raise ManifestError(f"expected '[V, A, D]' numbers, got {fields[3]!r}", source=path, line=number,
                                field="vad")
        blocks.append(Block(utt_id, start, end, code,
                            {"valence": float(vad["v"]), "arousal": float(vad["a"]), "dominance": float(vad["d"])},
                            number))
    return blocks


def parse_transcription(path: Path, encoding: str = "auto") -> tuple[dict[str, str], int]:
    """utt_id -> text of one transcription file, and the number of lines that are not `ID [t0-t1]: text`."""
    text, _ = common.read_text(path, encoding)
    texts: dict[str, str] = {}
    skipped = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = TRANSCRIPT_PATTERN.match(line)
        if not match:
            skipped += 1
            continue
        texts[match["utt"]] = match["text"].strip()
    return texts, skipped


class FaceSides:
    """Which half of a dialogue's split-screen video shows the speaker of a turn, from the options.

    Precedence: `face_region_by_dialogue` {dialogue: {F|M: side}}, then `face_region_by_speaker` {Ses01_F: side},
    then `face_region` {mocap: side, partner: side} by whether the speaker wore the markers in that dialogue
    (the letter after SesNN). The default puts the marker wearer on the left, as IoannisKansizoglou/
    Iemocap-preprocess does; check it on your copy and override per dialogue where it is wrong.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        by_role = common.option_mapping(CORPUS, options, "face_region")
        if set(by_role) != {"mocap", "partner"}:
            raise common.CorpusOptionError(f"{CORPUS}: option 'face_region' needs exactly the keys mocap and partner, "
                                           f"got {sorted(by_role)}")
        self.by_role = by_role
        self.by_speaker = common.option_mapping(CORPUS, options, "face_region_by_speaker")
        self.by_dialogue = {d: dict(v) if isinstance(v, dict) else v
                            for d, v in common.option_mapping(CORPUS, options, "face_region_by_dialogue").items()}
        for name, sides in [("face_region", by_role), ("face_region_by_speaker", self.by_speaker)]:
            for key, side in sides.items():
                if side not in FACE_REGIONS:
                    raise common.CorpusOptionError(f"{CORPUS}: option {name!r}: {key}: {side!r} is not one of "
                                                   f"{list(FACE_REGIONS)}")
        for dialogue, sides in self.by_dialogue.items():
            if not isinstance(sides, dict) or not set(sides) <= {"F", "M"} or \
                    not all(s in FACE_REGIONS for s in sides.values()):
                raise common.CorpusOptionError(f"{CORPUS}: option 'face_region_by_dialogue': {dialogue}: expected "
                                               f"{{F: side, M: side}} with sides in {list(FACE_REGIONS)}, "
                                               f"got {sides!r}")

    def side(self, dialogue: str, session: str, mocap_letter: str, speaker_letter: str) -> str:
        per_dialogue = self.by_dialogue.get(dialogue, {})
        if speaker_letter in per_dialogue:
            return per_dialogue[speaker_letter]
        speaker = speaker_id(session, speaker_letter)
        if speaker in self.by_speaker:
            return self.by_speaker[speaker]
        return self.by_role["mocap" if speaker_letter == mocap_letter else "partner"]


def speaker_id(session: str, letter: str) -> str:
    """One of the 10 actors: the session and the gender letter of the turn's speaker, e.g. `Ses01_F`."""
    return f"{session}_{letter}"


@dataclass(frozen=True)
class _Settings:
    """The adapter's options, resolved and checked."""

    scheme: common.LabelScheme
    sessions: list[int]
    audio_source: str  # sentences | dialog | none
    with_video: bool
    sides: FaceSides
    encoding: str


def _settings(options: dict[str, Any]) -> _Settings:
    opts = common.resolve_options(CORPUS, DEFAULTS, options)
    return _Settings(scheme=common.label_scheme(CORPUS, opts, LABEL_SETS, CODES),
                     sessions=common.option_list(CORPUS, opts, "sessions", allowed=[1, 2, 3, 4, 5]),
                     audio_source=common.option_choice(CORPUS, opts, "audio", ["sentences", "dialog", "none"]),
                     with_video=common.option_bool(CORPUS, opts, "video"), sides=FaceSides(opts),
                     encoding=common.option_encoding(CORPUS, opts))


@dataclass(frozen=True)
class _DialogueFiles:
    """One dialogue's id, session, transcript lines and media (paths common.relative to the corpus root)."""

    dialogue: str
    session: str
    mocap_letter: str
    texts: dict[str, str]
    dialog_wav: str | None  # the dialogue's wav, when audio is cut from it
    avi: str | None
    wav_dir: str  # the per-utterance wavs' folder
    wavs: dict[str, str]  # utt_id -> file name (.wav or .WAV)


def _dialogue_files(root: Path, number: int, eval_path: Path, settings: _Settings,
                    stats: dict[str, Any]) -> _DialogueFiles:
    dialogue = eval_path.stem
    match = DIALOGUE_PATTERN.match(dialogue)
    if not match or int(match["session"]) != number:
        raise ManifestError(f"file name {dialogue!r} is not a Session{number} dialogue id "
                            f"(Ses{number:02d}F_impro01 style)", source=eval_path)
    session_dir = root / f"Session{number}"
    transcript_dir = session_dir / "dialog" / "transcriptions"
    transcript_name = common.stem_index(transcript_dir, ".txt", CORPUS).get(dialogue)
    texts: dict[str, str] = {}
    if transcript_name is not None:
        texts, skipped = parse_transcription(transcript_dir / transcript_name, settings.encoding)
        stats["transcript_lines_skipped"] += skipped
    dialog_wav = None
    if settings.audio_source == "dialog":
        dialog_wavs = common.stem_index(session_dir / "dialog" / "wav", ".wav", CORPUS)
        if dialogue in dialog_wavs:
            dialog_wav = common.relative(session_dir / "dialog" / "wav" / dialog_wavs[dialogue], root)
    avi_dir = session_dir / "dialog" / "avi" / "DivX"
    avis = common.stem_index(avi_dir, ".avi", CORPUS) if settings.with_video else {}
    wav_dir = session_dir / "sentences" / "wav" / dialogue
    return _DialogueFiles(dialogue=dialogue, session=f"Ses{match['session']}", mocap_letter=match["mocap"],
                          texts=texts, dialog_wav=dialog_wav,
                          avi=common.relative(avi_dir / avis[dialogue], root) if dialogue in avis else None,
                          wav_dir=common.relative(wav_dir, root), wavs=common.stem_index(wav_dir, ".wav", CORPUS))


def _utterance(block: Block, label: str | None, files: _DialogueFiles, settings: _Settings,
               stats: dict[str, Any]) -> Utterance:
    """The manifest record of one EmoEvaluation block; counts what it lacks in `stats`."""
    speaker_letter = UTT_PATTERN.match(block.utt_id)["speaker"]
    audio = None
    if settings.audio_source == "sentences" and block.utt_id in files.wavs:
        audio = Segment(f"{files.wav_dir}/{files.wavs[block.utt_id]}")
    elif settings.audio_source == "dialog" and files.dialog_wav is not None:
        audio = Segment(files.dialog_wav, block.start, block.end)
    if audio is None and settings.audio_source != "none":
        stats["missing_audio"] += 1
    video = None
    if files.avi is not None:
        video = VideoSegment(files.avi, block.start, block.end,
                             settings.sides.side(files.dialogue, files.session, files.mocap_letter, speaker_letter))
    elif settings.with_video:
        stats["missing_video"] += 1
    text = files.texts.get(block.utt_id)
    if text is None:
        stats["missing_text"] += 1
    return Utterance(utt_id=block.utt_id, corpus=CORPUS, speaker=speaker_id(files.session, speaker_letter),
                     session=files.session, dialogue_id=files.dialogue, audio=audio, video=video, text=text,
                     label=label, vad=block.vad, extra={"code": block.code})


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    """Read IEMOCAP_full_release at `root` into manifest records (see the module docstring)."""
    settings = _settings(options)
    scheme = settings.scheme
    root = common.require_root(root, CORPUS, [f"Session{n}" for n in settings.sessions],
                               hint="point it at IEMOCAP_full_release/ (the folder holding Session1..Session5)")

    stats: dict[str, Any] = {"missing_audio": 0, "missing_video": 0, "missing_text": 0, "dropped_unlabelled": 0,
                             "transcript_ids_without_utterance": 0, "transcript_lines_skipped": 0}
    utterances: list[Utterance] = []
    starts: dict[str, float] = {}
    eval_files = [(n, f) for n in sorted(settings.sessions)
                  for f in common.list_files(root / f"Session{n}" / "dialog" / "EmoEvaluation", ".txt")]
    if not eval_files:
        raise common.CorpusLayoutError(f"{CORPUS}: no EmoEvaluation files under {root}/Session*/dialog/EmoEvaluation")
    seen: dict[str, str] = {}
    for number, eval_path in tqdm(eval_files, desc="iemocap dialogues", unit="dlg", disable=None):
        files = _dialogue_files(root, number, eval_path, settings, stats)
        blocks = parse_emo_evaluation(eval_path, files.dialogue, settings.encoding)
        block_ids = {b.utt_id for b in blocks}
        stats["transcript_ids_without_utterance"] += sum(1 for t in files.texts if t not in block_ids)
        for block in blocks:
            if block.utt_id in seen:
                raise ManifestError(f"duplicate utterance {block.utt_id!r} (also in {seen[block.utt_id]})",
                                    source=eval_path, line=block.line, field="utt_id")
            seen[block.utt_id] = f"{eval_path}:{block.line}"
            label, keep = scheme.assign(block.code)
            if not keep:
                stats["dropped_unlabelled"] += 1
                continue
            utterances.append(_utterance(block, label, files, settings, stats))
            starts[block.utt_id] = block.start
    utterances = common.number_turns(utterances, lambda u: starts[u.utt_id])
    stats.update(scheme.stats())
    stats.update(common.summarise(utterances, scheme.classes))
    return PreparedCorpus(utterances, list(scheme.classes), stats)
