"""The utterance encoders: shapes from the data, padding-aware pooling equal to packed sequences, TextCNN windows,
the A, L, V fusion order, and the classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.encoders import FUSION_ORDER, LSTMEncoder, TextCNN, UtteranceEncoders
from models.utt_fusion import Classifier, UttFusion

torch.set_num_threads(1)


def _padded(batch: int, frames: int, width: int, lengths: list[int],
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.randn(batch, frames, width, generator=torch.Generator().manual_seed(seed))
    lens = torch.tensor(lengths)
    values *= (torch.arange(frames)[None, :] < lens[:, None]).unsqueeze(-1)
    return values, lens


def _encoder_cfg(pool_over_padding: bool) -> dict:
    return {"audio_hidden": 9, "visual_hidden": 7, "text_embedding": 5, "text_filters": 4,
            "text_kernel_heights": [3, 4, 5], "text_dropout": 0.5, "pool_over_padding": pool_over_padding}


@pytest.mark.parametrize("pool_over_padding", [True, False])
def test_shapes_come_from_the_data(pool_over_padding: bool) -> None:
    dims = {"audio": 13, "visual": 6, "text": 21}
    encoders = UtteranceEncoders(dims, _encoder_cfg(pool_over_padding)).eval()
    inputs = {"audio": _padded(4, 8, 13, [8, 3, 1, 5]), "visual": _padded(4, 6, 6, [6, 0, 2, 6]),
              "text": _padded(4, 2, 21, [2, 1, 2, 1])}  # text shorter than the tallest kernel
    fused = encoders(inputs)
    assert fused.shape == (4, 9 + 5 + 7) and encoders.output_dim == 21
    assert torch.isfinite(fused).all()
    embedded = encoders.embed(inputs)
    assert {k: v.shape[1] for k, v in embedded.items()} == {"audio": 9, "text": 5, "visual": 7}
    # fusion order is A, L, V
    assert FUSION_ORDER == ("audio", "text", "visual")
    torch.testing.assert_close(fused, torch.cat([embedded["audio"], embedded["text"], embedded["visual"]], -1))


def test_masked_lstm_pooling_equals_packed_sequences() -> None:
    torch.manual_seed(0)
    encoder = LSTMEncoder(11, 6, pool_over_padding=False)
    values, lengths = _padded(5, 9, 11, [9, 4, 1, 7, 2])
    packed = pack_padded_sequence(values, lengths, batch_first=True, enforce_sorted=False)
    states, _ = pad_packed_sequence(encoder.rnn(packed)[0], batch_first=True, padding_value=float("-inf"))
    torch.testing.assert_close(encoder(values, lengths), states.amax(1))


def test_pooling_over_padding_depends_on_the_padding_and_masked_does_not() -> None:
    torch.manual_seed(1)
    values, lengths = _padded(3, 5, 8, [5, 2, 3])
    longer = torch.cat([values, torch.zeros(3, 6, 8)], dim=1)
    masked = LSTMEncoder(8, 6, pool_over_padding=False)
    torch.testing.assert_close(masked(values, lengths), masked(longer, lengths))
    mmin_style = LSTMEncoder(8, 6, pool_over_padding=True)
    mmin_style.load_state_dict(masked.state_dict())
    assert not torch.allclose(mmin_style(values, lengths), mmin_style(longer, lengths))
    # full-length rows see no padding, so both agree there
    torch.testing.assert_close(mmin_style(values, lengths)[0], masked(values, lengths)[0])


def test_absent_modality_pools_one_zero_frame() -> None:
    torch.manual_seed(2)
    encoder = LSTMEncoder(4, 3, pool_over_padding=False)
    values = torch.zeros(2, 6, 4)
    out = encoder(values, torch.tensor([0, 0]))
    torch.testing.assert_close(out, encoder(torch.zeros(2, 1, 4), torch.tensor([1, 1])))


def test_masked_textcnn_equals_each_utterance_alone() -> None:
    torch.manual_seed(3)
    cnn = TextCNN(10, filters=4, kernel_heights=[3, 4, 5], dropout=0.5, embedding_size=6, pool_over_padding=False)
    cnn.eval()
    values, lengths = _padded(4, 9, 10, [9, 5, 2, 7])
    batched = cnn(values, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = cnn(values[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(batched[i:i + 1], alone)


def test_textcnn_uses_full_width_kernels_and_dropout() -> None:
    cnn = TextCNN(12, filters=4, kernel_heights=[3, 4, 5], dropout=0.5, embedding_size=6, pool_over_padding=True)
    assert [tuple(c.weight.shape) for c in cnn.convs] == [(4, 12, 3), (4, 12, 4), (4, 12, 5)]
    assert isinstance(cnn.project[0], nn.Linear) and cnn.project[0].in_features == 12
    values, lengths = _padded(8, 6, 12, [6] * 8)
    cnn.train()
    assert not torch.equal(cnn(values, lengths), cnn(values, lengths))  # dropout active in training
    cnn.eval()
    torch.testing.assert_close(cnn(values, lengths), cnn(values, lengths))
    with pytest.raises(ValueError, match="kernel heights"):
        TextCNN(12, 4, [], 0.5, 6, True)


def test_classifier_layers_and_kaiming_init() -> None:
    classifier = Classifier(20, [8, 6], 4, dropout=0.3)
    kinds = [type(m).__name__ for m in classifier.layers]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert classifier(torch.randn(3, 20)).shape == (3, 4)
    cfg = {"encoder": _encoder_cfg(True), "classifier_hidden": [8, 6], "dropout": 0.3}
    model = UttFusion({"audio": 5, "visual": 4, "text": 7}, 3, cfg)
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    assert linears and all(float(m.bias.detach().abs().sum()) == 0.0 for m in linears)  # kaiming_init zeroes biases
