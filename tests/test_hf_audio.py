"""The speech encoder extractor (`hf_audio`) with tiny random Wav2Vec2, HuBERT, WavLM, Data2VecAudio and Whisper
models built from transformers configs, saved to a temporary folder and loaded through the extractor."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.extract import ExtractorConfigError, extractor_class
from pipeline.extract.hf_audio import HfAudioExtractor, chunk_spans, conv_frames
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Segment, Utterance
from pipeline.store import FeatureStore
from tests.encoder_models import CONV, SAMPLE_RATE, save_speech_model, speech_like

KINDS = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-groupnorm", "whisper")
SECONDS = (0.7, 1.3, 2.05, 3.1, 0.35, 1.3)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("speech-models")
    return {kind: save_speech_model(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Utterance]]:
    """Six clips of different lengths (two of equal length) and one 7.3 s clip, as WAV files."""
    root = tmp_path_factory.mktemp("speech-corpus")
    utts = []
    for i, seconds in enumerate(SECONDS):
        sf.write(root / f"u{i}.wav", speech_like(seconds, seed=i), SAMPLE_RATE)
        utts.append(Utterance(f"u{i}", "demo", "spk", "s1", audio=Segment(f"u{i}.wav")))
    sf.write(root / "long.wav", speech_like(7.3, seed=9), SAMPLE_RATE)
    return root, utts


def long_utterance() -> Utterance:
    return Utterance("long", "demo", "spk", "s1", audio=Segment("long.wav"))


def extractor(model: Path, root: Path, **config: object) -> HfAudioExtractor:
    return HfAudioExtractor({"model": str(model), **config}, root)


def test_registered() -> None:
    assert extractor_class("hf_audio") is HfAudioExtractor
    assert HfAudioExtractor.modality == "audio"


@pytest.mark.parametrize("kind", KINDS)
def test_batched_rows_equal_one_by_one(models: dict[str, Path], corpus: tuple[Path, list[Utterance]],
                                       kind: str) -> None:
    root, utts = corpus
    ex = extractor(models[kind], root, sample_budget=4 * SAMPLE_RATE)
    ex.setup()
    units = ex.work_units(utts)
    assert sorted(i for unit in units for i in unit) == list(range(len(utts)))
    batched = ex.process(utts)
    for utt, together in zip(utts, batched, strict=True):
        alone = ex.process([utt])[0]
        assert together.present and together.features.shape == alone.features.shape
        np.testing.assert_allclose(together.features, alone.features, atol=1e-5, rtol=0)
        assert together.features.shape[0] == ex.valid_frames(round(sf.info(root / utt.audio.path).frames))


def test_padded_batches_only_where_padding_cannot_change_rows(models: dict[str, Path],
                                                              corpus: tuple[Path, list[Utterance]]) -> None:
    root, _ = corpus
    lengths = [16000, 20000, 16000, 30000]
    costly_passes = {"batch_overhead_s": 10.0}  # the planner would rather pad than run another pass
    assert extractor(models["wavlm"], root, **costly_passes).chunk_batches(lengths) == [[0, 2, 1, 3]]
    for kind in ("data2vec-audio", "wav2vec2-groupnorm"):
        assert extractor(models[kind], root, **costly_passes).chunk_batches(lengths) == [[0, 2], [1], [3]]


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_frames_equal_the_bare_model_with_its_feature_extractor(models: dict[str, Path],
                                                                corpus: tuple[Path, list[Utterance]],
                                                                kind: str) -> None:
    """Normalisation, padding and layer as the model's preprocessor config says: the transformers way, per clip."""
    from transformers import AutoFeatureExtractor, AutoModel

    root, utts = corpus
    fe = AutoFeatureExtractor.from_pretrained(models[kind])
    model = AutoModel.from_pretrained(models[kind]).eval()
    ex = extractor(models[kind], root)
    signal, _ = sf.read(root / utts[3].audio.path, dtype="float32")
    with torch.inference_mode():
        inputs = fe(signal, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        expected = model(**inputs).last_hidden_state[0].numpy()
    np.testing.assert_allclose(ex.process([utts[3]])[0].features, expected, atol=1e-5, rtol=0)


def test_layer_choices(models: dict[str, Path], corpus: tuple[Path, list[Utterance]]) -> None:
    root, utts = corpus
    model = models["wav2vec2-groupnorm"]  # 2 post-LN layers: hidden states 0, 1, 2; the last is the model's output
    by_index = [extractor(model, root, layer=str(i)).process(utts[:2]) for i in range(3)]
    last = extractor(model, root).process(utts[:2])
    mean2 = extractor(model, root, layer="mean_last_2").process(utts[:2])
    every = extractor(model, root, layer="all", level="utterance").process(utts[:2])
    pooled = extractor(model, root, level="utterance").process(utts[:2])
    negative = extractor(model, root, layer=-3).process(utts[:2])
    for u in range(2):
        np.testing.assert_allclose(last[u].features, by_index[2][u].features, atol=1e-6)
        np.testing.assert_allclose(negative[u].features, by_index[0][u].features, atol=1e-6)
        np.testing.assert_allclose(mean2[u].features, (by_index[1][u].features + by_index[2][u].features) / 2,
                                   atol=1e-5)
        assert every[u].features.shape == (3, 32) and pooled[u].features.shape == (1, 32)
        for i in range(3):
            np.testing.assert_allclose(every[u].features[i], by_index[i][u].features.mean(0), atol=1e-5)
        np.testing.assert_allclose(pooled[u].features[0], last[u].features.mean(0), atol=1e-5)


def test_last_is_the_output_after_the_final_layer_norm(models: dict[str, Path],
                                                       corpus: tuple[Path, list[Utterance]]) -> None:
    """Pre-LN ("stable layer norm", the large checkpoints): `last` is the model's output, index L is before the
    final layer norm, as transformers' hidden_states give it."""
    from transformers import AutoModel

    root, utts = corpus
    final_norm = AutoModel.from_pretrained(models["wav2vec2"]).encoder.layer_norm
    last = extractor(models["wav2vec2"], root).process(utts[:1])[0].features
    before = extractor(models["wav2vec2"], root, layer=2).process(utts[:1])[0].features
    with torch.inference_mode():
        np.testing.assert_allclose(last, final_norm(torch.from_numpy(before)).numpy(), atol=1e-5)


def test_chunk_spans_cover_the_unchunked_frames_once() -> None:
    kernels, strides = CONV["conv_kernel"], CONV["conv_stride"]
    for n in (500, 16000, 32000, 32001, 48640, 100_003, 160_000):
        for chunk, overlap in ((32000, 3200), (16000, 640), (9600, 4800)):
            kept = []
            for start, end, keep_from, keep_to in chunk_spans(n, chunk, overlap, 320):
                frames = conv_frames(end - start, kernels, strides)
                stop = frames if keep_to is None else keep_to
                assert keep_from < stop <= frames, (n, chunk, overlap, start)
                kept += range(start // 320 + keep_from, start // 320 + stop)
            assert kept == list(range(conv_frames(n, kernels, strides))), (n, chunk, overlap)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_chunked_long_audio_equals_unchunked_at_the_chunk_centres(models: dict[str, Path],
                                                                  corpus: tuple[Path, list[Utterance]],
                                                                  kind: str) -> None:
    """7.3 s in 2 s chunks sharing 1 s. Hidden state 0 sees +-8 frames (the positional convolution), less than
    the 0.5 s each chunk leaves to its neighbour: exact (1e-5). The last layer attends over the whole input, which
    a chunk cuts: each frame within 5% of its unchunked norm (measured at most 0.4% for wav2vec2 and WavLM, 3.4% for
    HuBERT, on these random models with 2 s chunks; a trained model with 20 s chunks loses far less context)."""
    root, _ = corpus
    utt = long_utterance()
    for layer, exact in (("0", True), ("last", False)):
        whole = extractor(models[kind], root, layer=layer, chunk_s=30.0).process([utt])[0].features
        chunked_ex = extractor(models[kind], root, layer=layer, chunk_s=2.0, overlap_s=1.0)
        assert len(chunk_spans(round(7.3 * SAMPLE_RATE), chunked_ex.chunk, chunked_ex.overlap, 320)) == 7
        parts = chunked_ex.process([utt])[0].features
        assert parts.shape == whole.shape == (364, 32)
        if exact:
            np.testing.assert_allclose(parts, whole, atol=1e-5, rtol=0)
        else:
            relative = np.linalg.norm(parts - whole, axis=1) / np.linalg.norm(whole, axis=1)
            assert relative.max() < 0.05


def test_whisper_encoder_frames_and_chunks(models: dict[str, Path], corpus: tuple[Path, list[Utterance]]) -> None:
    """Whisper: 20 ms frames of its 30 s window that the audio reaches; a long clip stitched from chunks has the
    unchunked frame count (its values differ more: absolute positions and per-window log-mel scaling)."""
    root, utts = corpus
    ex = extractor(models["whisper"], root)
    assert ex.frame_hop_s == pytest.approx(0.02)
    assert [r.features.shape for r in ex.process(utts[:2])] == [(35, 32), (65, 32)]
    chunked = extractor(models["whisper"], root, chunk_s=3.0, overlap_s=1.0).process([long_utterance()])[0]
    assert chunked.features.shape == (365, 32) and np.isfinite(chunked.features).all()
    with pytest.raises(ExtractorConfigError, match="30 s"):
        extractor(models["whisper"], root, chunk_s=40.0)


def test_missing_model_fails_before_any_work_naming_the_path(tmp_path: Path, models: dict[str, Path]) -> None:
    missing_dir = tmp_path / "no" / "such-model"
    with pytest.raises(ExtractorConfigError, match=str(missing_dir)):
        HfAudioExtractor({"model": str(missing_dir)}, tmp_path)
    with pytest.raises(ExtractorConfigError, match="microsoft--nothing-here|microsoft/nothing-here"):
        HfAudioExtractor({"model": "microsoft/nothing-here"}, tmp_path)
    no_preprocessor = tmp_path / "no-preprocessor"
    no_preprocessor.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_preprocessor / name).write_bytes((models["hubert"] / name).read_bytes())
    with pytest.raises(ExtractorConfigError, match=f"{no_preprocessor}.*preprocessor_config.json"):
        HfAudioExtractor({"model": str(no_preprocessor)}, tmp_path)


def test_config_errors(models: dict[str, Path], tmp_path: Path) -> None:
    model = models["wavlm"]
    for config, message in (({"layer": "all"}, "level: utterance"), ({"layer": 3}, "out of range"),
                            ({"layer": "first"}, "layer must be"), ({"level": "word"}, "level"),
                            ({"overlap_s": 0.0, "chunk_s": 5.0}, "two frames"), ({"chunk_s": 1.0, "overlap_s": 2.0},
                                                                                  "overlap_s < chunk_s"),
                            ({"sample_budget": 0}, "sample_budget"), ({"batch": 4}, "unknown config keys")):
        with pytest.raises(ExtractorConfigError, match=message):
            HfAudioExtractor({"model": str(model), **config}, tmp_path)


def test_missing_reasons(models: dict[str, Path], tmp_path: Path) -> None:
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), SAMPLE_RATE)
    sf.write(tmp_path / "short.wav", speech_like(0.02), SAMPLE_RATE)
    utts = [Utterance("a", "demo", "spk", "s1"),
            Utterance("b", "demo", "spk", "s1", audio=Segment("absent.wav")),
            Utterance("c", "demo", "spk", "s1", audio=Segment("silent.wav")),
            Utterance("d", "demo", "spk", "s1", audio=Segment("short.wav"))]
    out = extractor(models["hubert"], tmp_path).process(utts)
    assert [(r.present, r.failure) for r in out] == [(False, "no_audio"), (False, "missing_file"),
                                                      (False, "silent"), (False, "too_short")]
    assert all(r.features.shape == (0, 32) for r in out)


def test_store_attributes_name_the_weights(models: dict[str, Path], corpus: tuple[Path, list[Utterance]],
                                           tmp_path: Path) -> None:
    root, utts = corpus
    ex = extractor(models["wavlm"], root, layer="all", level="utterance")
    ex = pickle.loads(pickle.dumps(ex))  # as the executor's workers get it
    extract_to_store(ex, utts, tmp_path / "hf_audio.h5", progress=False)
    store = FeatureStore(tmp_path / "hf_audio.h5")
    assert store[utts[0].utt_id].shape == (3, 32)
    with h5py.File(tmp_path / "hf_audio.h5", "r") as fh:
        attrs = dict(fh.attrs)
    weights = hashlib.sha256((models["wavlm"] / "model.safetensors").read_bytes()).hexdigest()
    preprocessor = hashlib.sha256((models["wavlm"] / "preprocessor_config.json").read_bytes()).hexdigest()
    assert attrs["weights_sha256"] == weights and attrs["preprocessor_sha256"] == preprocessor
    assert attrs["model_type"] == "wavlm" and attrs["row_axis"] == "layer" and attrs["extractor"] == "hf_audio"


@pytest.mark.parametrize("saved_as", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_whisper_frames_equal_the_bare_encoder(tmp_path: Path, corpus: tuple[Path, list[Utterance]],
                                               saved_as: str) -> None:
    """The encoder's weights load from either layout the hub uses (a bare model, or the speech-to-text one)."""
    import transformers as tf

    root, utts = corpus
    path = save_speech_model("whisper", tmp_path / "whisper", seed=3)
    if saved_as == "WhisperForConditionalGeneration":
        tf.WhisperForConditionalGeneration(tf.WhisperConfig.from_pretrained(path)).save_pretrained(path)
    bare = tf.WhisperModel.from_pretrained(path).encoder.eval()
    fe = tf.WhisperFeatureExtractor.from_pretrained(path)
    signal, _ = sf.read(root / utts[1].audio.path, dtype="float32")
    with torch.inference_mode():
        features = fe(signal, sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"]
        expected = bare(features).last_hidden_state[0].numpy()
    got = extractor(path, root).process([utts[1]])[0].features
    np.testing.assert_allclose(got, expected[:len(got)], atol=1e-5, rtol=0)
