"""Run one extractor over a corpus's utterances into its feature store, with resume and a failure threshold."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.extract import Extractor, ExtractorConfigError
from pipeline.extract.executor import ExtractionSummary, run_local
from pipeline.manifest import Utterance
from pipeline.store import StoreWriter

log = logging.getLogger(__name__)


class ExtractionFailed(AffectflowError, RuntimeError):
    """Too many utterances failed; the finished shards are kept for the next run."""


def executor_function(name: str):  # noqa: ANN201 - returns one of the run_* functions
    if name == "local":
        return run_local
    if name == "ray":
        from pipeline.extract.ray_executor import run_ray

        return run_ray
    raise ExtractorConfigError(f"unknown executor {name!r}; expected 'local' or 'ray'")


def extract_to_store(extractor: Extractor, utterances: Sequence[Utterance], out_path: str | Path, *,
                     executor: str = "local", executor_options: dict[str, Any] | None = None,
                     shard_size: int = 256, max_failure_rate: float = 1.0,
                     expected_missing: Sequence[str] = (), progress: bool = True) -> ExtractionSummary:
    """Extract every utterance (sorted by id) into `out_path`; reuse finished shards of an interrupted run.

    Fails with ExtractionFailed, keeping the shards, when the share of failed utterances passes
    `max_failure_rate`; the store is only written (atomically) when it does not. Reasons listed in
    `expected_missing` (an empty transcript, a clip with no face) mark the modality missing but are not failures.
    """
    run = executor_function(executor)
    utts = sorted(utterances, key=lambda u: u.utt_id)
    by_id = {u.utt_id: u for u in utts}
    writer = StoreWriter(out_path, [u.utt_id for u in utts], extractor.dim, extractor.attributes(),
                         shard_size=shard_size, frame_valid=extractor.has_frame_valid,
                         signatures=[extractor.signature(u) for u in utts])
    summary = run(extractor, writer, by_id, progress=progress, **(executor_options or {}))
    failures = writer.failures()
    summary.failures = failures
    log.info("%s: %s", extractor.name, summary.describe())
    failed = sum(count for reason, count in failures.items() if reason not in set(expected_missing))
    rate = failed / max(len(utts), 1)
    if rate > max_failure_rate:
        reasons = ", ".join(f"{r}: {c}" for r, c in failures.most_common())
        raise ExtractionFailed(
            f"{extractor.name}: {failed} of {len(utts)} utterances failed ({rate:.1%} > "
            f"max_failure_rate {max_failure_rate:.1%}): {reasons}. Finished shards are kept in "
            f"{writer.parts_dir}; fix the inputs and run again.")
    writer.finalize()
    return summary
