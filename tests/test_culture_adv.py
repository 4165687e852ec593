"""The culture-adversarial network's pieces: gradient reversal, DANN's schedule, losses that never see target
labels."""

from __future__ import annotations

import math

import pytest
import torch

from models.culture_adv import (
    CultureAdversarial,
    GradientReversal,
    culture_accuracy,
    culture_losses,
    dann_weight,
    reversal_schedule,
)

CFG = {"encoder": {"audio_hidden": 8, "visual_hidden": 8, "text_embedding": 8, "text_filters": 4,
                   "text_kernel_heights": [1, 2], "text_dropout": 0.0, "pool_over_padding": True},
       "classifier_hidden": [8], "discriminator_hidden": [8], "dropout": 0.0}


def _inputs(batch: int, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {"audio": (torch.randn(batch, 5, 6, generator=g), torch.full((batch,), 5)),
            "visual": (torch.randn(batch, 4, 3, generator=g), torch.full((batch,), 4)),
            "text": (torch.randn(batch, 3, 7, generator=g), torch.full((batch,), 3))}


def test_reversal_is_identity_forward_and_negates_scaled_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    layer = GradientReversal(0.7)
    y = layer(x)
    assert torch.equal(y, x)
    upstream = torch.randn(4, 3)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.7 * upstream)


def test_reversal_weight_zero_stops_the_gradient() -> None:
    x = torch.randn(2, 2, requires_grad=True)
    GradientReversal(0.0)(x).sum().backward()
    assert torch.equal(x.grad, torch.zeros(2, 2))


def test_dann_schedule() -> None:
    assert dann_weight(0.0) == 0.0
    assert dann_weight(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_weight(0.5, maximum=0.3) == pytest.approx(0.3 * (2 / (1 + math.exp(-5)) - 1))
    steps = reversal_schedule(epochs=3, steps_per_epoch=4, gamma=10.0, maximum=1.0)
    assert len(steps) == 12 and steps[0] == 0.0 and all(a < b for a, b in zip(steps, steps[1:], strict=False))
    with pytest.raises(ValueError, match="progress"):
        dann_weight(1.5)


def test_target_labels_never_reach_the_loss() -> None:
    torch.manual_seed(0)
    model = CultureAdversarial({"audio": 6, "visual": 3, "text": 7}, n_classes=4, n_cultures=2, config=CFG)
    model.reversal.weight = 0.5
    inputs = _inputs(6)
    cultures = torch.tensor([0, 0, 0, 1, 1, 1])
    is_source = cultures == 0
    labels = torch.tensor([0, 1, 2, -1, -1, -1])
    poisoned = torch.tensor([0, 1, 2, 3, 0, 1])

    def grads(lbl: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad()
        emotion, culture = model(inputs)
        loss = culture_losses(emotion, culture, lbl, cultures, is_source)["loss"]
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters()]

    clean_loss, clean_grads = grads(labels)
    poison_loss, poison_grads = grads(poisoned)
    assert clean_loss == poison_loss
    assert all(torch.equal(a, b) for a, b in zip(clean_grads, poison_grads, strict=True))


def test_discriminator_gradient_reaches_encoders_reversed() -> None:
    torch.manual_seed(1)
    model = CultureAdversarial({"audio": 6, "visual": 3, "text": 7}, n_classes=4, n_cultures=2, config=CFG)
    inputs = _inputs(4)
    cultures = torch.tensor([0, 0, 1, 1])

    def encoder_grad(weight: float) -> torch.Tensor:
        model.zero_grad()
        model.reversal.weight = weight
        _, culture = model(inputs)
        torch.nn.functional.cross_entropy(culture, cultures).backward()
        return model.encoders.parts()[0].rnn.weight_ih_l0.grad.clone()

    assert torch.equal(encoder_grad(0.0), torch.zeros_like(encoder_grad(0.0)))
    assert torch.allclose(encoder_grad(2.0), -2.0 * encoder_grad(-1.0), atol=1e-6)
    assert 0.0 <= culture_accuracy(model(inputs)[1], cultures) <= 1.0


def test_one_culture_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 cultures"):
        CultureAdversarial({"audio": 6}, n_classes=4, n_cultures=1, config=CFG)
