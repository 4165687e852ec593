"""MMGCN (Hu, Liu, Zhao, Jin, ACL 2021): emotion recognition in conversation with a deep GCN over a multimodal
dialogue graph, as docs/models.md "MMGCN" specifies it, and the comparisons of the seed talk.

Each utterance becomes one node per modality (audio, visual, text), each a 200-d projection of the utterance's
pooled feature vector (text: Linear, then a 2-layer BiLSTM over the dialogue). Within one modality every pair of a
dialogue's utterances is joined (self-loops included); across modalities only the nodes of the same utterance.
Edge weights are angular similarities of the node features, cross-modal ones scaled by gamma, and the graph is
normalised D^-1/2 A D^-1/2. A GCNII-style deep GCN refines the nodes; each node's output is its projection
concatenated with its GCN output, and an utterance is classified from its modalities' node outputs concatenated.

A batch is a set of whole dialogues. The graph is block-diagonal over the batch's dialogues and is built from the
real utterances only, so padding never becomes a node or an edge and a dialogue's output does not depend on the
dialogues batched with it.

Switches (all in the config dict): the speaker embedding goes to the text nodes, to every modality, or nowhere;
`graph: false` is the same network without the GCN (projections + classifier); `fusion: early` concatenates the
modalities' vectors before one projection (one node per utterance); `modalities` picks a subset (absent
modalities have no nodes: a corpus with no visual trains with `at`, an audio-only one with `a`, and the metrics are
written under the full condition over those modalities, "azl" or "azz", instead of "avl"); `layers` sets the depth
for the layer sweep.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm import tqdm

from models.condition_names import full_condition
from models.data import MODALITIES, UNLABELLED, UtteranceSet
from models.metrics import classification_metrics
from models.trainer import FitResult, FoldOutcome, adam, fit, seed_everything

log = logging.getLogger(__name__)
NARROWS_MODALITIES = True  # its `modalities` setting becomes the letters of the modalities it is given

MODALITY_LETTERS: dict[str, str] = {"a": "audio", "v": "visual", "t": "text"}
# The authors keep cosine similarities inside (-1, 1) so that arccos and its gradient stay finite.
COSINE_LIMIT = 0.99999
CONFIG_KEYS: dict[str, type | tuple[type, ...]] = {
    "pooling": str, "standardize": list, "modalities": str, "fusion": str, "graph": bool, "layers": int,
    "hidden": int, "gcn_hidden": int, "text_context": bool, "context_layers": int, "speaker_embedding": str,
    "speaker_ids": str, "alpha": (int, float), "lambda": (int, float), "gamma": (int, float),
    "dropout": (int, float), "lr": (int, float), "weight_decay": (int, float), "epochs": int,
    "batch_dialogues": int, "class_weights": str, "clip_norm": (int, float, type(None)),
}
OPTIONAL_KEYS: dict[str, type | tuple[type, ...]] = {"n_classes": (int, type(None))}


# ----------------------------------------------------------------------------------------------- configuration

def validate_config(config: Mapping[str, Any]) -> None:
    """Fail before any work on a missing, unknown or ill-typed key, or a value outside its choices."""
    missing = sorted(set(CONFIG_KEYS) - set(config))
    if missing:
        raise ValueError(f"mmgcn config: missing keys {missing}")
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"mmgcn config: unknown keys {unknown}; known: {sorted(CONFIG_KEYS) + sorted(OPTIONAL_KEYS)}")
    for key, kind in {**CONFIG_KEYS, **OPTIONAL_KEYS}.items():
        value = config.get(key)
        if key in config and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            raise ValueError(f"mmgcn config: {key}={config[key]!r} has the wrong type")
    choices = {"pooling": ("mean", "max"), "fusion": ("graph", "early"),
               "speaker_embedding": ("text", "all", "none"), "speaker_ids": ("party", "global"),
               "class_weights": ("inverse_frequency", "none")}
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"mmgcn config: {key} must be one of {allowed}, got {config[key]!r}")
    letters = config["modalities"]
    if not letters or any(c not in MODALITY_LETTERS for c in letters) or len(set(letters)) != len(letters):
        raise ValueError(f"mmgcn config: modalities must be a non-empty subset of 'avt' (e.g. 'at'), got {letters!r}")
    bad_std = [m for m in config["standardize"] if m not in MODALITIES]
    if bad_std:
        raise ValueError(f"mmgcn config: standardize names unknown modalities {bad_std}; known: {list(MODALITIES)}")
    if config["hidden"] <= 0 or config["hidden"] % 2:
        raise ValueError(f"mmgcn config: hidden must be a positive even number (BiLSTM halves), got {config['hidden']}")
    for key in ("gcn_hidden", "context_layers", "epochs", "batch_dialogues"):
        if config[key] <= 0:
            raise ValueError(f"mmgcn config: {key} must be positive, got {config[key]}")
    if config["graph"] and config["layers"] < 1:
        raise ValueError(f"mmgcn config: layers must be >= 1 with graph: true, got {config['layers']}")
    if not 0 <= config["dropout"] < 1 or not 0 <= config["alpha"] <= 1:
        raise ValueError("mmgcn config: dropout must lie in [0, 1) and alpha in [0, 1]")
    if config["lambda"] <= 0 or config["gamma"] < 0 or config["lr"] <= 0 or config["weight_decay"] < 0:
        raise ValueError("mmgcn config: lambda and lr must be > 0, gamma and weight_decay >= 0")


def selected_modalities(config: Mapping[str, Any]) -> list[str]:
    """The configured modalities in the authors' node order (audio, visual, text)."""
    return [MODALITY_LETTERS[c] for c in "avt" if c in config["modalities"]]


# ------------------------------------------------------------------------------------------------------- data

@dataclass
class DialogueBatch:
    """Whole dialogues, their utterances flattened dialogue after dialogue in turn order.

    features: node channel -> [n, D] utterance vectors; lengths: utterances per dialogue; speakers: [n] rows of the
    speaker embedding; labels: [n] (-1 = unlabelled); positions: [n] indices into the UtteranceSet.
    """

    features: dict[str, Tensor]
    lengths: list[int]
    speakers: Tensor
    labels: Tensor
    positions: Tensor

    def __post_init__(self) -> None:
        n = sum(self.lengths)
        if any(length <= 0 for length in self.lengths):
            raise ValueError(f"dialogue lengths must be positive, got {self.lengths}")
        for name, value in {**self.features, "speakers": self.speakers, "labels": self.labels}.items():
            if value.shape[0] != n:
                raise ValueError(f"{name} has {value.shape[0]} rows for {n} utterances "
                                 f"in {len(self.lengths)} dialogues")

    @property
    def n_utterances(self) -> int:
        return sum(self.lengths)

    def padded_index(self) -> tuple[Tensor, Tensor]:
        """See `dialogue_layout`."""
        return dialogue_layout(self.lengths, self.speakers.device)


def dialogue_layout(lengths: Sequence[int], device: torch.device) -> tuple[Tensor, Tensor]:
    """For dialogues laid out one after the other: [B, Lmax] flat utterance index per dialogue position (0 on
    padding) and the [B, Lmax] mask of real positions."""
    sizes = torch.tensor(list(lengths), device=device)
    starts = torch.cumsum(sizes, 0) - sizes
    steps = torch.arange(int(sizes.max()), device=device)
    mask = steps[None, :] < sizes[:, None]
    return torch.where(mask, starts[:, None] + steps[None, :], torch.zeros_like(mask, dtype=torch.long)), mask


def speaker_indices(sets: Sequence[UtteranceSet], how: str) -> tuple[list[Tensor], int]:
    """Speaker-embedding rows per set and the table size.

    `party`: a speaker's order of first appearance within its dialogue (the authors' per-dialogue party mask, which
    generalises to unseen test speakers); `global`: the first set's (training) speaker vocabulary, with one shared
    row for speakers it never saw.
    """
    if how == "party":
        rows: list[Tensor] = []
        size = 1
        for uset in sets:
            idx = torch.zeros(len(uset), dtype=torch.long)
            for dialogue in uset.dialogues():
                parties: dict[str, int] = {}
                for i in dialogue:
                    idx[i] = parties.setdefault(uset.speakers[i], len(parties))
                size = max(size, len(parties))
            rows.append(idx)
        return rows, size
    vocabulary = {s: k for k, s in enumerate(sorted(set(sets[0].speakers)))}
    unknown = len(vocabulary)
    rows = [torch.tensor([vocabulary.get(s, unknown) for s in uset.speakers], dtype=torch.long) for uset in sets]
    return rows, unknown + 1


class DialogueData:
    """One UtteranceSet made ready for MMGCN: pooled (and optionally standardised) utterance vectors per node
    channel, dialogues in turn order, speaker rows and labels, all on the training device."""

    def __init__(self, uset: UtteranceSet, vectors: dict[str, Tensor], speakers: Tensor, device: torch.device):
        self.uset = uset
        self.dialogues = uset.dialogues()
        self.vectors = {name: v.to(device) for name, v in vectors.items()}
        self.speakers = speakers.to(device)
        self.labels = uset.labels.to(device=device, dtype=torch.long)
        self.device = device

    def __len__(self) -> int:
        return len(self.dialogues)

    def batch(self, dialogue_ids: Sequence[int]) -> DialogueBatch:
        flat = [i for d in dialogue_ids for i in self.dialogues[d]]
        positions = torch.tensor(flat, dtype=torch.long, device=self.device)
        return DialogueBatch({name: v[positions] for name, v in self.vectors.items()},
                             [len(self.dialogues[d]) for d in dialogue_ids], self.speakers[positions],
                             self.labels[positions], positions)

    def batches(self, size: int, generator: torch.Generator | None = None) -> Iterator[DialogueBatch]:
        """Batches of `size` whole dialogues; shuffled with `generator`, in order without."""
        order = (torch.randperm(len(self.dialogues), generator=generator).tolist() if generator is not None
                 else list(range(len(self.dialogues))))
        for start in range(0, len(order), size):
            yield self.batch(order[start:start + size])


def pooled_vectors(sets: Sequence[UtteranceSet], config: Mapping[str, Any]) -> list[dict[str, Tensor]]:
    """Per set, the node-channel input vectors: each selected modality pooled over its real frames; modalities in
    `standardize` z-normalised with the first (training) set's statistics over utterances where the modality is
    present (std 0 -> 1; absent stays zero). With early fusion the selected modalities are concatenated into one
    `fused` channel."""
    modalities = selected_modalities(config)
    pooled = [{m: uset.modality(m).pooled(config["pooling"]).float() for m in modalities} for uset in sets]
    for m in modalities:
        if m not in config["standardize"]:
            continue
        present = sets[0].modality(m).lengths > 0
        reference = pooled[0][m][present]
        if reference.shape[0] == 0:
            raise ValueError(f"cannot standardise {m}: it is absent from every training utterance")
        mean = reference.mean(0)
        std = reference.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        for uset, vectors in zip(sets, pooled, strict=True):
            keep = (uset.modality(m).lengths > 0).unsqueeze(-1)
            vectors[m] = torch.where(keep, (vectors[m] - mean) / std, torch.zeros_like(vectors[m]))
    if config["fusion"] == "early":
        return [{"fused": torch.cat([vectors[m] for m in modalities], dim=-1)} for vectors in pooled]
    return pooled


# ------------------------------------------------------------------------------------------------------ graph

@dataclass
class DialogueGraph:
    """A block-diagonal graph over a batch's nodes, laid out channel-major: node c * n + u is utterance u's node in
    channel c. edges: [2, E] (row, column), both directions listed, unique and sorted row-major; raw: [E] the
    weights before normalisation; weights: [E] after D^-1/2 A D^-1/2; cross_modal: [E] bool.

    Each dialogue's nodes form one dense block (its graph is complete within a channel), so propagation runs as a
    batched product over per-dialogue blocks: `slots` [B, S] maps block slot -> node (S = channels x longest
    dialogue), `slot_mask` [B, S] marks the slots that hold a real node, `blocks` [B, S, S] holds the normalised
    weights of the edges and exact zeros elsewhere, so an empty slot neither sends nor receives anything.
    """

    edges: Tensor
    raw: Tensor
    weights: Tensor
    cross_modal: Tensor
    n_nodes: int
    slots: Tensor
    slot_mask: Tensor
    blocks: Tensor

    def dense(self, normalised: bool = True) -> Tensor:
        """[n_nodes, n_nodes] dense matrix (for inspection and tests)."""
        values = self.weights if normalised else self.raw
        out = torch.zeros(self.n_nodes, self.n_nodes, dtype=values.dtype, device=values.device)
        out[self.edges[0], self.edges[1]] = values
        return out


def angular_similarity(cosine: Tensor) -> Tensor:
    """1 - arccos(cos)/pi, with cos clamped inside (-1, 1): a weight in [0, 1], 1 for identical directions."""
    return 1.0 - torch.acos(cosine.clamp(-COSINE_LIMIT, COSINE_LIMIT)) / math.pi


def build_dialogue_graph(channels: Sequence[Tensor], lengths: Sequence[int], gamma: float) -> DialogueGraph:
    """The MMGCN graph of a batch of dialogues from its node features, one [n, H] tensor per channel.

    Within a channel, every ordered pair of utterances of the same dialogue (self-loops included); across
    channels, the nodes of the same utterance, weighted by gamma. Weights are angular similarities of the node
    features (gradients flow through them, as in the authors' code), then symmetrically normalised. Only real
    utterances become nodes: the padded positions of the per-dialogue layout are masked out of every edge.
    """
    n = int(channels[0].shape[0])
    if sum(lengths) != n or any(c.shape[0] != n for c in channels):
        raise ValueError(f"graph: {[c.shape[0] for c in channels]} nodes per channel for dialogue lengths {lengths}")
    device = channels[0].device
    n_channels, n_nodes = len(channels), n * len(channels)
    index, mask = dialogue_layout(lengths, device)  # [B, Lmax]
    longest = index.shape[1]
    pair_mask = mask[:, :, None] & mask[:, None, :]
    rows_in = index[:, :, None].expand_as(pair_mask)[pair_mask]
    cols_in = index[:, None, :].expand_as(pair_mask)[pair_mask]
    unit = [F.normalize(c, dim=-1, eps=1e-12) for c in channels]
    rows, cols, raw, cross = [], [], [], []
    for c, u in enumerate(unit):
        padded = u[index]  # [B, Lmax, H]; padded positions are masked out below
        cosine = padded @ padded.transpose(1, 2)
        cosine = 0.5 * (cosine + cosine.transpose(1, 2))  # exact symmetry regardless of GEMM blocking
        rows.append(rows_in + c * n)
        cols.append(cols_in + c * n)
        raw.append(angular_similarity(cosine[pair_mask]))
        cross.append(torch.zeros(rows_in.shape[0], dtype=torch.bool, device=device))
    utterances = torch.arange(n, device=device)
    for c, uc in enumerate(unit):
        for d, ud in enumerate(unit):
            if c == d:
                continue
            rows.append(utterances + c * n)
            cols.append(utterances + d * n)
            raw.append(gamma * angular_similarity((uc * ud).sum(-1)))
            cross.append(torch.ones(n, dtype=torch.bool, device=device))
    row, col = torch.cat(rows), torch.cat(cols)
    order = torch.argsort(row * n_nodes + col)
    edges = torch.stack([row[order], col[order]])
    raw_weights = torch.cat(raw)[order]
    cross_modal = torch.cat(cross)[order]
    degree = torch.zeros(n_nodes, dtype=raw_weights.dtype, device=device).index_add(0, edges[0], raw_weights)
    inv_sqrt = degree.clamp(min=torch.finfo(degree.dtype).tiny).rsqrt()
    weights = inv_sqrt[edges[0]] * raw_weights * inv_sqrt[edges[1]]

    # per-dialogue blocks: slot c * Lmax + position of dialogue b holds node c * n + index[b, position]
    slots = torch.cat([index + c * n for c in range(n_channels)], dim=1)
    slot_mask = mask.repeat(1, n_channels)
    block_of = torch.empty(n_nodes, dtype=torch.long, device=device)
    slot_of = torch.empty(n_nodes, dtype=torch.long, device=device)
    real = slots[slot_mask]
    block_of[real] = torch.arange(len(lengths), device=device)[:, None].expand_as(slots)[slot_mask]
    slot_of[real] = torch.arange(n_channels * longest, device=device)[None, :].expand_as(slots)[slot_mask]
    blocks = weights.new_zeros(len(lengths), n_channels * longest, n_channels * longest)
    blocks = blocks.index_put((block_of[edges[0]], slot_of[edges[0]], slot_of[edges[1]]), weights)
    return DialogueGraph(edges, raw_weights, weights, cross_modal, n_nodes, slots, slot_mask, blocks)


def propagate(graph: DialogueGraph, h: Tensor) -> Tensor:
    """[n_nodes, F]: the normalised adjacency times the node features, one dense product per dialogue block.

    Empty slots are filled with zeros and have all-zero rows and columns in the blocks, so they contribute nothing
    and their outputs are dropped; the result equals `graph.dense() @ h` at a fraction of its cost.
    """
    if h.shape[0] != graph.n_nodes:
        raise ValueError(f"propagate: {h.shape[0]} node rows for a graph of {graph.n_nodes} nodes")
    gathered = h[graph.slots] * graph.slot_mask.unsqueeze(-1).to(h.dtype)
    product = torch.bmm(graph.blocks, gathered)[graph.slot_mask]  # real slots, in (dialogue, slot) order
    return product.new_zeros(h.shape).index_copy(0, graph.slots[graph.slot_mask], product)


class DeepGCN(nn.Module):
    """GCNII with the authors' "variant": h0 = ReLU(Linear(x)); layer l (1-based) computes
    r = (1 - alpha) A H + alpha h0 and H = ReLU(beta_l [A H, h0] W_l + (1 - beta_l) r), beta_l = ln(lambda/l + 1);
    dropout before each layer."""

    def __init__(self, in_dim: int, hidden: int, layers: int, alpha: float, lam: float, dropout: float):
        super().__init__()
        self.input = nn.Linear(in_dim, hidden)
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(2 * hidden, hidden)) for _ in range(layers)])
        self.alpha, self.lam, self.dropout = alpha, lam, dropout
        bound = 1.0 / math.sqrt(hidden)  # GCNII's initialisation of W_l
        for w in self.weights:
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x: Tensor, graph: DialogueGraph) -> Tensor:
        h0 = F.relu(self.input(F.dropout(x, self.dropout, self.training)))
        h = h0
        for layer, weight in enumerate(self.weights, start=1):
            h = F.dropout(h, self.dropout, self.training)
            beta = math.log(self.lam / layer + 1.0)
            propagated = propagate(graph, h)
            residual = (1.0 - self.alpha) * propagated + self.alpha * h0
            h = F.relu(beta * (torch.cat([propagated, h0], dim=-1) @ weight) + (1.0 - beta) * residual)
        return h


class MMGCN(nn.Module):
    """The MMGCN network (and its comparison variants) over a `DialogueBatch`; returns [n, classes] log-probs."""

    def __init__(self, input_dims: Mapping[str, int], n_classes: int, n_speakers: int, config: Mapping[str, Any]):
        super().__init__()
        modalities = selected_modalities(config)
        self.channels = ["fused"] if config["fusion"] == "early" else modalities
        missing = [c for c in self.channels if c not in input_dims]
        if missing:
            raise ValueError(f"MMGCN: no input size for channels {missing} (got {dict(input_dims)})")
        hidden = config["hidden"]
        self.projections = nn.ModuleDict({c: nn.Linear(input_dims[c], hidden) for c in self.channels})
        # the channel carrying text (the fused one when it contains text): it gets the dialogue BiLSTM and the
        # speaker embedding when speaker_embedding is "text"
        self.text_channel = ("fused" if config["fusion"] == "early" and "text" in modalities
                             else "text" if "text" in self.channels else None)
        self.context = None
        if config["text_context"] and self.text_channel is not None:
            layers = config["context_layers"]
            self.context = nn.LSTM(hidden, hidden // 2, num_layers=layers, bidirectional=True, batch_first=True,
                                   dropout=config["dropout"] if layers > 1 else 0.0)
        where = config["speaker_embedding"]
        self.speaker_channels = ([] if where == "none" else list(self.channels) if where == "all"
                                 else [self.text_channel] if self.text_channel is not None else [])
        self.speaker_embedding = nn.Embedding(n_speakers, hidden) if self.speaker_channels else None
        self.gamma = float(config["gamma"])
        self.gcn = (DeepGCN(hidden, config["gcn_hidden"], config["layers"], config["alpha"], config["lambda"],
                            config["dropout"])
                    if config["graph"] else None)
        node_dim = hidden + (config["gcn_hidden"] if self.gcn is not None else 0)
        self.dropout = nn.Dropout(config["dropout"])
        self.classifier = nn.Linear(node_dim * len(self.channels), n_classes)

    def project(self, batch: DialogueBatch) -> dict[str, Tensor]:
        """Per channel [n, hidden] projections (text: Linear, then the BiLSTM over each dialogue), no speaker."""
        out = {c: self.projections[c](batch.features[c]) for c in self.channels}
        if self.context is not None and self.text_channel is not None:
            index, mask = batch.padded_index()
            padded = out[self.text_channel][index]  # [B, Lmax, hidden]
            packed = pack_padded_sequence(padded, torch.tensor(batch.lengths), batch_first=True,
                                          enforce_sorted=False)
            hidden, _ = pad_packed_sequence(self.context(packed)[0], batch_first=True, total_length=index.shape[1])
            out[self.text_channel] = hidden[mask]
        return out

    def nodes(self, batch: DialogueBatch) -> dict[str, Tensor]:
        """The graph's node features: projections, plus the speaker embedding on the configured channels."""
        out = self.project(batch)
        if self.speaker_embedding is not None:
            speaker = self.speaker_embedding(batch.speakers)
            for c in self.speaker_channels:
                out[c] = out[c] + speaker
        return out

    def graph(self, batch: DialogueBatch, nodes: dict[str, Tensor] | None = None) -> DialogueGraph:
        nodes = self.nodes(batch) if nodes is None else nodes
        return build_dialogue_graph([nodes[c] for c in self.channels], batch.lengths, self.gamma)

    def utterance_features(self, batch: DialogueBatch) -> Tensor:
        """[n, channels x node_dim]: per utterance the node outputs of its channels, concatenated (A, V, T)."""
        nodes = self.nodes(batch)
        if self.gcn is None:
            return torch.cat([nodes[c] for c in self.channels], dim=-1)
        stacked = torch.cat([nodes[c] for c in self.channels], dim=0)
        refined = self.gcn(stacked, self.graph(batch, nodes))
        per_node = torch.cat([stacked, refined], dim=-1)
        return torch.cat(per_node.chunk(len(self.channels), dim=0), dim=-1)

    def forward(self, batch: DialogueBatch) -> Tensor:
        return F.log_softmax(self.classifier(F.relu(self.dropout(self.utterance_features(batch)))), dim=-1)


# --------------------------------------------------------------------------------------------------- training

def class_weights(labels: Tensor, n_classes: int, how: str) -> Tensor | None:
    """1 / class frequency over the labelled training utterances (0 for a class with no example), or None."""
    if how == "none":
        return None
    known = labels[labels != UNLABELLED]
    counts = torch.bincount(known, minlength=n_classes).double()
    frequency = counts / counts.sum()
    return torch.where(counts > 0, 1.0 / frequency.clamp(min=1e-12), torch.zeros_like(frequency)).float()


def infer_n_classes(sets: Sequence[UtteranceSet], config: Mapping[str, Any]) -> int:
    labels = torch.cat([s.labels[s.labels != UNLABELLED] for s in sets])
    seen = int(labels.max()) + 1 if labels.numel() else 0
    n_classes = config.get("n_classes")
    if n_classes is None:
        if seen == 0:
            raise ValueError("MMGCN: no labelled utterance in train, val or test")
        return seen
    if seen > n_classes:
        raise ValueError(f"MMGCN: label {seen - 1} outside n_classes={n_classes}")
    return int(n_classes)


@torch.no_grad()
def predict(model: MMGCN, data: DialogueData, batch_dialogues: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, y_true, y_pred) over the labelled utterances of `data`, in UtteranceSet order."""
    model.eval()
    positions, truths, guesses = [], [], []
    for batch in data.batches(batch_dialogues):
        log_probs = model(batch)
        keep = batch.labels != UNLABELLED
        positions.append(batch.positions[keep])
        truths.append(batch.labels[keep])
        guesses.append(log_probs.argmax(-1)[keep])
    pos = torch.cat(positions).cpu().numpy()
    order = np.argsort(pos, kind="stable")
    return pos[order], torch.cat(truths).cpu().numpy()[order], torch.cat(guesses).cpu().numpy()[order]


def build_model(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, config: Mapping[str, Any],
                device: torch.device) -> tuple[MMGCN, list[DialogueData], int]:
    """The model and the three sets prepared for it (pooled vectors, speaker rows, on `device`)."""
    sets = [train, val, test]
    vectors = pooled_vectors(sets, config)
    speakers, n_speakers = speaker_indices(sets, config["speaker_ids"])
    n_classes = infer_n_classes(sets, config)
    dims = {name: int(v.shape[1]) for name, v in vectors[0].items()}
    model = MMGCN(dims, n_classes, n_speakers, config).to(device)
    data = [DialogueData(s, v, spk, device) for s, v, spk in zip(sets, vectors, speakers, strict=True)]
    return model, data, n_classes


def _check_sets(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, wanted: Sequence[str],
                modalities: str) -> None:
    """Every set holds the configured modalities and some labelled utterance."""
    for name, uset in (("train", train), ("val", val), ("test", test)):
        absent = [m for m in wanted if m not in uset.modalities]
        if absent:
            raise ValueError(f"MMGCN: modalities {modalities!r} name {absent}, which the {name} set does not "
                             f"hold (it has {list(uset.modalities)})")
        if len(uset.labelled()) == 0:
            raise ValueError(f"MMGCN: the {name} set has no labelled utterance")


def train_and_evaluate(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, config: dict, *, seed: int,
                       device: torch.device, init_state: dict | None = None) -> FoldOutcome:
    """Train MMGCN (or the configured variant) on `train`, select the epoch by validation weighted F1, and
    evaluate it on `test` with full inputs (the condition over its `modalities`: "avl" for avt, "azz" for a).

    `extras` also holds the authors' protocol figure, the best weighted F1 over test epochs (labelled
    test-selected: optimistic, for comparison with the published numbers only).
    """
    validate_config(config)
    wanted = selected_modalities(config)
    _check_sets(train, val, test, wanted, config["modalities"])
    seed_everything(seed)
    model, (train_data, val_data, test_data), n_classes = build_model(train, val, test, config, device)
    if init_state is not None:
        model.load_state_dict(init_state)
    weights = class_weights(train.labels, n_classes, config["class_weights"])
    criterion = nn.NLLLoss(weight=None if weights is None else weights.to(device), ignore_index=UNLABELLED)
    optimizer = adam(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    shuffler = torch.Generator().manual_seed(seed)
    size = config["batch_dialogues"]
    progress = tqdm(total=config["epochs"], desc="mmgcn", unit="epoch", disable=None, leave=False)

    def step(batch: DialogueBatch, epoch: int) -> dict[str, Tensor]:
        log_probs = model(batch)
        if bool((batch.labels != UNLABELLED).any()):
            return {"loss": criterion(log_probs, batch.labels)}
        return {"loss": log_probs.sum() * 0.0}  # a batch of unlabelled dialogues only: context, no loss

    def select_on_val() -> dict[str, float]:
        _, y_val, p_val = predict(model, val_data, size)
        progress.update(1)
        return classification_metrics(y_val, p_val, n_classes)

    def score_test(epoch: int) -> dict[str, float]:  # the authors' protocol column; never selects
        _, y_test, p_test = predict(model, test_data, size)
        return {f"test_{k}": v for k, v in classification_metrics(y_test, p_test, n_classes).items()}

    start = time.perf_counter()
    result = fit(model, epochs=config["epochs"], batches=lambda epoch: train_data.batches(size, shuffler), step=step,
                 optimizer=optimizer, evaluate=select_on_val, select="weighted_f1", clip_norm=config["clip_norm"],
                 describe="mmgcn", observe=score_test)
    progress.close()
    seconds = time.perf_counter() - start
    model.load_state_dict(result.best_state)
    positions, y_true, y_pred = predict(model, test_data, size)
    metrics = classification_metrics(y_true, y_pred, n_classes)
    best_test = max(range(len(result.history)), key=lambda e: result.history[e]["test_weighted_f1"])
    log.info("mmgcn: %d epochs in %.1f s (%.2f s/epoch), %d/%d/%d dialogues; selected epoch %d (val weighted F1 "
             "%.4f), test weighted F1 %.4f; test-selected %.4f at epoch %d", config["epochs"], seconds,
             seconds / config["epochs"], len(train_data), len(val_data), len(test_data), result.best_epoch,
             result.best_score, metrics["weighted_f1"], result.history[best_test]["test_weighted_f1"], best_test)
    full = full_condition(wanted)
    return FoldOutcome(
        metrics={full: metrics},
        state={k: v.detach().cpu().clone() for k, v in result.best_state.items()},
        history=result.history,
        predictions={full: (y_true, y_pred)},
        extras=_extras(result, best_test, [test.utt_ids[int(i)] for i in positions], seconds / config["epochs"]),
    )


def _extras(result: FitResult, best_test: int, test_utt_ids: list[str], seconds_per_epoch: float) -> dict[str, Any]:
    """The selection, the authors' protocol figure (best test epoch) and the scored test utterances."""
    return {"selected_epoch": result.best_epoch, "val_weighted_f1": result.best_score,
            "test_selected_weighted_f1": result.history[best_test]["test_weighted_f1"],
            "test_selected_epoch": best_test,
            "test_selected_note": "best test epoch, the authors' protocol (no validation set); optimistic",
            "test_utt_ids": test_utt_ids,
            "seconds_per_epoch": seconds_per_epoch}
