"""The training path's memory cuts change no number: a tiny utt_fusion and MMIN trained through the old
implementations (normalisation by `torch.where` on a fresh copy, zeroed batches as `values * 0` next to the batch,
the t-SNE items encoded all at once) and through the new ones give the same weights, history, metrics and
predictions; the t-SNE embeddings, now encoded an evaluation batch at a time, agree to float noise (a matrix
product over fewer rows may round differently; on IEMOCAP's shape, 1,000 items in batches of 512, they came out
bit-identical). Seeding sets torch's deterministic flag without importing Inductor."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import models.batches as batches
import models.mmin as mmin
import models.recipe as recipe
from models import utt_fusion
from models.trainer import FoldOutcome
from pipeline.train import release_freed_heap
from tests.mmin_fixtures import TINY_SHAPES, synthetic_set, tiny_mmin, tiny_recipe

CPU = torch.device("cpu")
# audio truncated (normalised), visual padded past its longest sequence, text at its longest
FRAMES = {"audio": 4, "visual": 8, "text": None}


def _old_gather(self: batches.ModalityRows, rows: Tensor) -> tuple[Tensor, Tensor]:
    """ModalityRows.gather as it was: normalisation through torch.where and full-size temporaries."""
    steps = self.source.shape[1]
    lengths = self.source_lengths[rows]
    if steps >= self.frames:
        values = (self.source if steps == self.frames else self.source[:, : self.frames])[rows]
        lengths = lengths.clamp(max=self.frames)
    else:
        values = self.source[rows]
        values = torch.cat([values, values.new_zeros(values.shape[0], self.frames - steps, values.shape[2])], 1)
    if self.mean is not None and self.std is not None:
        real = (torch.arange(self.frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        values = torch.where(real, (values - self.mean) / self.std, torch.zeros_like(values))
    return values, lengths


def _old_zeroed(batch: dict[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    return {m: (v * 0, n) for m, (v, n) in batch.items()}


def _train_both(seed: int) -> dict[str, FoldOutcome]:
    train, val, test = (synthetic_set(n, shapes=TINY_SHAPES, prefix=p) for n, p in ((45, "tr"), (13, "va"),
                                                                                      (19, "te")))
    common: dict[str, Any] = {"frames": FRAMES, "batch_size": 8, "eval_batch_size": 7}
    first = utt_fusion.train_and_evaluate(train, val, test, tiny_recipe(**common), seed=seed, device=CPU)
    second = mmin.train_and_evaluate(train.view(range(45)), val.view(range(13)), test.view(range(19)),
                                     tiny_mmin(**common), seed=seed, device=CPU, init_state=first.state)
    return {"utt_fusion": first, "mmin": second}


def _assert_same(old: Any, new: Any, where: str) -> None:
    if isinstance(old, dict):
        assert set(old) == set(new), where
        for key in old:
            if key != "seconds":
                _assert_same(old[key], new[key], f"{where}.{key}")
    elif isinstance(old, (list, tuple)):
        assert len(old) == len(new), where
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(old, Tensor):
        assert torch.equal(old, new), where
    elif isinstance(old, np.ndarray) and where.endswith(("embeddings.imagined", "embeddings.target")):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5, err_msg=where)
    elif isinstance(old, np.ndarray):
        assert np.array_equal(old, new), where
    else:
        assert old == new, where


def test_old_and_new_data_path_train_the_same_models(monkeypatch: pytest.MonkeyPatch) -> None:
    new = _train_both(seed=5)
    all_at_once = mmin.imagined_embeddings
    with monkeypatch.context() as patch:
        patch.setattr(batches.ModalityRows, "gather", _old_gather)
        patch.setattr(recipe, "zeroed", _old_zeroed)
        patch.setattr(mmin, "imagined_embeddings", lambda *args: all_at_once(*args[:6]))
        old = _train_both(seed=5)
    assert len(new["mmin"].extras["embeddings"]["imagined"]) == 20  # three batches of 7 items
    for name in new:
        for part in ("metrics", "state", "history", "predictions", "extras"):
            _assert_same(getattr(old[name], part), getattr(new[name], part), f"{name}.{part}")


def test_normalised_gather_leaves_the_loaded_array_alone() -> None:
    data = synthetic_set(12, shapes=TINY_SHAPES)
    before = data.modality("audio").values.clone()
    audio = data.modality("audio")
    rows = batches.ModalityRows(audio.values, audio.lengths, 4, torch.full((10,), 0.5), torch.full((10,), 2.0))
    values, lengths = rows.gather(torch.tensor([3, 1, 3]))
    assert torch.equal(data.modality("audio").values, before)
    assert torch.equal(values, _old_gather(rows, torch.tensor([3, 1, 3]))[0]) and lengths.max() <= 4


def test_seeding_sets_the_deterministic_flag_without_importing_inductor() -> None:
    code = ("import sys, torch; from models.trainer import seed_everything; seed_everything(0); "
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._inductor.config' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_is_given_back_on_glibc() -> None:
    assert release_freed_heap() in (True, False)  # never raises where the C library has no malloc_trim
