"""A training stage's runs (fold x seed x labelled fraction) in this process or in a pool of spawned workers.

Each run needs only the loaded data (sent once to each worker) and its job (a few lists of positions or ids), and
seeds itself, so the outcomes are the same, in job order, whatever the number of workers. SIGINT and SIGTERM reach
the parent alone (`ignore_interrupts_in_worker`): it terminates the pool and nothing is recorded.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from pipeline.stage_outputs import SignalGuard, ignore_interrupts_in_worker

Run = Callable[[Any, Any], Any]  # (data, job) -> outcome: a module-level function or a partial of one (pickled)

_WORKER: tuple[Run, Any] | None = None


def _init_worker(run: Run, data: Any) -> None:
    global _WORKER
    ignore_interrupts_in_worker()
    logging.basicConfig(level=logging.WARNING)
    _WORKER = (run, data)


def _run_in_worker(job: Any) -> Any:
    assert _WORKER is not None
    run, data = _WORKER
    return run(data, job)


def stop_pool(pool: Any) -> None:
    """Terminate a worker pool at once (SIGTERM to each worker) and reap it."""
    if pool is not None:
        pool.terminate()
        pool.join()


def run_all(run: Run, data: Any, jobs: Sequence[Any], workers: int, guard: SignalGuard, desc: str,
            on_outcome: Callable[[Any, Any], None]) -> None:
    """`run(data, job)` for every job, in `workers` processes when more than one, calling `on_outcome(job,
    outcome)` in job order as the runs end (a progress bar counts them)."""
    pool = None
    try:
        if workers > 1:
            with guard.critical():  # a signal while the pool starts is handled once it exists
                pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker,
                                                    initargs=(run, data))
            outcomes = pool.imap(_run_in_worker, jobs)
        else:
            outcomes = (run(data, job) for job in jobs)
        for job, outcome in tqdm(zip(jobs, outcomes, strict=True), total=len(jobs), desc=desc, unit="run"):
            on_outcome(job, outcome)
        if pool is not None:
            pool.close()
            pool.join()
            pool = None
    finally:
        with guard.shielded():  # a second Ctrl-C does not cut the cleanup short
            stop_pool(pool)
