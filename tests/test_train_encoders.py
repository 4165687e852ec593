"""MMIN trains on stores of today's encoders: `hf_audio` (a tiny random WavLM) and `hf_text` (a tiny random
RoBERTa) extracted from generated audio and transcripts, beside a visual store; the networks' input widths come
from the stores (their `dim`), not from params."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.extract.hf_audio import HfAudioExtractor
from pipeline.extract.text_encoder import TextEncoderExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import CorpusInfo, Segment, read_manifest
from pipeline.store import FeatureStore
from pipeline.train import train_model
from tests.encoder_models import SAMPLE_RATE, save_speech_model, save_tiny_roberta, speech_like
from tests.test_train import CLASSES, tiny_corpus, tiny_params

WORDS = {"ang": "furious stop that now", "hap": "wonderful great news", "neu": "the bus leaves at nine",
         "sad": "i miss her so much"}


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tiny_corpus(tmp_path)  # manifest, splits and a visual store (denseface)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def extract_encoder_stores(root: Path, models: Path) -> None:
    """Audio and text whose content follows the label; extracted through both extractors into the stores."""
    info = CorpusInfo.read(root / "data/tiny/corpus.json")
    utts = read_manifest(root / "data/tiny/manifest.jsonl", info.classes)
    media = root / "data/tiny/raw"
    media.mkdir(parents=True)
    filled = []
    for i, utt in enumerate(utts):
        label = utt.label or "neu"
        signal = speech_like(0.4 + 0.1 * (i % 5), seed=i) * (0.3 + 0.2 * CLASSES.index(label))
        sf.write(media / f"{utt.utt_id}.wav", signal, SAMPLE_RATE)
        filled.append(dataclasses.replace(utt, audio=Segment(f"{utt.utt_id}.wav"), text=WORDS[label]))
    wavlm = save_speech_model("wavlm", models / "wavlm", hidden=24)
    roberta = save_tiny_roberta(models / "roberta", [*WORDS.values()] * 5, hidden=20)
    extract_to_store(HfAudioExtractor({"model": str(wavlm)}, media), filled, root / "features/tiny/hf_audio.h5",
                     progress=False)
    extract_to_store(TextEncoderExtractor({"model": str(roberta)}, media), filled,
                     root / "features/tiny/hf_text.h5", progress=False)


def test_mmin_trains_on_hf_audio_and_hf_text_stores(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    extract_encoder_stores(project, tmp_path_factory.mktemp("encoders"))
    assert FeatureStore(project / "features/tiny/hf_audio.h5").dim == 24
    assert FeatureStore(project / "features/tiny/hf_text.h5").dim == 20
    params = tiny_params()
    params["train"]["features"] = {"audio": "hf_audio", "visual": "denseface", "text": "hf_text"}
    for model in ("utt_fusion", "mmin"):  # mmin starts from utt_fusion's encoders
        metrics = train_model(params, model, "tiny")
        assert metrics["model"] == model
    saved = json.loads((project / "metrics/mmin/tiny.json").read_text())
    assert set(saved["conditions"]) == {"azz", "zvz", "zzl", "avz", "azl", "zvl", "avl", "average"}
    state = torch.load(project / "checkpoints/utt_fusion/tiny/fold01_seed0.pt", weights_only=True)
    weights = state.get("model", state) if isinstance(state, dict) else state
    widths = {v.shape[1] for v in weights.values() if isinstance(v, torch.Tensor) and v.ndim >= 2}
    assert {24, 20} <= widths  # the audio LSTM's (hidden x 24) and the text CNN's (filters x 20 x k) inputs
    assert np.isfinite(saved["conditions"]["avl"]["wa"]["mean"])
