"""Seconds per MMGCN epoch on data shaped like the demo corpus (~340 utterances in 24 dialogues of ~14 turns,
8 speakers; pooled audio 130-d, visual 342-d, text 384-d), for MMGCN at several depths and the no-graph
baseline, and the ratio of our sparse block-diagonal graph against bare torch doing the same propagation with a
dense adjacency matrix of the whole batch (the authors' way).

    PYTHONPATH=$PWD python benchmarks/bench_mmgcn.py [--epochs 5] [--threads N]

An epoch = one pass over the training dialogues plus prediction on validation and test, as `train_and_evaluate`
runs it. Timings on a shared machine are disturbed by other load; compare ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from models.data import Sequences, UtteranceSet
from models.mmgcn import MMGCN, DialogueBatch, build_model, train_and_evaluate

DIMS = {"audio": 130, "visual": 342, "text": 384}
BASE = {"pooling": "mean", "standardize": ["audio"], "modalities": "avt", "fusion": "graph", "graph": True,
        "layers": 4, "hidden": 200, "gcn_hidden": 100, "text_context": True, "context_layers": 2,
        "speaker_embedding": "text", "speaker_ids": "party", "alpha": 0.1, "lambda": 0.5, "gamma": 1.0,
        "dropout": 0.4, "lr": 3e-4, "weight_decay": 3e-5, "epochs": 20, "batch_dialogues": 16,
        "class_weights": "inverse_frequency", "clip_norm": None}


def demo_like(n_dialogues: int, first: int, rng: np.random.Generator, frames: int = 8) -> UtteranceSet:
    ids, speakers, dialogues, turns, labels = [], [], [], [], []
    for d in range(first, first + n_dialogues):
        for t in range(int(rng.integers(11, 18))):
            ids.append(f"dlg{d:02d}_{t:02d}")
            speakers.append(f"spk{(2 * (d % 4) + t % 2)}")
            dialogues.append(f"dlg{d:02d}")
            turns.append(t)
            labels.append(int(rng.integers(4)))
    n = len(ids)
    seqs = {m: Sequences(torch.from_numpy(rng.normal(size=(n, frames, dim)).astype(np.float32)),
                         torch.from_numpy(rng.integers(1, frames + 1, size=n))) for m, dim in DIMS.items()}
    return UtteranceSet(ids, seqs["audio"], seqs["visual"], seqs["text"], torch.tensor(labels), speakers, dialogues,
                        turns)


def dense_utterance_features(model: MMGCN, batch: DialogueBatch) -> torch.Tensor:
    """The same network with the propagation done by bare torch on the dense adjacency matrix."""
    nodes = model.nodes(batch)
    stacked = torch.cat([nodes[c] for c in model.channels], dim=0)
    adjacency = model.graph(batch, nodes).dense()
    gcn = model.gcn
    h0 = torch.relu(gcn.input(torch.nn.functional.dropout(stacked, gcn.dropout, gcn.training)))
    h = h0
    for layer, weight in enumerate(gcn.weights, start=1):
        h = torch.nn.functional.dropout(h, gcn.dropout, gcn.training)
        beta = np.log(gcn.lam / layer + 1.0)
        propagated = adjacency @ h
        h = torch.relu(beta * (torch.cat([propagated, h0], -1) @ weight)
                       + (1 - beta) * ((1 - gcn.alpha) * propagated + gcn.alpha * h0))
    per_node = torch.cat([stacked, h], dim=-1)
    return torch.cat(per_node.chunk(len(model.channels), dim=0), dim=-1)


def train_pass_seconds(model: MMGCN, batches: list[DialogueBatch], dense: bool, repeats: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            features = dense_utterance_features(model, batch) if dense else model.utterance_features(batch)
            log_probs = torch.log_softmax(model.classifier(torch.relu(model.dropout(features))), -1)
            loss = torch.nn.functional.nll_loss(log_probs, batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    train, val, test = demo_like(16, 0, rng), demo_like(4, 16, rng), demo_like(4, 20, rng)
    total = len(train) + len(val) + len(test)
    print(f"demo-shaped data: {total} utterances, 24 dialogues (train {len(train)}, val {len(val)}, "
          f"test {len(test)}); torch threads {torch.get_num_threads()}")
    device = torch.device("cpu")
    variants = {"mmgcn, 4 layers": {}, "no graph": {"graph": False}, "mmgcn, 32 layers": {"layers": 32},
                "mmgcn, 64 layers": {"layers": 64}}
    epoch_seconds = {}
    for name, overrides in variants.items():
        cfg = {**BASE, **overrides, "epochs": args.epochs}
        outcome = train_and_evaluate(train, val, test, cfg, seed=0, device=device)
        epoch_seconds[name] = outcome.extras["seconds_per_epoch"]
        print(f"{name:>18}: {epoch_seconds[name] * 1000:8.1f} ms/epoch (train + val/test prediction), "
              f"x{epoch_seconds[name] / epoch_seconds['mmgcn, 4 layers']:.2f} of 4-layer MMGCN")
    for layers in (4, 64):
        cfg = {**BASE, "layers": layers}
        model, (train_data, _, _), _ = build_model(train, val, test, cfg, device)
        batches = list(train_data.batches(cfg["batch_dialogues"]))
        ours = train_pass_seconds(model, batches, dense=False, repeats=3)
        bare = train_pass_seconds(model, batches, dense=True, repeats=3)
        print(f"training pass, {layers} layers: per-dialogue blocks {ours * 1000:.1f} ms, bare torch dense "
              f"adjacency {bare * 1000:.1f} ms, ratio ours/bare {ours / bare:.2f}")


if __name__ == "__main__":
    main()
