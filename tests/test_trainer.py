"""models/trainer.py: the optimiser and the seeding every family uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.trainer import adam, seed_everything


def _train(make_optimizer, weight_decay: float) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = make_optimizer(net.parameters(), lr=1e-2, betas=(0.9, 0.999), weight_decay=weight_decay)
    data = torch.Generator().manual_seed(1)
    for _ in range(25):
        x = torch.randn(16, 13, generator=data)
        y = torch.randint(0, 4, (16,), generator=data)
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        optimizer.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_adam_updates_the_same_bits_as_the_per_tensor_loop(weight_decay: float) -> None:
    ours = _train(adam, weight_decay)
    reference = _train(lambda params, **kw: torch.optim.Adam(params, foreach=False, **kw), weight_decay)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))
    assert not torch.equal(ours[0], _train(adam, weight_decay + 0.5)[0])  # the comparison can tell a change


def test_seeding_sets_deterministic_kernels() -> None:
    torch.use_deterministic_algorithms(False)
    try:
        seed_everything(3)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(3)))
    finally:
        torch.use_deterministic_algorithms(False)
