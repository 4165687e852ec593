"""A store's bytes depend on what was extracted, never on how: shard size, worker count, threads per worker and the
executor are settings of the run (no stage dep), so each must leave the file byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from pipeline.extract.to_store import extract_to_store
from pipeline.store import FeatureStore, chunk_rows_for
from tests.toy_extractor import ToyExtractor, toy_utterances

DIM = 2048  # chunk_rows_for(2048) = 128 rows: the ~300 rows of 100 utterances span several chunks
CONFIG = {"dim": DIM, "batch_size": 3, "fail_ids": ["u0003", "u0010", "u0042"]}


def _extract(path: Path, shard_size: int = 256, **options: Any) -> str:
    executor = options.pop("executor", "local")
    extract_to_store(ToyExtractor(dict(CONFIG), path.parent), toy_utterances(100), path, executor=executor,
                     executor_options=options, shard_size=shard_size, progress=False)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    digest = _extract(path)
    store = FeatureStore(path)
    assert 2 * chunk_rows_for(DIM) < int(store.offsets[-1])  # several chunks of /features
    assert {"toy failure", "empty"} <= set(store.failure)  # failure strings of more than one kind
    return digest


@pytest.mark.parametrize("shard_size", [1, 3, 7, 50])
def test_shard_size_leaves_the_bytes(reference: str, tmp_path: Path, shard_size: int) -> None:
    assert _extract(tmp_path / "s.h5", shard_size=shard_size) == reference


def test_workers_and_threads_leave_the_bytes(reference: str, tmp_path: Path) -> None:
    assert _extract(tmp_path / "w.h5", shard_size=7, workers=2, threads_per_worker=2) == reference
    assert _extract(tmp_path / "t.h5", shard_size=7, workers=1, threads_per_worker=3) == reference


# The executor (local or ray) is covered by tests/test_ray_executor.py: toy, compare and bert stores byte-identical.
