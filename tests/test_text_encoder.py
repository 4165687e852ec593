"""The text extractor on another family than BERT: a tiny random RoBERTa with its own byte-level BPE tokenizer,
built from a transformers config and saved to a temporary folder; token and sentence (mean, CLS) pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.extract import ExtractorConfigError, extractor_class
from pipeline.extract.text_encoder import BertExtractor, TextEncoderExtractor
from pipeline.manifest import Utterance
from tests.encoder_models import ROBERTA_POSITIONS as PIECES_TOTAL
from tests.encoder_models import save_tiny_roberta
from tests.test_bert import sentences


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_roberta(tmp_path_factory.mktemp("tiny-roberta"), sentences(200, seed=1))


def utterances(texts: list[str]) -> list[Utterance]:
    return [Utterance(f"u{i:03d}", "demo", "spk", "s1", text=t) for i, t in enumerate(texts)]


def bare_rows(path: Path, text: str) -> np.ndarray:
    """The transformers way for one sentence: every position's last hidden state, specials included."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        return model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()


def test_registered_names() -> None:
    assert extractor_class("hf_text") is TextEncoderExtractor
    assert extractor_class("bert") is BertExtractor and issubclass(BertExtractor, TextEncoderExtractor)
    assert (TextEncoderExtractor.name, BertExtractor.name) == ("hf_text", "bert")


def test_roberta_tokens_batched_equal_one_by_one_and_the_bare_model(tiny_roberta: Path) -> None:
    extractor = TextEncoderExtractor({"model": str(tiny_roberta), "token_budget": 96})
    assert extractor.max_tokens == PIECES_TOTAL - 2  # RoBERTa's positions start after its padding index
    utts = utterances(sentences(10, seed=3))
    units = extractor.work_units(utts)
    assert max(len(u) for u in units) > 1
    batched = [r for unit in units for r in extractor.process([utts[i] for i in unit])]
    order = [i for unit in units for i in unit]
    for i, together in zip(order, batched, strict=True):
        alone = extractor.process([utts[i]])[0]
        np.testing.assert_allclose(together.features, alone.features, atol=1e-5, rtol=0)
        expected = bare_rows(tiny_roberta, extractor.clean(utts[i]))[1:-1]  # <s> ... </s> dropped
        assert together.features.shape == expected.shape
        np.testing.assert_allclose(together.features, expected, atol=1e-5, rtol=0)


def test_sentence_pooling(tiny_roberta: Path) -> None:
    utts = utterances(sentences(4, seed=5))
    tokens = TextEncoderExtractor({"model": str(tiny_roberta)}).process(utts)
    mean = TextEncoderExtractor({"model": str(tiny_roberta), "pooling": "mean"}).process(utts)
    cls = TextEncoderExtractor({"model": str(tiny_roberta), "pooling": "cls"}).process(utts)
    for utt, t, m, c in zip(utts, tokens, mean, cls, strict=True):
        assert m.features.shape == c.features.shape == (1, 32)
        np.testing.assert_allclose(m.features[0], t.features.mean(0), atol=1e-5)
        np.testing.assert_allclose(c.features[0], bare_rows(tiny_roberta, utt.text)[0], atol=1e-5)
    assert TextEncoderExtractor({"model": str(tiny_roberta), "pooling": "cls"}).describe()["pooling"] == "cls"


def test_config_errors(tiny_roberta: Path, tmp_path: Path) -> None:
    with pytest.raises(ExtractorConfigError, match="hf_text: pooling"):
        TextEncoderExtractor({"model": str(tiny_roberta), "pooling": "max"})
    with pytest.raises(ExtractorConfigError, match="max_tokens"):
        TextEncoderExtractor({"model": str(tiny_roberta), "max_tokens": PIECES_TOTAL - 1})
    with pytest.raises(ExtractorConfigError, match=str(tmp_path / "absent")):
        TextEncoderExtractor({"model": str(tmp_path / "absent")})
