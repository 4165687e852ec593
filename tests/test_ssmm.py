"""SSMM: the MMD, the loss and its warm-up, label hiding, and train_and_evaluate on data generated here."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from models.data import UNLABELLED, Sequences, UtteranceSet
from models.ssmm import (
    FUSION_ORDER,
    PooledInputs,
    SSMMNet,
    mismatched_pairs_mmd,
    multi_kernel_mmd,
    pseudo_label_term,
    ssmm_losses,
    train_and_evaluate,
    unsupervised_terms,
)
from tests.label_hiding import with_hidden_labels

SCALES = [0.25, 0.5, 1.0, 2.0, 4.0]
DIMS = {"audio": 6, "visual": 9, "text": 12}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """These tensors are tiny: a second OpenMP thread only waits on a shared machine. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_cfg(**overrides: object) -> dict:
    cfg = {"variant": "ssmm", "n_classes": 3, "pooling": "mean", "normalise": True, "hidden": [32, 16], "latent": 8,
           "classifier_hidden": [16], "dropout": 0.0, "epochs": 4, "warmup_epochs": 2, "batch_size": 16, "lr": 1e-3,
           "betas": [0.9, 0.999], "weight_decay": 0.0, "clip_norm": None, "recon_weight": 0.2, "mmd_weight": 0.1,
           "mmd_kernel_scales": SCALES, "mismatch_mmd": False, "mismatch_weight": 0.1, "kaiming_init": True,
           "select_after_warmup": False, "pseudo_label_weight": 1.0, "pseudo_label_threshold": 0.5}
    cfg.update(overrides)
    return cfg


def clustered_set(n: int, seed: int, n_classes: int = 3, missing: float = 0.0, frames: int = 4) -> UtteranceSet:
    """Classes as cluster centres shared by all modalities (fixed across calls), frames = centre + noise."""
    rng = np.random.default_rng(seed)
    centres_rng = np.random.default_rng(7)
    labels = rng.integers(0, n_classes, n)
    mods = {}
    for m, d in DIMS.items():
        centres = centres_rng.normal(0.0, 1.5, (n_classes, d))
        values = centres[labels][:, None, :] + rng.normal(0.0, 1.0, (n, frames, d))
        lengths = np.full(n, frames)
        lengths[rng.random(n) < missing] = 0
        values[lengths == 0] = 0.0
        mods[m] = Sequences(torch.tensor(values, dtype=torch.float32), torch.tensor(lengths, dtype=torch.int64))
    return UtteranceSet([f"u{seed}_{i:04d}" for i in range(n)], mods["audio"], mods["visual"], mods["text"],
                        torch.tensor(labels, dtype=torch.int64))


def pooled_batch(n: int, seed: int) -> tuple[PooledInputs, torch.Tensor]:
    data = clustered_set(n, seed)
    return (PooledInputs({m: data.modality(m).pooled() for m in FUSION_ORDER},
                         {m: data.modality(m).lengths > 0 for m in FUSION_ORDER}), data.labels)


def net(seed: int = 0) -> SSMMNet:
    torch.manual_seed(seed)
    return SSMMNet(DIMS, 3, [32, 16], 8, [16], 0.0)


# ---------------------------------------------------------------------------------------------------------- MMD
def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=gen)
    y = torch.randn(300, 16, generator=gen)
    same = float(multi_kernel_mmd(x, y, SCALES))
    shifted = [float(multi_kernel_mmd(x, y + shift, SCALES)) for shift in (0.25, 0.5, 1.0, 2.0)]
    assert 0.0 <= same < 0.05  # the biased estimator sits O(1/n) above zero
    assert shifted[0] > same
    assert all(b > a for a, b in zip(shifted, shifted[1:], strict=False))
    assert shifted[-1] > 50 * same


def test_mmd_does_not_change_when_one_side_is_permuted() -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 8, generator=gen), torch.randn(70, 8, generator=gen) + 0.5
    base = multi_kernel_mmd(x, y, SCALES)
    assert torch.allclose(multi_kernel_mmd(x, y[torch.randperm(70, generator=gen)], SCALES), base, atol=1e-6)
    assert torch.allclose(multi_kernel_mmd(x[torch.randperm(50, generator=gen)], y, SCALES), base, atol=1e-6)
    assert torch.allclose(multi_kernel_mmd(y, x, SCALES), base, atol=1e-6)


def test_mismatched_pairs_mmd_sees_pairing_that_plain_mmd_ignores() -> None:
    gen = torch.Generator().manual_seed(2)
    zp = torch.randn(200, 4, generator=gen)
    paired = mismatched_pairs_mmd(zp, zp.clone(), SCALES, gen)  # modalities agree utterance by utterance
    unpaired = mismatched_pairs_mmd(zp, torch.randn(200, 4, generator=gen), SCALES, gen)  # independent
    assert float(paired) > 10 * float(unpaired)


# ------------------------------------------------------------------------------------------------------- loss
def test_unlabelled_terms_are_off_before_the_warmup_ends() -> None:
    model = net()
    cfg = small_cfg(warmup_epochs=3)
    (lab, labels), (unl, _) = pooled_batch(16, 1), pooled_batch(16, 2)
    unl.vectors = {m: v.clone().requires_grad_(True) for m, v in unl.vectors.items()}
    for epoch in (0, 2):
        losses = ssmm_losses(model, lab, labels, unl, epoch, cfg, torch.Generator().manual_seed(0))
        alone = ssmm_losses(model, lab, labels, None, epoch, cfg, torch.Generator().manual_seed(0))
        assert torch.equal(losses["loss"], alone["loss"])
        assert float(losses["recon_unlabelled"]) == 0.0 and float(losses["mmd_unlabelled"]) == 0.0
        assert float(losses["pseudo_label"]) == 0.0
        grads = torch.autograd.grad(losses["loss"], list(unl.vectors.values()), allow_unused=True)
        assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads)
    on = ssmm_losses(model, lab, labels, unl, 3, cfg, torch.Generator().manual_seed(0))
    assert float(on["recon_unlabelled"].detach()) > 0 and float(on["mmd_unlabelled"].detach()) > 0
    alone = ssmm_losses(model, lab, labels, None, 3, cfg, torch.Generator())
    assert float(on["loss"].detach()) > float(alone["loss"].detach())
    grads = torch.autograd.grad(on["loss"], list(unl.vectors.values()))
    assert all(float(g.abs().sum()) > 0 for g in grads)
    supervised = ssmm_losses(model, lab, labels, unl, 3, small_cfg(variant="supervised", warmup_epochs=3),
                             torch.Generator())
    assert float(supervised["recon_unlabelled"]) == 0.0 and float(supervised["mmd_unlabelled"]) == 0.0
    assert float(supervised["pseudo_label"]) == 0.0


def test_pseudo_labels_are_the_confident_predictions_and_carry_no_gradient() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.1, 0.0], [0.0, 0.0, 5.0], [0.0, 0.3, 0.0]], requires_grad=True)
    term, share = pseudo_label_term(logits, 0.9)
    confident = logits.detach().softmax(1).max(1).values >= 0.9
    assert confident.tolist() == [True, False, True, False] and float(share) == 0.5
    by_hand = (torch.nn.functional.cross_entropy(logits[0:1], torch.tensor([0]))
               + torch.nn.functional.cross_entropy(logits[2:3], torch.tensor([2]))) / 4  # mean over all 4 rows
    assert torch.allclose(term, by_hand)
    (grad,) = torch.autograd.grad(term, logits)
    assert float(grad[~confident].abs().sum()) == 0.0  # a row below the threshold teaches nothing
    # the target is fixed: the gradient is that of CE against a constant label (softmax - one-hot) / N
    expected = (logits.detach().softmax(1) - torch.nn.functional.one_hot(logits.detach().argmax(1), 3)) / 4
    assert torch.allclose(grad[confident], expected[confident])
    assert float(pseudo_label_term(logits, 1.0)[1]) == 0.0  # nothing is certain


def test_the_pseudo_label_weight_adds_exactly_its_term_and_zero_gives_the_papers_loss() -> None:
    model = net()
    (lab, labels), (unl, _) = pooled_batch(16, 1), pooled_batch(16, 2)
    on = ssmm_losses(model, lab, labels, unl, 5, small_cfg(pseudo_label_weight=0.7, pseudo_label_threshold=0.4),
                     torch.Generator().manual_seed(0))
    off = ssmm_losses(model, lab, labels, unl, 5, small_cfg(pseudo_label_weight=0.0, pseudo_label_threshold=0.4),
                      torch.Generator().manual_seed(0))
    assert float(on["pseudo_labelled_share"]) > 0 and float(on["pseudo_label"].detach()) > 0
    assert float(off["pseudo_label"]) == 0.0
    assert torch.allclose(on["loss"], off["loss"] + 0.7 * on["pseudo_label"])
    _, latents, _ = model.encode(unl)
    assert torch.allclose(on["pseudo_label"], pseudo_label_term(model.classify(latents), 0.4)[0])


def test_a_hidden_label_in_the_labelled_batch_is_refused() -> None:
    lab, labels = pooled_batch(8, 3)
    labels = labels.clone()
    labels[3] = UNLABELLED
    with pytest.raises(ValueError, match="hidden label"):
        ssmm_losses(net(), lab, labels, None, 0, small_cfg(), torch.Generator())


def test_missing_modalities_are_left_out_of_reconstruction_and_mmd() -> None:
    model = net()
    lab, _ = pooled_batch(12, 4)
    lab.present["visual"][:6] = False
    lab.vectors["visual"][:6] = 0.0
    x, latents, recons = model.encode(lab)
    terms = unsupervised_terms(x, latents, recons, lab.present, small_cfg(), torch.Generator())
    rows = lab.present["visual"]
    expected_recon = sum(torch.nn.functional.mse_loss(recons[m][rows], x[m][rows]) if m == "visual"
                         else torch.nn.functional.mse_loss(recons[m], x[m]) for m in FUSION_ORDER)
    assert torch.allclose(terms["recon"], expected_recon)
    expected_mmd = (multi_kernel_mmd(latents["audio"], latents["text"], SCALES)
                    + multi_kernel_mmd(latents["audio"], latents["visual"][rows], SCALES)
                    + multi_kernel_mmd(latents["text"], latents["visual"][rows], SCALES))
    assert torch.allclose(terms["mmd"], expected_mmd)
    lab.present["visual"][:11] = False  # one row left: no distribution to match, and no NaN
    x, latents, recons = model.encode(lab)
    terms = unsupervised_terms(x, latents, recons, lab.present, small_cfg(), torch.Generator())
    assert torch.allclose(terms["mmd"], multi_kernel_mmd(latents["audio"], latents["text"], SCALES))


def test_a_few_steps_lower_the_loss() -> None:
    model = net()
    cfg = small_cfg(warmup_epochs=0)
    (lab, labels), (unl, _) = pooled_batch(32, 5), pooled_batch(32, 6)
    model.set_normalisation(PooledInputs.concat([lab, unl]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(40):
        loss = ssmm_losses(model, lab, labels, unl, 0, cfg, gen)["loss"]
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(ssmm_losses(model, lab, labels, unl, 0, cfg, gen)["loss"].detach()) < 0.5 * first


# ------------------------------------------------------------------------------------------------- labels
def test_hidden_labels_are_the_split_stages_nested_and_keep_absent_labels_absent() -> None:
    """The labels SSMM trains without come from pipeline.splits.hide_labels (models/ has no second copy)."""
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5 + [UNLABELLED] * 10)
    ids = [f"u{i:03d}" for i in range(len(labels))]
    tenth = with_hidden_labels(ids, labels, 0.1, seed=3)
    assert [int((tenth == c).sum()) for c in (0, 1, 2)] == [5, 3, 1]  # round, at least one per class
    assert (tenth[labels == UNLABELLED] == UNLABELLED).all()
    assert ((tenth == labels) | (tenth == UNLABELLED)).all()
    third = with_hidden_labels(ids, labels, 0.3, seed=3)
    assert ((tenth == UNLABELLED) | (third == tenth)).all()  # the 10% set lies inside the 30% set
    assert torch.equal(with_hidden_labels(ids, labels, 1.0, seed=0), labels)


# ---------------------------------------------------------------------------------------------- training
def _history_without_time(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_train_and_evaluate_reports_avl_metrics_and_is_reproducible() -> None:
    train, val, test = clustered_set(60, 10, missing=0.1), clustered_set(30, 11), clustered_set(30, 12)
    train.labels = with_hidden_labels(train.utt_ids, train.labels, 0.5, seed=0)
    extra = clustered_set(20, 13)
    runs = [train_and_evaluate(train, val, test, small_cfg(), seed=s, device=CPU, unlabelled=extra) for s in (0, 0, 1)]
    first, again, other = runs
    assert set(first.metrics) == {"avl"}
    assert set(first.metrics["avl"]) == {"wa", "ua", "macro_f1", "weighted_f1"}
    assert len(first.history) == 4 and first.predictions["avl"][0].shape == (30,)
    assert first.extras["n_unlabelled"] == int((train.labels == UNLABELLED).sum()) + 20
    assert first.history[0]["train_recon_unlabelled"] == 0.0 and first.history[-1]["train_recon_unlabelled"] > 0
    assert first.metrics == again.metrics
    assert _history_without_time(first.history) == _history_without_time(again.history)
    assert all(torch.equal(first.state[k], again.state[k]) for k in first.state)
    assert not all(torch.equal(first.state[k], other.state[k]) for k in first.state)


def test_hidden_labels_never_reach_the_loss() -> None:
    """Poison every label of the unlabelled stream: nothing the training does may change."""
    full = clustered_set(80, 20)
    val, test = clustered_set(24, 21), clustered_set(24, 22)
    hidden = with_hidden_labels(full.utt_ids[:60], full.labels[:60], 0.3, seed=1)
    lab_idx = [i for i in range(60) if hidden[i] != UNLABELLED]
    hid_idx = [i for i in range(60) if hidden[i] == UNLABELLED]
    cfg = small_cfg(epochs=3, warmup_epochs=1)

    train = full.subset(lab_idx + hid_idx)
    train.labels[len(lab_idx):] = UNLABELLED
    pool = full.subset(range(60, 80))
    pool.labels[:] = UNLABELLED
    reference = train_and_evaluate(train, val, test, cfg, seed=0, device=CPU, unlabelled=pool)

    poisoned_pool = full.subset(range(60, 80))
    poisoned_pool.labels = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(9))
    poisoned = train_and_evaluate(train, val, test, cfg, seed=0, device=CPU, unlabelled=poisoned_pool)
    # the same hidden utterances handed over as an unlabelled set that still carries their true labels
    revealed = train_and_evaluate(full.subset(lab_idx), val, test, cfg, seed=0, device=CPU,
                                  unlabelled=full.subset(hid_idx + list(range(60, 80))))
    for run in (poisoned, revealed):
        assert _history_without_time(run.history) == _history_without_time(reference.history)
        assert all(torch.equal(run.state[k], reference.state[k]) for k in reference.state)


def test_init_state_is_where_training_starts() -> None:
    train, val, test = clustered_set(40, 30), clustered_set(20, 31), clustered_set(20, 32)
    start = train_and_evaluate(train, val, test, small_cfg(epochs=1), seed=0, device=CPU).state
    frozen = train_and_evaluate(train, val, test, small_cfg(epochs=1, lr=0.0), seed=5, device=CPU, init_state=start)
    weights = [k for k in start if not k.endswith(("_mean", "_std"))]
    assert all(torch.equal(frozen.state[k], start[k]) for k in weights)


def test_bad_configuration_fails_before_any_work() -> None:
    data = clustered_set(10, 40)
    cfg = small_cfg()
    del cfg["mmd_weight"]
    with pytest.raises(ValueError, match="mmd_weight"):
        train_and_evaluate(data, data, data, cfg, seed=0, device=CPU)
    with pytest.raises(ValueError, match="variant"):
        train_and_evaluate(data, data, data, small_cfg(variant="mixup"), seed=0, device=CPU)
    with pytest.raises(ValueError, match="pooling"):
        train_and_evaluate(data, data, data, small_cfg(pooling="median"), seed=0, device=CPU)
    with pytest.raises(ValueError, match="outside the 2 classes"):
        train_and_evaluate(data, data, data, small_cfg(n_classes=2), seed=0, device=CPU)
    for key, value in (("pseudo_label_weight", -0.1), ("pseudo_label_threshold", 0.0),
                       ("pseudo_label_threshold", 1.5)):
        with pytest.raises(ValueError, match=key):
            train_and_evaluate(data, data, data, small_cfg(**{key: value}), seed=0, device=CPU)
    odd = clustered_set(10, 40)
    odd.labels[4] = -2
    with pytest.raises(ValueError, match="label -2 outside"):
        train_and_evaluate(odd, data, data, small_cfg(), seed=0, device=CPU)


def test_select_after_warmup_picks_an_epoch_with_the_unlabelled_terms_on() -> None:
    """With `select_after_warmup` the checkpoint comes from an epoch >= warmup_epochs, in both variants, and the
    earlier epochs are still evaluated and logged; a warm-up as long as training is refused."""
    train, val, test = clustered_set(40, 50), clustered_set(20, 51), clustered_set(20, 52)
    pool = clustered_set(30, 53)
    pool.labels[:] = UNLABELLED
    for variant in ("ssmm", "supervised"):
        free = train_and_evaluate(train, val, test, small_cfg(variant=variant, epochs=6, warmup_epochs=4), seed=0,
                                  device=CPU, unlabelled=pool)
        late = train_and_evaluate(train, val, test, small_cfg(variant=variant, epochs=6, warmup_epochs=4,
                                                              select_after_warmup=True),
                                  seed=0, device=CPU, unlabelled=pool)
        assert len(late.history) == 6
        assert late.extras["best_epoch"] >= 4
        best_late = max(row["val_ua"] for row in late.history[4:])
        assert late.extras["best_val_ua"] == best_late
        assert _history_without_time(late.history) == _history_without_time(free.history)
    with pytest.raises(ValueError, match="select_after_warmup"):
        train_and_evaluate(train, val, test, small_cfg(epochs=3, warmup_epochs=3, select_after_warmup=True),
                           seed=0, device=CPU)
