"""Run one extractor over a corpus's utterances into its feature store, with resume and a failure threshold."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.extract import Extractor, ExtractorConfigError
from pipeline.extract.executor import ExtractionSummary, run_local
from pipeline.manifest import Utterance
from pipeline.missing import LFS_POINTER, UnknownReasonError, canonical_reasons
from pipeline.store import StoreError, StoreWriter

log = logging.getLogger(__name__)

LISTED_FAILURES = 10  # failed utterances named in the message; failures.jsonl lists them all


class ExtractionFailed(AffectflowError, RuntimeError):
    """Too many utterances failed; the finished shards are kept for the next run."""


def failures_path(store: str | Path) -> Path:
    """`features/<corpus>/<extractor>.failures.jsonl`, beside the store."""
    store = Path(store)
    return store.with_name(store.name.removesuffix(".h5") + ".failures.jsonl")


def write_failures(path: Path, missing: Sequence[tuple[str, str]]) -> None:
    """One JSON line per utterance whose modality is missing, `{"reason", "utt_id"}` in id order (temporary file,
    then rename). Like the store, it depends only on the inputs and the extractor's config: whether a reason is
    expected (`expected_missing`) is a stage setting, not part of the listing."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for utt_id, reason in missing:
                fh.write(json.dumps({"reason": reason, "utt_id": utt_id}, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write the failure list ({err.strerror or err})", str(path),
                         "free space or fix the folder's permissions and run again") from None


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
    try:
        expected = set(canonical_reasons(expected_missing))
    except UnknownReasonError as err:
        raise ExtractorConfigError(f"{extractor.name}: {err}") from None
    utts = sorted(utterances, key=lambda u: u.utt_id)
    by_id = {u.utt_id: u for u in utts}
    writer = StoreWriter(out_path, [u.utt_id for u in utts], extractor.dim, extractor.attributes(),
                         shard_size=shard_size, frame_valid=extractor.has_frame_valid,
                         signatures=[extractor.signature(u) for u in utts], dtype=extractor.store_dtype,
                         columns=extractor.store_columns)
    summary = run(extractor, writer, by_id, progress=progress, **(executor_options or {}))
    missing = writer.missing_utterances()
    failures = Counter(reason for _, reason in missing)
    summary.failures = failures
    log.info("%s: %s", extractor.name, summary.describe())
    failed = [(u, r) for u, r in missing if r not in expected]
    rate = len(failed) / max(len(utts), 1)
    listing = failures_path(out_path)
    if rate > max_failure_rate:
        write_failures(listing, missing)
        reasons = ", ".join(f"{r}: {c}" for r, c in Counter(r for _, r in failed).most_common())
        first = ", ".join(f"{u} ({r})" for u, r in failed[:LISTED_FAILURES])
        more = f" and {len(failed) - LISTED_FAILURES} more" if len(failed) > LISTED_FAILURES else ""
        lfs = " Git LFS pointers: run `git lfs pull` in the corpus root." if any(r == LFS_POINTER for _, r in failed) \
            else ""
        raise ExtractionFailed(
            f"{extractor.name}: {len(failed)} of {len(utts)} utterances failed ({rate:.1%} > max_failure_rate "
            f"{max_failure_rate:.1%}; {reasons}): {first}{more}", str(listing),
            f"fix the inputs and run again (the finished shards in {writer.parts_dir} are kept), raise "
            f"max_failure_rate, or list expected reasons in expected_missing.{lfs}")
    if utts and len(missing) == len(utts):
        log.warning("%s: the modality is missing for every one of the %d utterances (%s); train refuses such a store "
                    "unless the model's allow_absent_modalities lists it", extractor.name, len(utts),
                    ", ".join(f"{r}: {c}" for r, c in failures.most_common(3)))
    write_failures(listing, missing)  # first: a store never stands without its listing
    writer.finalize()
    return summary
