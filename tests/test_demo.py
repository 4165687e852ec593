"""The demo corpus: deterministic from its seed, and shaped as the pipeline needs it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.corpora import demo
from pipeline.manifest import validate

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"seed": 3, "sessions": 1, "dialogues_per_session": 2, "turns": [3, 4],
         "fer": {"train_per_class": 2, "test_per_class": 1}, "no_face_fraction": 0.3}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo.PreparedCorpus]:
    root = tmp_path_factory.mktemp("demo") / "raw"
    return root, demo.prepare(root, SMALL)


def test_generation_is_deterministic(small_demo, tmp_path: Path) -> None:
    root, first = small_demo
    second = demo.prepare(tmp_path / "again", SMALL)
    assert first.utterances == second.utterances
    assert tree_digest(root) == tree_digest(tmp_path / "again")
    demo.prepare(tmp_path / "other", {**SMALL, "seed": 4})
    assert tree_digest(root) != tree_digest(tmp_path / "other")


def test_manifest_records_and_media(small_demo) -> None:
    root, prepared = small_demo
    utts = validate(prepared.utterances, prepared.classes, root)
    assert prepared.classes == ["ang", "hap", "neu", "sad"]
    truth = {json.loads(line)["utt_id"]: json.loads(line) for line in (root / "truth.jsonl").read_text().splitlines()}
    for utt in utts:
        wave, sr = sf.read(root / utt.audio.path)
        assert sr == 16000 and 0.5 < len(wave) / sr < 6 and np.abs(wave).max() > 0.01
        cap = cv2.VideoCapture(str(root / utt.video.path))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (128, 128, 3)
        assert frames == len(truth[utt.utt_id]["face_visible"])
        assert (utt.label is None) == (not truth[utt.utt_id]["labelled"])
        if utt.label is not None:
            assert utt.label == truth[utt.utt_id]["emotion"]
    assert {u.speaker for u in utts} == {"ses1F", "ses1M"}
    header = (root / "fer" / "fer2013.csv").read_text().splitlines()[0]
    assert header == "emotion,pixels,Usage"
    assert len((root / "fer" / "fer2013new.csv").read_text().splitlines()) == 1 + 8 * 4


def test_emotion_shapes_the_voice(tmp_path: Path) -> None:
    """Angry speech is louder than sad speech from the same speaker (a signal the audio models can learn)."""
    plans = demo.plan_corpus({"seed": 1})
    speaker = plans[0].speaker
    energy = {}
    for emotion in ("ang", "sad"):
        plan = demo.Plan(**{**plans[0].__dict__, "emotion": emotion, "audio_intensity": 1.0, "speaker": speaker})
        wave = demo.synthesize_speech(plan, ["ang", "hap", "neu", "sad"], 16000)
        energy[emotion] = float(np.sqrt(np.mean(wave**2)))
    assert energy["ang"] > 2 * energy["sad"]


def test_default_params_give_the_corpus_the_pipeline_needs() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    plans = demo.plan_corpus(params["corpora"]["demo"]["options"])
    labels = Counter(p.emotion for p in plans if p.labelled)
    assert len(plans) >= 300
    assert len({p.dialogue_id for p in plans}) >= 20
    assert len({p.speaker.speaker_id for p in plans}) >= 6
    assert set(labels) == {"ang", "hap", "neu", "sad"} and min(labels.values()) >= 30
    assert sum(not p.labelled for p in plans) / len(plans) >= 0.15
    assert sum(p.face_mode == "absent" for p in plans) >= 10
    assert {p.text_mode for p in plans} == {"cue", "filler", "misleading", "empty"}


def test_options_are_checked() -> None:
    """An unknown option (a typo) or a value out of range fails before anything is generated."""
    from pipeline.corpora.common import CorpusOptionError

    with pytest.raises(CorpusOptionError, match=r"unknown option\(s\) \['face_intensty'\]"):
        demo.plan_corpus({"face_intensty": [0.1, 0.5]})
    with pytest.raises(CorpusOptionError, match="'voice_intensity' must be \\[low, high\\] with low <= high"):
        demo.plan_corpus({"voice_intensity": [0.9, 0.5]})
    with pytest.raises(CorpusOptionError, match="'text_cue_probability' must be a number in"):
        demo.plan_corpus({"text_cue_probability": 1.5})
    with pytest.raises(CorpusOptionError, match=r"unknown option\(s\) \['video.fsp'\]"):
        demo.plan_corpus({"video": {"fsp": 5}})
    with pytest.raises(CorpusOptionError, match="'classes' must be among"):
        demo.plan_corpus({"classes": ["ang", "fru"]})


def test_intensities_follow_their_ranges() -> None:
    plans = demo.plan_corpus({"seed": 2, "voice_intensity": [0.5, 1.0], "face_intensity": [0.1, 0.6]})
    for plan in plans:
        expressiveness = plan.speaker.expressiveness
        assert 0.5 * expressiveness <= plan.audio_intensity <= 1.0 * expressiveness
        assert 0.1 * expressiveness <= plan.face_intensity <= 0.6 * expressiveness


def test_a_talking_face_moves_its_mouth_not_its_brows() -> None:
    """Articulation opens the jaw frame by frame: the mouth region changes, the brows (anger's cue) do not."""
    plan = demo.plan_corpus({"seed": 1})[0]
    plan = demo.Plan(**{**plan.__dict__, "face_mode": "visible", "emotion": "neu"})
    renderer = demo.FaceRenderer(128)
    still, _ = demo.render_clip(plan, renderer, 12)
    talking, _ = demo.render_clip(plan, renderer, 12, articulation=1.0)
    changed = np.abs(np.stack(talking).astype(int) - np.stack(still).astype(int)).mean(axis=(0, 3))
    mouth, brows = changed[70:95, 40:90].mean(), changed[30:50, 35:95].mean()
    assert mouth > 2.0 and mouth > 5 * brows


def test_voice_valence_cue_keeps_arousal() -> None:
    """voice_valence_cue scales only the difference within an arousal pair: at 0 angry sounds like happy and neutral
    like sad, while the two arousal levels stay apart; at 1 every emotion keeps its own voice."""
    from pipeline.corpora.demo_audio import VOICES, voice_profile

    assert voice_profile("ang", 1.0) == VOICES["ang"]
    assert voice_profile("ang", 0.0) == pytest.approx(voice_profile("hap", 0.0))
    assert voice_profile("neu", 0.0) == pytest.approx(voice_profile("sad", 0.0))
    assert voice_profile("ang", 0.0)["energy"] > 2 * voice_profile("sad", 0.0)["energy"]
    half = {k: voice_profile("ang", 0.5)[k] - voice_profile("hap", 0.5)[k] for k in VOICES["ang"]}
    assert half == pytest.approx({k: 0.5 * (VOICES["ang"][k] - VOICES["hap"][k]) for k in VOICES["ang"]})
