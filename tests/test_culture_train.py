"""The culture family's training loop (models/culture_adv.py train_and_evaluate): labelled source batches and
unlabelled target batches; target labels never reach the loss; source-only is the same run with weight 0."""

from __future__ import annotations

import pytest
import torch

from models.culture_adv import train_and_evaluate
from models.data import UtteranceView
from tests.mmin_fixtures import TINY_SHAPES, synthetic_set, tiny_recipe


def culture_cfg(variant: str = "adversarial") -> dict:
    return tiny_recipe(variant=variant, discriminator_hidden=[8], culture_weight=1.0,
                       reversal={"gamma": 10.0, "max_weight": 1.0}, epochs_constant=1, epochs_decay=1)


def parts(n_source: int = 48, n_target: int = 40) -> tuple:
    source = synthetic_set(n_source, shapes=TINY_SHAPES, seed=3, prefix="src")
    target = synthetic_set(n_target, shapes=TINY_SHAPES, seed=3, prefix="tgt", signal=0.7)
    train, val = source.view(list(range(32))), source.view(list(range(32, n_source)))
    test, pool = target.view(list(range(16))), target.view(list(range(16, n_target)))
    return train, val, test, pool


def run(pool: UtteranceView, variant: str = "adversarial", seed: int = 0):
    train, val, test, _ = parts()
    return train_and_evaluate(train, val, test, culture_cfg(variant), seed=seed, device=torch.device("cpu"),
                              adaptation=pool, train_cultures=torch.zeros(len(train), dtype=torch.long),
                              target_culture=1, n_cultures=2)


def timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def with_labels(view: UtteranceView, labels: torch.Tensor) -> UtteranceView:
    return UtteranceView(view.source, view.rows, labels)


def test_poisoned_target_labels_give_the_same_losses_and_weights() -> None:
    pool = parts()[3]
    honest = run(pool)
    poisoned = run(with_labels(pool, (pool.labels + 1) % 4))
    hidden = run(with_labels(pool, torch.full_like(pool.labels, -1)))
    for other in (poisoned, hidden):
        assert timeless(other.history) == timeless(honest.history)
        for key, value in honest.state.items():
            assert torch.equal(value, other.state[key]), key
    assert "culture_accuracy" in honest.extras and 0.0 <= honest.extras["culture_accuracy"] <= 1.0
    assert honest.extras["embeddings_source"].shape[0] == 16


def test_source_only_never_reverses_and_adversarial_follows_dann() -> None:
    pool = parts()[3]
    plain, adapted = run(pool, "source_only"), run(pool, "adversarial")
    assert all(row["train_reversal_weight"] == 0.0 for row in plain.history)
    weights = [row["train_reversal_weight"] for row in adapted.history]
    assert weights == sorted(weights) and 0.0 < weights[-1] < 1.0
    assert plain.history[0]["train_culture"] > 0 and adapted.history[0]["train_culture"] > 0


def test_in_corpus_trains_on_labels_without_a_pool() -> None:
    train, val, test, _ = parts()
    outcome = train_and_evaluate(train, val, test, culture_cfg("in_corpus"), seed=0, device=torch.device("cpu"))
    assert set(outcome.metrics["avl"]) >= {"wa", "ua"} and "culture_accuracy" not in outcome.extras


def test_adversarial_needs_a_pool_and_culture_ids() -> None:
    train, val, test, _ = parts()
    with pytest.raises(ValueError, match="adaptation pool"):
        train_and_evaluate(train, val, test, culture_cfg(), seed=0, device=torch.device("cpu"))
