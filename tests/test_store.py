"""The HDF5 feature store: round trip, shards and resume, byte identity, DataLoader workers, failure threshold."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.extract.executor import WorkerSetupError
from pipeline.extract.to_store import ExtractionFailed, extract_to_store
from pipeline.store import FeatureStore, StoreError, StoreWriter, UtteranceFeatures
from tests.toy_extractor import BrokenSetupExtractor, ToyExtractor, toy_utterances

ROOT = Path(__file__).resolve().parents[1]


def write_store(path: Path, ids: list[str], arrays: dict[str, np.ndarray], shard_size: int = 2) -> None:
    writer = StoreWriter(path, ids, 3, {"extractor": "manual", "config": {"a": 1}}, shard_size=shard_size,
                         frame_valid=True)
    for shard in writer.pending():
        writer.write_shard(shard, [
            UtteranceFeatures(arrays[u], len(arrays[u]) > 0, np.arange(len(arrays[u])) % 2 == 0,
                              "" if len(arrays[u]) else "no frames") for u in shard.utt_ids])
    writer.finalize()


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = ["a", "b", "c", "d", "e"]
    arrays = {u: rng.standard_normal((n, 3)).astype(np.float32) for u, n in zip(ids, [4, 0, 1, 7, 2], strict=True)}
    path = tmp_path / "s.h5"
    write_store(path, ids, arrays)
    assert not (tmp_path / "s.h5.parts").exists()
    store = FeatureStore(path)
    assert store.utt_ids == ids and len(store) == 5 and store.dim == 3
    for u in ids:
        np.testing.assert_array_equal(store[u], arrays[u])
        assert store[u].dtype == np.float32
    assert store.present.tolist() == [True, False, True, True, True]
    assert store.failure[1] == "no frames"
    assert store.frame_valid("d").tolist() == [True, False, True, False, True, False, True]
    np.testing.assert_array_equal(store.get("d", valid_only=True), arrays["d"][::2])
    assert store.attr_json("config") == {"a": 1} and store.attrs["extractor"] == "manual"
    assert store.attrs["dim"] == 3 and store.attrs["n_utterances"] == 5
    assert [u for u, _ in store] == ids
    with h5py.File(path, "r") as f:
        assert f["offsets"][:].tolist() == [0, 4, 4, 5, 12, 14]
        assert f["features"].chunks is not None and f["features"].compression is None
    with pytest.raises(KeyError, match="'zz' is not in the store"):
        store["zz"]


def test_identical_writes_are_byte_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ids = [f"u{i}" for i in range(9)]
    arrays = {u: rng.standard_normal((int(rng.integers(0, 5)), 3)).astype(np.float32) for u in ids}
    write_store(tmp_path / "a.h5", ids, arrays, shard_size=2)
    time.sleep(1.1)  # a timestamp anywhere in the file would now differ
    write_store(tmp_path / "b.h5", ids, arrays, shard_size=2)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="sorted"):
        StoreWriter(tmp_path / "x.h5", ["b", "a"], 3, {})
    writer = StoreWriter(tmp_path / "x.h5", ["a"], 3, {})
    with pytest.raises(StoreError, match=r"a: features of shape \(2, 4\)"):
        writer.write_shard(writer.shards[0], [UtteranceFeatures(np.zeros((2, 4), np.float32), True)])
    with pytest.raises(StoreError, match="not written yet"):
        writer.finalize()


def test_non_finite_features_are_a_failure_reason(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "x.h5", ["a", "b"], 3, {})
    writer.write_shard(writer.shards[0], [UtteranceFeatures(np.full((2, 3), np.nan, np.float32), True),
                                          UtteranceFeatures(np.ones((1, 3), np.float32), True)])
    assert writer.missing_utterances() == [("a", "non_finite")]
    with FeatureStore(writer.finalize()) as store:
        assert store.present.tolist() == [False, True] and store.failure == ["non_finite", ""]
        assert store["a"].shape == (0, 3)


def test_workers_give_the_same_bytes(tmp_path: Path) -> None:
    utts = toy_utterances(23)
    cfg = {"dim": 5, "batch_size": 3}
    extract_to_store(ToyExtractor(cfg, tmp_path), utts, tmp_path / "w1.h5", shard_size=4, progress=False)
    extract_to_store(ToyExtractor(cfg, tmp_path), utts, tmp_path / "w2.h5", shard_size=4, progress=False,
                     executor_options={"workers": 2})
    assert (tmp_path / "w1.h5").read_bytes() == (tmp_path / "w2.h5").read_bytes()


def test_worker_setup_failure_stops_the_pool(tmp_path: Path) -> None:
    with pytest.raises(WorkerSetupError, match="weights.pt vanished"):
        extract_to_store(BrokenSetupExtractor({}, tmp_path), toy_utterances(6), tmp_path / "x.h5", progress=False,
                         executor_options={"workers": 2, "start_method": "fork"})
    assert not (tmp_path / "x.h5").exists()


KILLED_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from pipeline.extract.to_store import extract_to_store
from pipeline.extract.executor import WorkerSetupError
from tests.toy_extractor import BrokenSetupExtractor, ToyExtractor, toy_utterances
extract_to_store(ToyExtractor({cfg!r}, Path({tmp!r})), toy_utterances(40), Path({out!r}), shard_size=4,
                 progress=False)
"""


def test_resume_after_sigkill_reuses_shards_and_matches(tmp_path: Path) -> None:
    cfg = {"dim": 4, "sleep": 0.15}
    out = tmp_path / "killed.h5"
    script = KILLED_RUN.format(root=str(ROOT), cfg=cfg, tmp=str(tmp_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    parts = tmp_path / "killed.h5.parts"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("shard-*.h5"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(parts.glob("shard-*.h5"))
    assert 3 <= len(done) < 10 and not out.exists()
    before = {p.name: p.stat().st_mtime_ns for p in done}
    summary = extract_to_store(ToyExtractor(cfg, tmp_path), toy_utterances(40), out, shard_size=4, progress=False)
    assert summary.reused_shards == len(done)
    assert summary.written_shards == 10 - len(done)
    extract_to_store(ToyExtractor(cfg, tmp_path), toy_utterances(40), tmp_path / "clean.h5", shard_size=4,
                     progress=False)
    assert out.read_bytes() == (tmp_path / "clean.h5").read_bytes()
    assert before  # the reused shards were not rewritten before the merge removed them


def test_changed_config_discards_old_shards(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    writer = StoreWriter(out, ["a", "b"], 2, {"config": {"x": 1}}, shard_size=1)
    writer.write_shard(writer.shards[0], [UtteranceFeatures(np.zeros((1, 2), np.float32), True)])
    assert len(StoreWriter(out, ["a", "b"], 2, {"config": {"x": 1}}, shard_size=1).pending()) == 1
    assert len(StoreWriter(out, ["a", "b"], 2, {"config": {"x": 2}}, shard_size=1).pending()) == 2
    changed = StoreWriter(out, ["a", "b"], 2, {"config": {"x": 2}}, shard_size=1, signatures=["a|new", "b"])
    assert len(changed.pending()) == 2


def test_failure_threshold_keeps_shards(tmp_path: Path) -> None:
    utts = toy_utterances(10)
    cfg = {"fail_ids": ["u0001", "u0002", "u0003"]}
    with pytest.raises(ExtractionFailed, match=r"toy failure: 3") as info:
        extract_to_store(ToyExtractor(cfg, tmp_path), utts, tmp_path / "f.h5", shard_size=3, progress=False,
                         max_failure_rate=0.2)
    assert "u0001 (toy failure), u0002 (toy failure), u0003 (toy failure)" in str(info.value)
    assert f"the finished shards in {tmp_path / 'f.h5.parts'} are kept" in str(info.value)
    assert not (tmp_path / "f.h5").exists()
    listed = [json.loads(line) for line in (tmp_path / "f.failures.jsonl").read_text().splitlines()]
    assert listed == [{"utt_id": f"u000{i}", "reason": "toy failure"} for i in (1, 2, 3)]
    assert len(list((tmp_path / "f.h5.parts").glob("shard-*.h5"))) == 4
    summary = extract_to_store(ToyExtractor(cfg, tmp_path), utts, tmp_path / "f.h5", shard_size=3,
                               progress=False, max_failure_rate=0.5)
    assert summary.reused_shards == 4 and summary.failures["toy failure"] == 3
    assert FeatureStore(tmp_path / "f.h5").failure[1] == "toy failure"


class StoreDataset(Dataset):
    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, int]:
        utt_id = self.store.utt_ids[i]
        return utt_id, torch.from_numpy(self.store[utt_id]).sum(0), os.getpid()


def as_list(batch: list) -> list:
    return batch


def test_dataloader_with_two_workers(tmp_path: Path) -> None:
    utts = toy_utterances(30)
    extract_to_store(ToyExtractor({"dim": 3}, tmp_path), utts, tmp_path / "t.h5", progress=False)
    store = FeatureStore(tmp_path / "t.h5")
    store["u0003"]  # the parent opens a handle before the fork; workers must not reuse it
    loader = DataLoader(StoreDataset(store), batch_size=4, num_workers=2,
                        collate_fn=as_list, multiprocessing_context="fork")
    seen, pids = {}, set()
    for batch in loader:
        for utt_id, total, pid in batch:
            seen[utt_id] = total
            pids.add(pid)
    assert len(seen) == 30 and len(pids) == 2 and os.getpid() not in pids
    for utt_id, total in seen.items():
        torch.testing.assert_close(total, torch.from_numpy(store[utt_id]).sum(0))
    spawn = DataLoader(StoreDataset(store), batch_size=10, num_workers=2, collate_fn=as_list,
                       multiprocessing_context="spawn")
    assert sum(len(b) for b in spawn) == 30


def test_store_attributes_have_no_time_or_host(tmp_path: Path) -> None:
    extract_to_store(ToyExtractor({"dim": 2}, tmp_path), toy_utterances(3), tmp_path / "a.h5", progress=False)
    attrs = FeatureStore(tmp_path / "a.h5").attrs
    assert attrs["extractor"] == "toy" and json.loads(attrs["config"]) == {"dim": 2}
    text = json.dumps(attrs, default=str)
    assert os.uname().nodename not in text and time.strftime("%Y-") not in text
