"""Tiny randomly initialised encoders built from transformers configs and saved like real checkpoints: speech
models (config.json, model.safetensors, preprocessor_config.json) with speech-like test audio, and a RoBERTa with
its own byte-level BPE tokenizer; for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE_RATE = 16000
# a small convolutional front end with wav2vec2's 320-sample stride (5 * 4 * 4 * 4) and 400-sample receptive field
CONV = {"conv_dim": (16, 16, 16, 16), "conv_stride": (5, 4, 4, 4), "conv_kernel": (10, 4, 4, 4)}


def _encoder_settings(hidden: int, layers: int) -> dict[str, Any]:
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 2 * hidden, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
            "do_stable_layer_norm": True, "feat_extract_norm": "layer", "mask_time_prob": 0.0,
            "layerdrop": 0.0, **CONV}


def save_speech_model(kind: str, path: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0,
                      normalize: bool = True, **overrides: Any) -> Path:
    """`kind`: wav2vec2 | hubert | wavlm | data2vec-audio | wav2vec2-groupnorm | whisper. Returns `path`."""
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "whisper":
        config = tf.WhisperConfig(d_model=hidden, encoder_layers=layers, decoder_layers=1, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=2 * hidden, decoder_ffn_dim=2 * hidden,
                                  num_mel_bins=16, max_source_positions=1500, vocab_size=64, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, **overrides)
        tf.WhisperModel(config).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=16).save_pretrained(path)
        return path
    settings = {**_encoder_settings(hidden, layers), **overrides}
    masked = True
    if kind == "wav2vec2-groupnorm":  # wav2vec2-base's layout: group norm, no attention mask
        kind, masked = "wav2vec2", False
        settings.update(feat_extract_norm="group", do_stable_layer_norm=False)
    configs = {"wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model), "hubert": (tf.HubertConfig, tf.HubertModel),
               "wavlm": (tf.WavLMConfig, tf.WavLMModel),
               "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel)}
    config_class, model_class = configs[kind]
    if kind == "data2vec-audio":
        settings.pop("do_stable_layer_norm"), settings.pop("feat_extract_norm")
        settings.update(num_conv_pos_embeddings=5, num_conv_pos_embedding_groups=2)
    if kind == "wavlm":
        settings.update(num_buckets=32, max_bucket_distance=80)
    model_class(config_class(**settings)).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                do_normalize=normalize, return_attention_mask=masked).save_pretrained(path)
    return path


def speech_like(seconds: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Amplitude-modulated harmonics with noise: varied enough that neighbouring frames differ (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.1 * t))
    signal = 0.3 * voice + 0.02 * rng.standard_normal(len(t))
    return (signal / np.max(np.abs(signal)) * 0.8).astype(np.float32)


ROBERTA_POSITIONS = 64  # token positions the tiny RoBERTa takes, <s> and </s> included


def save_tiny_roberta(path: Path, texts: list[str], *, hidden: int = 32, seed: int = 0) -> Path:
    """A 2-layer RoBERTa with a 400-piece byte-level BPE trained on `texts`, saved with its tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                            sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                            model_max_length=ROBERTA_POSITIONS).save_pretrained(path)
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=400, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=2 * hidden, max_position_embeddings=ROBERTA_POSITIONS + 2,
                           type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    RobertaModel(config).save_pretrained(path)
    return path
