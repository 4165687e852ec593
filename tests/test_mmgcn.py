"""MMGCN: the dialogue graph has exactly the paper's edges and normalisation, the network keeps its shapes at any
depth, the speaker switch and modality subsets change what they should, padding never enters, training learns and
is reproducible."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.data import Sequences, UtteranceSet
from models.mmgcn import (
    MMGCN,
    DialogueBatch,
    DialogueData,
    build_dialogue_graph,
    build_model,
    class_weights,
    propagate,
    speaker_indices,
    train_and_evaluate,
    validate_config,
)

DIMS = {"audio": 12, "visual": 10, "text": 16}
N_CLASSES = 4


def config(**overrides: object) -> dict:
    cfg = {"pooling": "mean", "standardize": ["audio"], "modalities": "avt", "fusion": "graph", "graph": True,
           "layers": 4, "hidden": 200, "gcn_hidden": 100, "text_context": True, "context_layers": 2,
           "speaker_embedding": "text", "speaker_ids": "party", "alpha": 0.1, "lambda": 0.5, "gamma": 1.0,
           "dropout": 0.4, "lr": 3e-4, "weight_decay": 3e-5, "epochs": 20, "batch_dialogues": 16,
           "class_weights": "inverse_frequency", "clip_norm": None}
    cfg.update(overrides)
    return cfg


def make_set(n_dialogues: int, seed: int, prefix: str = "d", max_frames: int = 6) -> UtteranceSet:
    """Dialogues of 3-8 turns between two speakers; each modality's frames carry the label's prototype plus noise,
    zero-padded past a random length; the first utterance of every third dialogue is unlabelled."""
    rng = np.random.default_rng(seed)
    prototypes = {m: np.random.default_rng(100 + k).normal(size=(N_CLASSES, dim))
                  for k, (m, dim) in enumerate(DIMS.items())}
    ids, speakers, dialogues, turns, labels = [], [], [], [], []
    for d in range(n_dialogues):
        for t in range(int(rng.integers(3, 9))):
            ids.append(f"{prefix}{d:02d}_{t:02d}")
            speakers.append(f"{prefix}spk{(d + t) % 2 + 2 * (d % 3)}")
            dialogues.append(f"{prefix}{d:02d}")
            turns.append(t)
            labels.append(-1 if (t == 0 and d % 3 == 0) else int(rng.integers(N_CLASSES)))
    n = len(ids)
    seqs = {}
    for m, dim in DIMS.items():
        lengths = rng.integers(1, max_frames + 1, size=n)
        values = np.zeros((n, max_frames, dim), dtype=np.float32)
        for i in range(n):
            centre = prototypes[m][max(labels[i], 0)] * (3.0 if m == "audio" else 1.0) + (5.0 if m == "audio" else 0)
            values[i, :lengths[i]] = centre + rng.normal(scale=0.8, size=(lengths[i], dim))
        seqs[m] = Sequences(torch.from_numpy(values), torch.from_numpy(lengths))
    return UtteranceSet(ids, seqs["audio"], seqs["visual"], seqs["text"], torch.tensor(labels), speakers, dialogues,
                        turns)


def model_and_data(cfg: dict, n_dialogues: int = 4) -> tuple[MMGCN, DialogueData]:
    torch.manual_seed(0)
    uset = make_set(n_dialogues, seed=1)
    model, (data, _, _), _ = build_model(uset, uset, uset, cfg, torch.device("cpu"))
    return model.eval(), data


def test_graph_has_exactly_the_papers_edges_and_normalisation() -> None:
    lengths = [3, 2]
    gen = torch.Generator().manual_seed(0)
    channels = [torch.randn(5, 7, generator=gen) for _ in range(3)]
    channels[1][4] = channels[1][3]  # identical vectors: cosine 1, clamped
    gamma = 0.5
    graph = build_dialogue_graph(channels, lengths, gamma)
    n = 5
    dialogue_of = [0, 0, 0, 1, 1]
    expected = set()
    for c in range(3):
        for i in range(n):
            for j in range(n):
                if dialogue_of[i] == dialogue_of[j]:
                    expected.add((c * n + i, c * n + j))
    for c in range(3):
        for d in range(3):
            if c != d:
                expected.update((c * n + u, d * n + u) for u in range(n))
    got = [tuple(e) for e in graph.edges.T.tolist()]
    assert len(got) == len(set(got)) == len(expected) == 3 * (9 + 4) + 6 * 5
    assert set(got) == expected
    assert graph.n_nodes == 15
    keys = graph.edges[0] * graph.n_nodes + graph.edges[1]
    assert bool((keys[1:] > keys[:-1]).all())  # unique, row-major

    # raw weights: angular similarity of the node vectors, gamma on cross-modal edges, all within [0, 1]
    flat = torch.cat(channels).double().numpy()
    for (row, col), w, cross in zip(got, graph.raw.tolist(), graph.cross_modal.tolist(), strict=True):
        cos = flat[row] @ flat[col] / (np.linalg.norm(flat[row]) * np.linalg.norm(flat[col]))
        want = 1 - math.acos(min(max(cos, -0.99999), 0.99999)) / math.pi
        assert cross == (row // n != col // n)
        assert w == pytest.approx(want * (gamma if cross else 1.0), abs=1e-5)
    assert float(graph.raw.min()) >= 0.0 and float(graph.raw.max()) <= 1.0

    raw = graph.dense(normalised=False).double()
    assert torch.equal(raw, raw.T)
    inv = torch.diag(raw.sum(1).rsqrt())
    assert torch.allclose(graph.dense().double(), inv @ raw @ inv, atol=1e-6)
    assert torch.allclose(graph.dense(), graph.dense().T)
    # block-diagonal per dialogue: no edge joins the two dialogues, in any channel pair
    assert all(dialogue_of[r % n] == dialogue_of[c % n] for r, c in got)


def test_model_graph_for_a_batch_of_two_dialogues_and_modality_subsets() -> None:
    model, data = model_and_data(config())
    batch = data.batch([0, 1])
    n = batch.n_utterances
    graph = model.graph(batch)
    assert graph.n_nodes == 3 * n
    dialogue_of = np.repeat([0, 1], batch.lengths)
    rows, cols = graph.edges.numpy()
    assert (dialogue_of[rows % n] == dialogue_of[cols % n]).all()
    assert (graph.cross_modal.numpy() == (rows // n != cols // n)).all()
    assert graph.cross_modal.sum() == 6 * n and (~graph.cross_modal).sum() == 3 * sum(k * k for k in batch.lengths)

    sub, sub_data = model_and_data(config(modalities="at"))
    sub_graph = sub.graph(sub_data.batch([0, 1]))
    assert sub_graph.n_nodes == 2 * n and sub.channels == ["audio", "text"]
    assert sub.classifier.in_features == 2 * 300
    early, early_data = model_and_data(config(fusion="early"))
    assert early.graph(early_data.batch([0, 1])).n_nodes == n and early.classifier.in_features == 300
    assert early.projections["fused"].in_features == sum(DIMS.values())


def test_blockwise_propagation_equals_the_dense_product_with_gradients() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = [4, 1, 3]
    channels = [torch.randn(8, 6, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    h = torch.randn(24, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    graph = build_dialogue_graph(channels, lengths, gamma=0.7)
    assert graph.blocks.shape == (3, 12, 12) and int(graph.slot_mask.sum()) == 24
    blockwise = propagate(graph, h)
    dense = graph.dense() @ h
    assert torch.allclose(blockwise, dense, atol=1e-12)
    probe = torch.randn(24, 5, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((blockwise * probe).sum(), [h, *channels])
    graph2 = build_dialogue_graph(channels, lengths, gamma=0.7)
    want = torch.autograd.grad(((graph2.dense() @ h) * probe).sum(), [h, *channels])
    for got, expected in zip(grads, want, strict=True):
        assert torch.allclose(got, expected, atol=1e-10)
    # the features reach the edge weights: the graph is not a constant of the input
    assert float(grads[1].abs().sum()) > 0


@pytest.mark.parametrize("layers", [1, 32])
def test_depth_keeps_shapes(layers: int) -> None:
    model, data = model_and_data(config(layers=layers))
    batch = data.batch([0, 1, 2])
    assert len(model.gcn.weights) == layers
    assert model.utterance_features(batch).shape == (batch.n_utterances, 900)
    out = model(batch)
    assert out.shape == (batch.n_utterances, N_CLASSES)
    assert torch.allclose(out.exp().sum(-1), torch.ones(batch.n_utterances), atol=1e-5)
    assert torch.isfinite(out).all()


def test_without_graph_is_projections_and_classifier() -> None:
    model, data = model_and_data(config(graph=False))
    assert model.gcn is None and model.classifier.in_features == 600
    assert model(data.batch([0, 1])).shape == (data.batch([0, 1]).n_utterances, N_CLASSES)


@pytest.mark.parametrize(("where", "receiving"), [("text", {"text"}), ("all", {"audio", "visual", "text"}),
                                                  ("none", set())])
def test_speaker_switch_chooses_the_nodes_that_get_the_embedding(where: str, receiving: set[str]) -> None:
    model, data = model_and_data(config(speaker_embedding=where))
    batch = data.batch([0, 1])
    assert len(set(batch.speakers.tolist())) == 2
    projected, nodes = model.project(batch), model.nodes(batch)
    for channel in model.channels:
        delta = nodes[channel] - projected[channel]
        if channel in receiving:
            assert torch.allclose(delta, model.speaker_embedding(batch.speakers), atol=1e-6)
        else:
            assert torch.equal(delta, torch.zeros_like(delta))
    assert (model.speaker_embedding is None) == (not receiving)


def test_party_speakers_restart_per_dialogue_and_global_ones_map_unseen_speakers() -> None:
    train, test = make_set(3, seed=2, prefix="tr"), make_set(2, seed=3, prefix="te")
    (party_train, party_test), size = speaker_indices([train, test], "party")
    assert size == 2
    for uset, rows in ((train, party_train), (test, party_test)):
        for dialogue in uset.dialogues():
            assert rows[dialogue[0]] == 0 and set(rows[dialogue].tolist()) == {0, 1}
    (global_train, global_test), size = speaker_indices([train, test], "global")
    assert size == len(set(train.speakers)) + 1
    assert set(global_test.tolist()) == {size - 1}  # test speakers were never seen in training


def test_padding_never_enters_the_graph_or_the_outputs() -> None:
    cfg = config()
    uset = make_set(4, seed=1, max_frames=6)
    # same utterances with 4 extra padded frames full of junk, and junk past each length
    junk = {}
    gen = torch.Generator().manual_seed(5)
    for m in ("audio", "visual", "text"):
        seq = uset.modality(m)
        values = torch.cat([seq.values, torch.zeros(len(uset), 4, seq.dim)], dim=1)
        padding = ~Sequences(values, seq.lengths).mask()
        values[padding] = 1e3 * torch.randn(int(padding.sum()), seq.dim, generator=gen)
        junk[m] = Sequences(values, seq.lengths)
    junk_set = UtteranceSet(uset.utt_ids, junk["audio"], junk["visual"], junk["text"], uset.labels, uset.speakers,
                            uset.dialogue_ids, uset.turns)
    torch.manual_seed(0)
    model, (clean, _, _), _ = build_model(uset, uset, uset, cfg, torch.device("cpu"))
    torch.manual_seed(0)
    other, (dirty, _, _), _ = build_model(junk_set, junk_set, junk_set, cfg, torch.device("cpu"))
    other.load_state_dict(model.state_dict())
    model.eval(), other.eval()
    together = model(clean.batch([0, 1, 2, 3]))
    assert torch.allclose(together, other(dirty.batch([0, 1, 2, 3])), atol=1e-5)
    # a dialogue's output does not depend on the (longer or shorter) dialogues batched with it
    alone = torch.cat([model(clean.batch([d])) for d in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert model.graph(clean.batch([0, 1, 2, 3])).n_nodes == 3 * len(uset)


def test_a_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    uset = make_set(6, seed=4)
    cfg = config(lr=5e-3, dropout=0.0, hidden=32, gcn_hidden=16)
    model, (data, _, _), n_classes = build_model(uset, uset, uset, cfg, torch.device("cpu"))
    criterion = torch.nn.NLLLoss(weight=class_weights(uset.labels, n_classes, "inverse_frequency"), ignore_index=-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    batch = data.batch(list(range(len(data))))
    losses = []
    for _ in range(15):
        loss = criterion(model(batch), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_class_weights_are_inverse_frequencies() -> None:
    labels = torch.tensor([0, 0, 0, 1, -1, 3])
    weights = class_weights(labels, 4, "inverse_frequency")
    assert torch.allclose(weights, torch.tensor([5 / 3, 5.0, 0.0, 5.0]))
    assert class_weights(labels, 4, "none") is None


def test_train_and_evaluate_is_reproducible_and_reports_avl() -> None:
    train, val, test = make_set(8, seed=5, prefix="tr"), make_set(3, seed=6, prefix="va"), make_set(3, 7, "te")
    cfg = config(epochs=3, batch_dialogues=4, layers=2, lr=1e-3, hidden=32, gcn_hidden=16)
    first = train_and_evaluate(train, val, test, cfg, seed=3, device=torch.device("cpu"))
    second = train_and_evaluate(train, val, test, cfg, seed=3, device=torch.device("cpu"))
    assert set(first.metrics) == {"avl"}
    assert set(first.metrics["avl"]) == {"wa", "ua", "macro_f1", "weighted_f1"}
    assert first.metrics == second.metrics
    assert first.state.keys() == second.state.keys()
    assert all(torch.equal(first.state[k], second.state[k]) for k in first.state)
    assert len(first.history) == 3 and "test_weighted_f1" in first.history[0]
    assert first.extras["test_selected_weighted_f1"] == max(row["test_weighted_f1"] for row in first.history)
    y_true, y_pred = first.predictions["avl"]
    assert len(y_true) == len(y_pred) == len(test.labelled())
    assert first.extras["test_utt_ids"] == [test.utt_ids[i] for i in test.labelled().tolist()]
    # a warm start from the selected state reproduces its validation score before any training step
    model, (_, val_data, _), _ = build_model(train, val, test, cfg, torch.device("cpu"))
    model.load_state_dict(first.state)
    assert first.extras["val_weighted_f1"] == pytest.approx(_weighted_f1(model, val_data), abs=1e-9)
    with pytest.raises(RuntimeError, match="state_dict"):
        train_and_evaluate(train, val, test, config(hidden=32, gcn_hidden=16, layers=3), seed=3,
                           device=torch.device("cpu"), init_state=first.state)


def _weighted_f1(model: MMGCN, data: DialogueData) -> float:
    from models.metrics import classification_metrics
    from models.mmgcn import predict

    _, y_true, y_pred = predict(model, data, 4)
    return classification_metrics(y_true, y_pred, N_CLASSES)["weighted_f1"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"modalities": "avx"}, "modalities"), ({"speaker_embedding": "both"}, "speaker_embedding"),
    ({"layers": 0}, "layers"), ({"hidden": 201}, "even"), ({"epochs": 2.5}, "epochs"), ({"graph": 1}, "graph"),
])
def test_bad_config_fails_before_work(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_config(config(**overrides))
    cfg = config()
    del cfg["gamma"]
    with pytest.raises(ValueError, match="gamma"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="unknown keys"):
        validate_config(config(extra=1))


def test_batch_rejects_mismatched_rows() -> None:
    with pytest.raises(ValueError, match="rows"):
        DialogueBatch({"text": torch.zeros(4, 3)}, [2, 3], torch.zeros(5, dtype=torch.long),
                      torch.zeros(5, dtype=torch.long), torch.arange(5))
