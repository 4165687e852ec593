"""Executors: run an extractor over the shards a store writer still needs, and hand each finished shard back.

`local` runs in this process (workers=1) or in a pool of worker processes, each loading the model once. Workers
are spawned by default (safe with torch and threads); `start_method: fork` lets an extractor whose stage process
holds no threads or GPU state skip the per-worker interpreter start and imports (seconds each for opensmile and
scipy.signal on slow CPUs, which on small corpora eats most of the gain of a second worker).
Work units come from `Extractor.work_units` per shard and results are reassembled in shard order, so the store is
the same bytes whatever the number of workers. The Ray executor (`pipeline.extract.ray_executor`) follows the
same contract.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from pipeline.errors import AffectflowError
from pipeline.extract import Extractor, ExtractorConfigError
from pipeline.manifest import Utterance
from pipeline.store import Shard, StoreWriter, UtteranceFeatures

log = logging.getLogger(__name__)

Task = tuple[int, int, list[Utterance]]  # shard position, unit position, utterances


@dataclass
class ExtractionSummary:
    utterances: int = 0
    processed: int = 0
    present: int = 0
    reused_shards: int = 0
    written_shards: int = 0
    failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    restarts: int = 0  # worker processes that died and were replaced (Ray executor)
    retries: int = 0  # work units run again after an error or a worker's death (Ray executor)

    @property
    def missing(self) -> int:
        return sum(self.failures.values())

    def add(self, results: Sequence[UtteranceFeatures]) -> None:
        for res in results:
            self.processed += 1
            if res.present:
                self.present += 1
            else:
                self.failures[res.failure or "unknown"] += 1

    def describe(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.failures.most_common()) or "none"
        rate = self.processed / self.seconds if self.seconds > 0 else float("nan")
        recovered = f"; worker restarts {self.restarts}, units retried {self.retries}" \
            if self.restarts or self.retries else ""
        return (f"{self.utterances} utterances; processed {self.processed} in {self.seconds:.1f} s "
                f"({rate:.1f}/s); present {self.present}, missing {self.missing} ({reasons}); "
                f"shards written {self.written_shards}, reused {self.reused_shards}{recovered}")


def plan_tasks(extractor: Extractor, shards: Sequence[Shard],
               utts_by_id: dict[str, Utterance]) -> tuple[list[Task], list[int]]:
    """The work units of every shard, and how many units each shard has."""
    tasks: list[Task] = []
    counts: list[int] = []
    for pos, shard in enumerate(shards):
        utts = [utts_by_id[u] for u in shard.utt_ids]
        units = extractor.work_units(utts)
        covered = sorted(i for unit in units for i in unit)
        if covered != list(range(len(utts))):
            raise RuntimeError(f"{extractor.name}.work_units must cover each utterance of a shard exactly once")
        counts.append(len(units))
        tasks.extend((pos, k, [utts[i] for i in unit]) for k, unit in enumerate(units))
    return tasks, counts


def assemble(extractor: Extractor, shard: Shard, utts_by_id: dict[str, Utterance],
             unit_results: dict[int, list[UtteranceFeatures]]) -> list[UtteranceFeatures]:
    """Put a shard's unit results back into the shard's utterance order."""
    utts = [utts_by_id[u] for u in shard.utt_ids]
    ordered: list[UtteranceFeatures | None] = [None] * len(utts)
    for k, unit in enumerate(extractor.work_units(utts)):
        for i, res in zip(unit, unit_results[k], strict=True):
            ordered[i] = res
    return [r for r in ordered if r is not None]


def set_threads(threads: int) -> None:
    """Fix the thread counts of the numeric libraries that are loaded (they change results and speed)."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    if "cv2" in sys.modules:
        import cv2

        cv2.setNumThreads(threads)


_WORKER: Extractor | None = None
_SETUP_ERROR: str | None = None


def _init_worker(extractor: Extractor, threads: int) -> None:
    """Load the model once per worker. A failure is kept and reported by the first task: an exception escaping a
    Pool initializer would make the pool restart the worker forever."""
    global _WORKER, _SETUP_ERROR
    logging.basicConfig(level=logging.WARNING)
    try:
        extractor.setup()
        set_threads(threads)
        _WORKER = extractor
    except Exception as err:  # noqa: BLE001 - re-raised in the parent by _run_task
        _SETUP_ERROR = f"{type(err).__name__}: {err}"


class WorkerSetupError(AffectflowError, RuntimeError):
    pass


def _run_task(task: Task) -> tuple[int, int, list[UtteranceFeatures]]:
    if _WORKER is None:
        raise WorkerSetupError(f"extractor setup failed in a worker: {_SETUP_ERROR}")
    pos, k, utts = task
    return pos, k, _process_checked(_WORKER, utts)


def _process_checked(extractor: Extractor, utts: list[Utterance]) -> list[UtteranceFeatures]:
    results = extractor.process(utts)
    if len(results) != len(utts):
        raise RuntimeError(f"{extractor.name} returned {len(results)} results for {len(utts)} utterances")
    return results


def _iter_local(extractor: Extractor, tasks: list[Task], workers: int, threads: int,
                start_method: str = "spawn") -> Iterator[tuple[int, int, list[UtteranceFeatures]]]:
    if workers <= 1:
        extractor.setup()
        set_threads(threads)
        for pos, k, utts in tasks:
            yield pos, k, _process_checked(extractor, utts)
        return
    ctx = mp.get_context(start_method)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(extractor, threads)) as pool:
        yield from pool.imap(_run_task, tasks, chunksize=1)


def run(extractor: Extractor, writer: StoreWriter, utts_by_id: dict[str, Utterance],
        results: Callable[[list[Task]], Iterator[tuple[int, int, list[UtteranceFeatures]]]],
        progress: bool = True) -> ExtractionSummary:
    """Drive any executor: plan the pending shards, consume its unit results, write each shard when complete."""
    start = time.perf_counter()
    summary = ExtractionSummary(utterances=len(writer.utt_ids))
    pending = writer.pending()
    summary.reused_shards = len(writer.shards) - len(pending)
    tasks, counts = plan_tasks(extractor, pending, utts_by_id)
    collected: dict[int, dict[int, list[UtteranceFeatures]]] = {}
    n_pending = sum(len(s.utt_ids) for s in pending)
    with tqdm(total=n_pending, desc=f"extract {extractor.name}", unit="utt", disable=not progress,
              mininterval=1.0) as bar:
        for pos, k, unit_results in results(tasks):
            collected.setdefault(pos, {})[k] = unit_results
            bar.update(len(unit_results))
            if len(collected[pos]) == counts[pos]:
                shard_results = assemble(extractor, pending[pos], utts_by_id, collected.pop(pos))
                writer.write_shard(pending[pos], shard_results)
                summary.add(shard_results)
                summary.written_shards += 1
    if collected:
        raise RuntimeError(f"executor ended with {len(collected)} incomplete shards")
    summary.seconds = time.perf_counter() - start
    return summary


def run_local(extractor: Extractor, writer: StoreWriter, utts_by_id: dict[str, Utterance], *, workers: int = 1,
              threads_per_worker: int = 1, start_method: str = "spawn", progress: bool = True,
              **_: Any) -> ExtractionSummary:
    if start_method not in mp.get_all_start_methods():
        raise ExtractorConfigError(f"start_method must be one of {mp.get_all_start_methods()}, got {start_method!r}")
    return run(extractor, writer, utts_by_id,
               lambda tasks: _iter_local(extractor, tasks, workers, threads_per_worker, start_method), progress)
