"""Text features from any transformers text encoder (BERT, RoBERTa, DeBERTa, XLM-R, ...): `hf_text`, and `bert`,
its older name (MMIN's lexical input), which old params keep using with the same store layout.

Per utterance the output is the last hidden layer (or the mean of the last k layers) at every sub-word token of the
cleaned transcript, the special tokens ([CLS]/[SEP], <s>/</s>) dropped unless asked for: shape (T, hidden_size)
with `pooling: tokens`; or one sentence vector, shape (1, hidden_size): `pooling: mean` (the mean of those token
rows) or `pooling: cls` (the first special token's row, [CLS] or <s>, whatever `keep_special_tokens` says).

Speed: `work_units` sorts a shard's utterances by token count and splits them into the batches that cost least
(padded positions plus `batch_overhead_tokens` per forward pass, `plan_batches`), each within `token_budget`
(batch x longest sequence), so padding is a few percent and the model runs on large matrices;
inference runs under `torch.inference_mode`, in half precision on a GPU when `dtype` is `auto`, and in float32 on
the CPU with the linear layers' weights packed once for oneDNN (`cpu_linear`, see `cpu_linear.py`). The units depend
only on the shard, and the executor puts results back in id order, so the store is the same whatever the batching
and the number of workers.

The constructor resolves the model files (failing before any work when they are not on this machine) and loads
only the config and tokenizer; `setup()` loads the weights in each worker.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from pipeline import missing
from pipeline.extract import Extractor, ExtractorConfigError, library_versions
from pipeline.extract.compute import compute_facts
from pipeline.extract.inference import layers_averaged, pick_device, pick_dtype
from pipeline.extract.model_files import ModelFiles, resolve_model
from pipeline.extract.text_clean import NORMAL_FORMS, clean_transcript
from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": "bert-large-uncased",  # hub id (local HF cache only), local directory, or python-package:<module>
    "revision": None,  # HF revision (commit hash, branch or tag) to take from the cache; None = what `main` names
    "layer": "last",  # "last", or "mean_last_<k>": the mean of the last k hidden layers
    "pooling": "tokens",  # tokens: (T, D), one row per sub-word token | mean | cls: one (1, D) sentence vector
    "keep_special_tokens": False,  # keep the [CLS]/[SEP] rows
    "max_tokens": None,  # word pieces kept per utterance (specials not counted); None = the model's limit
    "token_budget": 2048,  # padded tokens (batch size x longest sequence, specials included) per forward pass
    "batch_overhead_tokens": 32,  # a forward pass's fixed cost in padded tokens (the planner: padding vs passes)
    "dtype": "auto",  # auto (float16 on a GPU, float32 on the CPU) | float32 | float16 | bfloat16
    "device": "auto",  # auto | cpu | cuda | cuda:<n>
    "cpu_linear": "onednn",  # float32 on the CPU: onednn (weights packed once, 1.2x; see cpu_linear.py) | torch
    "normalize": "NFC",  # Unicode normal form applied to transcripts (NFC, NFKC, NFD, NFKD) or None
    "fix_mojibake": True,  # undo UTF-8 text decoded as cp1252 / latin-1 (`Iâ€™m` -> `I’m`)
}
POOLINGS = ("tokens", "mean", "cls")
# models whose learned positions start after the padding index (RoBERTa's `padding_idx + 1`): fewer usable positions
POSITION_OFFSET_MODELS = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                    "roberta-prelayernorm", "data2vec-text", "xmod", "ibert", "mpnet", "bart"})


def plan_batches(lengths: Sequence[int], budget: int, overhead: int) -> list[int]:
    """Batch boundaries over ascending `lengths`: [0, b1, ..., n], batch k = lengths[b_k:b_k+1].

    Minimises the padded tokens computed plus `overhead` per forward pass (sum over batches of count x longest +
    overhead), each batch's padded size within `budget` (a sequence longer than the budget runs alone). Exact, by
    dynamic programming over the sorted lengths: a shard of a few hundred utterances packed greedily to the budget
    pads a third of its positions (a batch spans short and long sequences); this pads a few percent, in batches
    still large enough to keep the matrix products efficient.
    """
    n = len(lengths)
    if any(b < a for a, b in zip(lengths, lengths[1:], strict=False)):
        raise ValueError("plan_batches needs lengths in ascending order")
    cost = [0] + [math.inf] * n  # cost[j]: the cheapest plan of the first j sequences
    start = [0] * (n + 1)  # start[j]: where the last batch of that plan begins
    for j in range(1, n + 1):
        longest = lengths[j - 1]  # the longest of any batch that ends at j
        widest = max(1, budget // longest)  # most sequences that fit the budget (one always runs)
        for i in range(j - 1, max(0, j - widest) - 1, -1):  # short batches first: a tie keeps the shorter
            c = cost[i] + (j - i) * longest + overhead
            if c < cost[j]:
                cost[j], start[j] = c, i
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(start[bounds[-1]])
    return bounds[::-1]


class TextEncoderExtractor(Extractor):
    """Token or sentence embeddings from any transformers text encoder (`hf_text`)."""

    name: ClassVar[str] = "hf_text"
    version: ClassVar[str] = "1"
    modality: ClassVar[str] = "text"

    def __init__(self, config: dict[str, Any], corpus_root: Any = ".") -> None:
        super().__init__(self.with_defaults(config, DEFAULTS), corpus_root)
        cfg = self.config
        self.k_layers = layers_averaged(cfg["layer"], self.name)
        if cfg["pooling"] not in POOLINGS:
            raise ExtractorConfigError(f"{self.name}: pooling must be one of {POOLINGS}, got {cfg['pooling']!r}")
        if cfg["normalize"] is not None and cfg["normalize"] not in NORMAL_FORMS:
            raise ExtractorConfigError(f"{self.name}: normalize must be one of {NORMAL_FORMS} or null, "
                                       f"got {cfg['normalize']!r}")
        if not isinstance(cfg["token_budget"], int) or cfg["token_budget"] < 1:
            raise ExtractorConfigError(f"{self.name}: token_budget must be a positive integer, "
                                       f"got {cfg['token_budget']!r}")
        if not isinstance(cfg["batch_overhead_tokens"], int) or cfg["batch_overhead_tokens"] < 0:
            raise ExtractorConfigError(f"{self.name}: batch_overhead_tokens must be an integer >= 0, "
                                       f"got {cfg['batch_overhead_tokens']!r}")
        if cfg["cpu_linear"] not in ("onednn", "torch"):
            raise ExtractorConfigError(f"{self.name}: cpu_linear must be onednn or torch, got {cfg['cpu_linear']!r}")
        self.files: ModelFiles = resolve_model(cfg["model"], cfg["revision"])

        from transformers import AutoConfig

        self.model_config = AutoConfig.from_pretrained(self.files.path)
        if self.k_layers > self.model_config.num_hidden_layers + 1:
            raise ExtractorConfigError(f"{self.name}: layer {cfg['layer']!r} averages more layers than the model has "
                                       f"({self.model_config.num_hidden_layers} + embeddings)")
        self.device = pick_device(cfg["device"], self.name)
        self.dtype_name = pick_dtype(cfg["dtype"], self.device, self.name)
        self._tokenizer: Any = None
        self._model: Any = None
        self._backend: Any = None  # tokenizers.Tokenizer configured for padding and truncation
        self.n_special = self.tokenizer.num_special_tokens_to_add()
        limit = self._position_limit()
        room = limit - self.n_special
        if cfg["max_tokens"] is None:
            self.max_tokens = room
        elif isinstance(cfg["max_tokens"], int) and 1 <= cfg["max_tokens"] <= room:
            self.max_tokens = cfg["max_tokens"]
        else:
            raise ExtractorConfigError(f"{self.name}: max_tokens must be an integer in 1..{room} (the model takes "
                                       f"{limit} positions, {self.n_special} of them special), "
                                       f"got {cfg['max_tokens']!r}")
        self._identity: dict[str, Any] | None = None
        self._counts: dict[str, int] = {}  # cleaned text -> word pieces (planning and reassembly both ask)
        self.truncated: dict[str, int] = {}  # utt_id -> word pieces before truncation

    # --- configuration ------------------------------------------------------------------------------------------
    def _position_limit(self) -> int:
        """Token positions the model takes: its position table (less RoBERTa's offset), or the tokenizer's limit."""
        table = getattr(self.model_config, "max_position_embeddings", None)
        if table is None:
            return int(self.tokenizer.model_max_length)
        if self.model_config.model_type in POSITION_OFFSET_MODELS:
            table -= int(getattr(self.model_config, "pad_token_id", 1) or 0) + 1
        return int(table)

    @property
    def dim(self) -> int:
        return int(self.model_config.hidden_size)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.files.path)
        return self._tokenizer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokenizer"] = None  # rebuilt from the files in the worker
        state["_model"] = None
        state["_backend"] = None
        state["_counts"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """On another host (a Ray worker) the model may live elsewhere: find it again by its name, same revision."""
        self.__dict__.update(state)
        self.files = self.files.found_again(self.config["model"], self.config["revision"])

    def describe(self) -> dict[str, Any]:
        if self._identity is None:  # hashing BERT-large's 1.3 GB takes a second or two: once
            self._identity = {
                **self.files.identity(self.model_config.model_type),
                "tokenizer_sha256": self.files.tokenizer_sha256(),
                "hidden_size": self.dim,
                "num_hidden_layers": int(self.model_config.num_hidden_layers),
                "layers_averaged": self.k_layers,
                "pooling": self.config["pooling"],
                "max_tokens": self.max_tokens,
                "compute_device": self.device.split(":")[0],
                "compute_dtype": self.dtype_name,
                "feature_names": [f"{self.name}_{i}" for i in range(self.dim)],
                "frame_hop_s": None,  # one row per token (or one per sentence), not per time step
                # what computes the numbers (hub and safetensors only load the bytes weights_sha256 names)
                "library_versions": library_versions("torch", "transformers", "tokenizers"),
                "compute": compute_facts(self.device),
            }
        return self._identity

    # --- tokens -------------------------------------------------------------------------------------------------
    def clean(self, utt: Utterance) -> str:
        return clean_transcript(utt.text, self.config["normalize"], self.config["fix_mojibake"])

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, before truncation and without special tokens."""
        new = sorted({t for t in texts if t and t not in self._counts})
        if new:
            pieces = self.tokenizer(new, add_special_tokens=False, verbose=False)["input_ids"]
            self._counts.update(zip(new, map(len, pieces), strict=True))
        return [self._counts[t] if t else 0 for t in texts]

    def work_units(self, utts: Sequence[Utterance]) -> list[list[int]]:
        """Length-sorted batches, split by `plan_batches`: the least padding plus per-pass overhead, each batch's
        padded size (count x longest, specials included) within `token_budget`; an utterance longer than the
        budget runs alone."""
        counts = self._token_counts([self.clean(u) for u in utts])
        newly = [(u.utt_id, n) for u, n in zip(utts, counts, strict=True)
                 if n > self.max_tokens and u.utt_id not in self.truncated]
        if newly:
            self.truncated.update(newly)
            log.info("%s: %d of %d utterances truncated to %d word pieces (longest %d; %d so far)", self.name,
                     len(newly), len(utts), self.max_tokens, max(n for _, n in newly), len(self.truncated))
        order = sorted(range(len(utts)), key=lambda j: (counts[j], j))
        lengths = [min(counts[i], self.max_tokens) + self.n_special for i in order]
        bounds = plan_batches(lengths, self.config["token_budget"], self.config["batch_overhead_tokens"])
        return [order[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    # --- model --------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel

        from pipeline.extract.cpu_linear import pack_linear_layers

        model = AutoModel.from_pretrained(self.files.path, dtype=getattr(torch, self.dtype_name))
        model = model.to(self.device).eval()
        if self.device == "cpu" and self.dtype_name == "float32" and self.config["cpu_linear"] == "onednn":
            try:
                packed = pack_linear_layers(model, rows_hint=self.config["token_budget"])
                log.info(f"{self.name}: %d linear layers packed for oneDNN", packed)
            except RuntimeError as err:
                log.warning(f"{self.name}: linear layers stay torch's (cpu_linear: onednn not usable here: %s)", err)
        self._model = model
        self.tokenizer  # noqa: B018 - load it now, not inside the first timed batch

    def _encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Padded, truncated int64 arrays: the model's inputs plus attention_mask and special_tokens_mask.

        Fast tokenizers are driven through their `tokenizers` backend (a private copy configured once), which is
        several times quicker than the transformers wrapper's tensor conversion; others go through the wrapper.
        """
        limit = self.max_tokens + self.n_special
        names = [n for n in self.tokenizer.model_input_names if n in ("input_ids", "token_type_ids")]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=limit,
                                 return_special_tokens_mask=True, return_tensors="np", verbose=False)
            return {k: np.asarray(enc[k], np.int64) for k in (*names, "attention_mask", "special_tokens_mask")}
        if self._backend is None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(backend.to_str())
            self._backend.enable_truncation(max_length=limit)
            self._backend.enable_padding(pad_id=self.tokenizer.pad_token_id, pad_token=self.tokenizer.pad_token,
                                         pad_type_id=self.tokenizer.pad_token_type_id)
        encodings = self._backend.encode_batch(texts, add_special_tokens=True)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask",
                  "special_tokens_mask": "special_tokens_mask"}
        return {name: np.array([getattr(e, fields[name]) for e in encodings], np.int64)
                for name in (*names, "attention_mask", "special_tokens_mask")}

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        if self._model is None:
            self.setup()
        import torch

        texts = [self.clean(u) for u in utts]
        results: list[UtteranceFeatures | None] = [None] * len(utts)
        for i, (utt, text) in enumerate(zip(utts, texts, strict=True)):
            if not text:
                reason = missing.NO_TRANSCRIPT if utt.text is None else missing.EMPTY_TRANSCRIPT
                results[i] = UtteranceFeatures.missing(reason, self.dim)
            elif missing.is_lfs_pointer_text(utt.text):
                log.warning("%s: the transcript is a Git LFS pointer, not text: run `git lfs pull` in the corpus "
                            "root and prepare again", utt.utt_id)
                results[i] = UtteranceFeatures.missing(missing.LFS_POINTER, self.dim)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            enc = self._encode([texts[i] for i in todo])
            keep = enc.pop("attention_mask").astype(bool)
            special = enc.pop("special_tokens_mask").astype(bool)
            inputs = {k: torch.from_numpy(v).to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                out = self._model(**inputs, attention_mask=torch.from_numpy(keep).long().to(self.device),
                                  output_hidden_states=self.k_layers > 1)
                if self.k_layers > 1:
                    hidden = torch.stack(out.hidden_states[-self.k_layers:]).float().mean(0)
                else:
                    hidden = out.last_hidden_state
                hidden = hidden.float().cpu().numpy()
            rows = keep if self.config["keep_special_tokens"] else keep & ~special
            for b, i in enumerate(todo):
                results[i] = self._pooled(hidden[b], rows[b])
        return [r for r in results if r is not None]

    def _pooled(self, hidden: np.ndarray, rows: np.ndarray) -> UtteranceFeatures:
        """One utterance's rows as `pooling` says: the token rows, their mean, or the first (special) token's."""
        feats = hidden[rows]
        if len(feats) == 0:
            return UtteranceFeatures.missing(missing.EMPTY_TRANSCRIPT, self.dim)
        if self.config["pooling"] == "mean":
            feats = feats.astype(np.float64).mean(0, keepdims=True)
        elif self.config["pooling"] == "cls":
            feats = hidden[:1]  # position 0: [CLS] / <s> (padding is on the right)
        return UtteranceFeatures(np.ascontiguousarray(feats, dtype=np.float32), True)


class BertExtractor(TextEncoderExtractor):
    """The same extractor under its first name: `extractors.bert` in params written before `hf_text` existed.

    The store keeps `extractor: bert` in its attributes, so old stores and new ones of the same config agree."""

    name: ClassVar[str] = "bert"
