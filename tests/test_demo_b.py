"""demo_b: another "culture" from the demo generator, made by options alone (its own ids, shifted voices, another
word list, no FER set), while the demo's defaults stay as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.corpora.common import CorpusOptionError
from pipeline.corpora.demo import prepare, synthesize_speech
from pipeline.corpora.demo_plan import plan_corpus, resolve_demo_options
from pipeline.corpora.demo_text import ALTERNATE_LEXICON, LEXICON, compose_text
from pipeline.params import load_params

TINY = {"sessions": 1, "dialogues_per_session": 1, "turns": [4, 4], "video": {"fps": 2, "size": 64},
        "fer": {"train_per_class": 1, "test_per_class": 1}}


def culture_b(**extra: object) -> dict[str, object]:
    return {**TINY, "seed": 7, "corpus": "demo_b", "speaker_prefix": "bses", "lexicon": "alternate",
            "fer_set": False, **extra}


def test_demo_b_has_its_own_ids_corpus_name_and_no_fer_set(tmp_path: Path) -> None:
    prepared = prepare(tmp_path / "b", culture_b())
    assert {u.corpus for u in prepared.utterances} == {"demo_b"}
    assert all(u.speaker.startswith("bses") and u.utt_id.startswith("bses") for u in prepared.utterances)
    assert not (tmp_path / "b" / "fer").exists() and prepared.stats["fer_images"] == 0
    plain = plan_corpus({**TINY, "seed": 7})
    assert not {p.utt_id for p in plain} & {u.utt_id for u in prepared.utterances}


def test_voice_shift_moves_the_energy_of_that_emotion_only() -> None:
    opts = resolve_demo_options({**TINY, "classes": ["ang", "sad"]})
    plans = plan_corpus(opts)
    loud = {"sad": {"energy": 2.0}}
    for plan in plans:
        base = synthesize_speech(plan, opts["classes"], 16000, 1.0)
        moved = synthesize_speech(plan, opts["classes"], 16000, 1.0, loud)
        assert len(base) == len(moved)
        ratio = float(np.abs(moved).mean() / np.abs(base).mean())
        assert ratio == pytest.approx(2.0, rel=0.05) if plan.emotion == "sad" else ratio == pytest.approx(1.0)


def test_alternate_lexicon_carries_the_cues_with_other_words() -> None:
    plans = [p for p in plan_corpus({**TINY, "turns": [30, 30], "text_cue_probability": 1.0,
                                     "empty_text_fraction": 0.0, "text_misleading_probability": 0.0})]
    for plan in plans:
        text = compose_text(plan, ["ang", "hap", "neu", "sad"], "alternate").lower()
        assert any(words.lower() in text for words in ALTERNATE_LEXICON[plan.emotion])
        assert not any(words.lower() in text for words in LEXICON[plan.emotion])


@pytest.mark.parametrize("bad", [{"speaker_prefix": "b/ses"}, {"voice_shift": {"joy": {"pitch": 1.1}}},
                                 {"voice_shift": {"ang": {"tempo": 1.1}}}, {"lexicon": "klingon"},
                                 {"fer_set": "no"}])
def test_bad_culture_options_fail_naming_the_option(bad: dict[str, object]) -> None:
    with pytest.raises(CorpusOptionError, match=next(iter(bad))):
        resolve_demo_options({**TINY, **bad})


def test_params_demo_b_reuses_demos_denseface_and_trains_nothing_of_its_own() -> None:
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    demo_b = params["corpora"]["demo_b"]
    assert demo_b["extractors"]["denseface"]["config"]["checkpoint"] == "checkpoints/denseface/demo.pt"
    assert demo_b["train_models"] == []
    speakers = {p.speaker.speaker_id for p in plan_corpus(params["corpora"]["demo"]["options"])}
    assert not speakers & {p.speaker.speaker_id for p in plan_corpus(demo_b["options"])}


def test_generated_demo_b_audio_is_readable(tmp_path: Path) -> None:
    prepared = prepare(tmp_path / "b", culture_b(voice_shift={"neu": {"pitch": 1.2}}))
    wave, sr = sf.read(tmp_path / "b" / prepared.utterances[0].audio.path)
    assert sr == 16000 and len(wave) > 0
