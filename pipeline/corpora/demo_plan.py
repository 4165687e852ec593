"""The demo corpus's skeleton: its options (checked like every adapter's), its speakers and the plan of every
utterance (emotion, label, how strongly each modality shows the emotion, face and transcript modes).

The media are synthesized from a plan by `demo_audio`, `demo_video` and `demo_text`; `demo` writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.corpora.common import CorpusOptionError, resolve_options

CORPUS = "demo"
EMOTIONS = ("ang", "hap", "neu", "sad")  # the emotions the voices, faces and lexicon know
# Every option and its default. The defaults reproduce the generator as it was before the per-modality
# difficulty options existed; params.yaml (`corpora.demo.options`) sets the demo's own values, with the reasons.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "classes": list(EMOTIONS),
    "sessions": 4,
    "dialogues_per_session": 6,
    "turns": [12, 16],
    "mood_persistence": 0.6,
    "unlabelled_fraction": 0.2,
    "no_face_fraction": 0.08,
    "partial_face_fraction": 0.12,
    "empty_text_fraction": 0.03,
    "text_cue_probability": 0.5,
    "text_misleading_probability": 0.1,
    "sample_rate": 16000,
    "video": {"fps": 10, "size": 128},
    "fer": {"train_per_class": 100, "test_per_class": 20, "margin": 0.2},
    "expression_strength": 1.0,
    "voice_intensity": [0.25, 1.0],  # per utterance, uniform in this range x the speaker's expressiveness
    "voice_valence_cue": 1.0,  # how much of a voice tells the emotions of one arousal level apart (1: all of it)
    "face_intensity": [0.3, 1.0],
    "articulation": 0.0,  # jaw opening of a talking face (0: the face does not talk)
    # Another "culture" from the same generator (demo_b): the corpus name in the manifest, a prefix that keeps its
    # speaker, session, dialogue and utterance ids apart from demo's, per-emotion ratios on the voice's pitch and
    # energy baselines ({} keeps VOICES), the word list carrying the text cues, and whether to write a FER set.
    "corpus": "demo",
    "speaker_prefix": "ses",
    "voice_shift": {},  # {emotion: {pitch: ratio, energy: ratio}}
    "lexicon": "default",  # default | alternate (demo_text.LEXICONS)
    "fer_set": True,
}
SHIFT_KEYS = ("pitch", "energy")
FRACTIONS = ("voice_valence_cue", "mood_persistence", "unlabelled_fraction", "no_face_fraction",
             "partial_face_fraction", "empty_text_fraction", "text_cue_probability", "text_misleading_probability")


def _number(name: str, value: Any, low: float = 0.0, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise CorpusOptionError(f"{CORPUS}: option {name!r} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _range(name: str, value: Any, high: float = float("inf")) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise CorpusOptionError(f"{CORPUS}: option {name!r} must be [low, high], got {value!r}")
    low, top = (_number(name, v, 0.0, high) for v in value)
    if low > top:
        raise CorpusOptionError(f"{CORPUS}: option {name!r} must be [low, high] with low <= high, got {value!r}")
    return [low, top]


def _sub_options(opts: dict[str, Any], name: str) -> dict[str, Any]:
    given = opts[name] or {}
    if not isinstance(given, Mapping):
        raise CorpusOptionError(f"{CORPUS}: option {name!r} must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(DEFAULTS[name]))
    if unknown:
        raise CorpusOptionError(f"{CORPUS}: unknown option(s) {[f'{name}.{k}' for k in unknown]}; "
                                f"known: {sorted(DEFAULTS[name])}")
    return {**DEFAULTS[name], **given}


def resolve_demo_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults overlaid with `options`; an unknown name or a value out of range is a CorpusOptionError."""
    opts = resolve_options(CORPUS, DEFAULTS, options)
    unknown = sorted(set(opts["classes"]) - set(EMOTIONS))
    if unknown or not opts["classes"]:
        raise CorpusOptionError(f"{CORPUS}: option 'classes' must be among {list(EMOTIONS)}, got {opts['classes']}")
    for name in FRACTIONS:
        _number(name, opts[name], 0.0, 1.0)
    if opts["empty_text_fraction"] + opts["text_cue_probability"] + opts["text_misleading_probability"] > 1:
        raise CorpusOptionError(f"{CORPUS}: empty_text_fraction + text_cue_probability + "
                                "text_misleading_probability must be at most 1")
    if opts["no_face_fraction"] + opts["partial_face_fraction"] > 1:
        raise CorpusOptionError(f"{CORPUS}: no_face_fraction + partial_face_fraction must be at most 1")
    opts["turns"] = [int(v) for v in _range("turns", opts["turns"])]
    opts["voice_intensity"] = _range("voice_intensity", opts["voice_intensity"])
    opts["face_intensity"] = _range("face_intensity", opts["face_intensity"])
    _number("expression_strength", opts["expression_strength"])
    _number("articulation", opts["articulation"])
    _identity_options(opts)
    opts["video"] = _sub_options(opts, "video")
    opts["fer"] = _sub_options(opts, "fer")
    return opts


def _identity_options(opts: dict[str, Any]) -> None:
    """The options that make another corpus ("culture") of the same generator: checked in place."""
    import re

    for name in ("corpus", "speaker_prefix"):
        if not isinstance(opts[name], str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", opts[name]):
            raise CorpusOptionError(f"{CORPUS}: option {name!r} must be a name of letters, digits and _, "
                                    f"got {opts[name]!r}")
    shift = opts["voice_shift"] or {}
    if not isinstance(shift, Mapping) or any(e not in EMOTIONS or not isinstance(v, Mapping)
                                             or set(v) - set(SHIFT_KEYS) for e, v in shift.items()):
        raise CorpusOptionError(f"{CORPUS}: option 'voice_shift' must map emotions {list(EMOTIONS)} to "
                                f"{{pitch: ratio, energy: ratio}}, got {shift!r}")
    opts["voice_shift"] = {e: {k: _number(f"voice_shift.{e}.{k}", r, 0.25, 4.0) for k, r in v.items()}
                           for e, v in sorted(shift.items())}
    if opts["lexicon"] not in ("default", "alternate"):
        raise CorpusOptionError(f"{CORPUS}: option 'lexicon' must be default or alternate, got {opts['lexicon']!r}")
    if not isinstance(opts["fer_set"], bool):
        raise CorpusOptionError(f"{CORPUS}: option 'fer_set' must be true or false, got {opts['fer_set']!r}")


@dataclass
class Speaker:
    speaker_id: str
    session: str
    gender: str
    f0: float
    rate: float
    loudness: float
    formant_scale: float
    flip: bool
    tint: tuple[float, float, float]
    scale: float
    expressiveness: float


@dataclass
class Plan:
    utt_id: str
    dialogue_id: str
    turn: int
    speaker: Speaker
    emotion: str
    labelled: bool
    audio_intensity: float
    face_intensity: float
    text_mode: str  # "cue" | "filler" | "misleading" | "empty"
    face_mode: str  # "visible" | "absent" | "partial"
    seed: tuple[int, ...]


def make_speakers(rng: np.random.Generator, sessions: int, prefix: str = "ses") -> list[Speaker]:
    speakers = []
    for s in range(1, sessions + 1):
        for gender in ("F", "M"):
            female = gender == "F"
            speakers.append(Speaker(
                speaker_id=f"{prefix}{s}{gender}", session=f"{prefix}{s}", gender=gender,
                f0=float(rng.uniform(185, 235) if female else rng.uniform(95, 135)),
                rate=float(rng.uniform(3.6, 5.0)), loudness=float(rng.uniform(0.75, 1.25)),
                formant_scale=float(rng.uniform(1.05, 1.15) if female else rng.uniform(0.9, 1.0)),
                flip=bool(rng.random() < 0.5),
                tint=tuple(float(x) for x in rng.uniform(0.8, 1.2, size=3)),
                scale=float(rng.uniform(0.92, 1.06)), expressiveness=float(rng.uniform(0.7, 1.0))))
    return speakers


def plan_corpus(options: Mapping[str, Any]) -> list[Plan]:
    """Decide every utterance's content (cheap, no media): the deterministic skeleton of the corpus."""
    opts = resolve_demo_options(options)
    seed = int(opts["seed"])
    classes = list(opts["classes"])
    rng = np.random.default_rng([seed, 0])
    speakers = make_speakers(rng, int(opts["sessions"]), str(opts["speaker_prefix"]))
    lo, hi = opts["turns"]
    persistence = float(opts["mood_persistence"])
    no_face, partial_face = float(opts["no_face_fraction"]), float(opts["partial_face_fraction"])
    empty_text, cue = float(opts["empty_text_fraction"]), float(opts["text_cue_probability"])
    misleading = float(opts["text_misleading_probability"])
    voice_lo, voice_hi = (float(v) for v in opts["voice_intensity"])
    face_lo, face_hi = (float(v) for v in opts["face_intensity"])
    plans: list[Plan] = []
    for s in range(len(speakers) // 2):
        pair = speakers[2 * s: 2 * s + 2]
        for d in range(1, int(opts["dialogues_per_session"]) + 1):
            dialogue_id = f"{pair[0].session}_dlg{d:02d}"
            mood = classes[int(rng.integers(len(classes)))]
            first = int(rng.integers(2))
            for turn in range(int(rng.integers(lo, hi + 1))):
                speaker = pair[(first + turn) % 2]
                emotion = mood if rng.random() < persistence else classes[int(rng.integers(len(classes)))]
                u = rng.random()
                text_mode = ("empty" if u < empty_text else "cue" if u < empty_text + cue
                             else "misleading" if u < empty_text + cue + misleading else "filler")
                v = rng.random()
                face_mode = "absent" if v < no_face else "partial" if v < no_face + partial_face else "visible"
                plans.append(Plan(
                    utt_id=f"{dialogue_id}_{turn:03d}", dialogue_id=dialogue_id, turn=turn, speaker=speaker,
                    emotion=emotion, labelled=bool(rng.random() >= float(opts["unlabelled_fraction"])),
                    audio_intensity=float(rng.uniform(voice_lo, voice_hi)) * speaker.expressiveness,
                    face_intensity=float(rng.uniform(face_lo, face_hi)) * speaker.expressiveness,
                    text_mode=text_mode, face_mode=face_mode, seed=(seed, s, d, turn)))
    return plans
