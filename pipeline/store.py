"""The HDF5 feature store: one file per corpus and extractor (DESIGN.md, "Feature store").

Layout: `/utt_ids` [N] sorted, `/offsets` [N+1] int64, `/features` [sum T, D] float32 chunked along time,
`/present` [N] bool, `/failure` [N] str (why a modality is missing, "" when present), optional `/frame_valid`
[sum T] bool. Root attributes carry the provenance, never a timestamp or a host name.

The writer works in shards of consecutive ids. Each finished shard is a small HDF5 file renamed into place in
`<store>.parts/`, so a run that is killed loses at most the shards in flight; a re-run with the same fingerprint
(ids, config, dim) reuses every finished shard whose inputs (the per-utterance signatures: manifest record and
media size/mtime) are unchanged. `finalize` streams the shards into a temporary file and renames
it onto the store, so the store either exists whole or not at all, and two runs with the same inputs write the
same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.errors import AffectflowError

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20
_STR = h5py.string_dtype(encoding="utf-8")


class StoreError(AffectflowError, RuntimeError):
    pass


@dataclass
class UtteranceFeatures:
    """What an extractor returns for one utterance."""

    features: np.ndarray | None
    present: bool
    frame_valid: np.ndarray | None = None
    failure: str = ""

    @classmethod
    def missing(cls, reason: str, dim: int) -> UtteranceFeatures:
        return cls(np.zeros((0, dim), np.float32), False, None, reason)


@dataclass(frozen=True)
class Shard:
    index: int
    utt_ids: tuple[str, ...]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _write_attrs(obj: h5py.HDFObject, attrs: dict[str, Any]) -> None:
    for key in sorted(attrs):
        obj.attrs[key] = _jsonable(attrs[key])


def _dataset(group: h5py.Group, name: str, data: np.ndarray | None = None, *, shape: tuple[int, ...] | None = None,
             dtype: Any = None, chunk_rows: int | None = None) -> h5py.Dataset:
    shape = tuple(data.shape) if data is not None else shape
    chunks = None
    if chunk_rows is not None and shape[0] > 0:
        chunks = (min(chunk_rows, shape[0]), *shape[1:])
    return group.create_dataset(name, shape=shape, dtype=dtype if dtype is not None else data.dtype, data=data,
                                chunks=chunks, track_times=False)


def chunk_rows_for(dim: int) -> int:
    return max(1, CHUNK_BYTES // (4 * max(dim, 1)))


class StoreWriter:
    """Writes a store from shards of consecutive sorted ids; reuses the shards of an interrupted run."""

    def __init__(self, path: str | Path, utt_ids: Sequence[str], dim: int, attrs: dict[str, Any], *,
                 shard_size: int = 256, frame_valid: bool = False,
                 signatures: Sequence[str] | None = None) -> None:
        ids = list(utt_ids)
        if ids != sorted(ids):
            raise StoreError("utt_ids must be sorted")
        if len(set(ids)) != len(ids):
            raise StoreError("utt_ids must be unique")
        if shard_size < 1:
            raise StoreError(f"shard_size must be >= 1, got {shard_size}")
        self.path = Path(path)
        self.utt_ids = ids
        self.dim = int(dim)
        self.attrs = dict(attrs)
        self.has_frame_valid = frame_valid
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.shards = [Shard(i // shard_size, tuple(ids[i:i + shard_size])) for i in range(0, len(ids), shard_size)]
        blob = json.dumps({"format": FORMAT_VERSION, "ids": ids, "dim": self.dim, "shard_size": shard_size,
                           "frame_valid": frame_valid, "attrs": {k: _jsonable(v) for k, v in self.attrs.items()}},
                          sort_keys=True, default=str)
        self.fingerprint = hashlib.sha256(blob.encode()).hexdigest()
        if signatures is not None and len(signatures) != len(ids):
            raise StoreError(f"{len(signatures)} signatures for {len(ids)} utterances")
        self._keys = {}
        for shard in self.shards:
            digest = hashlib.sha256(self.fingerprint.encode())
            if signatures is not None:
                start = shard.index * shard_size
                for sig in signatures[start:start + len(shard.utt_ids)]:
                    digest.update(b"\0" + sig.encode())
            self._keys[shard.index] = digest.hexdigest()[:16]
        self._prepare_parts_dir()

    def _prepare_parts_dir(self) -> None:
        stamp = self.parts_dir / "fingerprint"
        if self.parts_dir.exists():
            if stamp.exists() and stamp.read_text().strip() == self.fingerprint:
                return
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True)
        stamp.write_text(self.fingerprint + "\n")

    def shard_path(self, shard: Shard | int) -> Path:
        index = shard.index if isinstance(shard, Shard) else shard
        return self.parts_dir / f"shard-{index:06d}-{self._keys[index]}.h5"

    def is_done(self, shard: Shard) -> bool:
        return self.shard_path(shard).exists()

    def pending(self) -> list[Shard]:
        return [s for s in self.shards if not self.is_done(s)]

    def write_shard(self, shard: Shard, results: Sequence[UtteranceFeatures]) -> None:
        if len(results) != len(shard.utt_ids):
            raise StoreError(f"shard {shard.index}: {len(results)} results for {len(shard.utt_ids)} utterances")
        feats, present, valid, failures, lengths = [], [], [], [], []
        for utt_id, res in zip(shard.utt_ids, results, strict=True):
            arr = res.features if res.features is not None else np.zeros((0, self.dim), np.float32)
            arr = np.asarray(arr, dtype=np.float32)
            if arr.ndim != 2 or arr.shape[1] != self.dim:
                raise StoreError(f"{utt_id}: features of shape {arr.shape}, expected (T, {self.dim})")
            if not np.isfinite(arr).all():
                raise StoreError(f"{utt_id}: features contain NaN or inf")
            if self.has_frame_valid:
                fv = np.ones(len(arr), bool) if res.frame_valid is None else np.asarray(res.frame_valid, bool)
                if fv.shape != (len(arr),):
                    raise StoreError(f"{utt_id}: frame_valid of shape {fv.shape}, expected ({len(arr)},)")
                valid.append(fv)
            feats.append(arr)
            lengths.append(len(arr))
            present.append(bool(res.present))
            failures.append(res.failure or "")
        tmp = self.shard_path(shard).with_suffix(".tmp")
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as f:
            f.create_dataset("lengths", data=np.asarray(lengths, np.int64), track_times=False)
            f.create_dataset("features", data=np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32),
                             track_times=False)
            f.create_dataset("present", data=np.asarray(present, bool), track_times=False)
            f.create_dataset("failure", data=np.asarray(failures, dtype=object), dtype=_STR, track_times=False)
            if self.has_frame_valid:
                f.create_dataset("frame_valid", data=np.concatenate(valid) if valid else np.zeros(0, bool),
                                 track_times=False)
        os.replace(tmp, self.shard_path(shard))

    def failures(self) -> Counter:
        """Why utterances are missing, over every finished shard (reused ones included)."""
        counts: Counter = Counter()
        for shard in self.shards:
            if self.is_done(shard):
                with h5py.File(self.shard_path(shard), "r") as f:
                    for present, reason in zip(f["present"][:], f["failure"][:], strict=True):
                        if not present:
                            counts[reason.decode() if isinstance(reason, bytes) else reason] += 1
        return counts

    def finalize(self) -> Path:
        """Merge the shards into the store (temporary file, then rename) and remove the parts."""
        missing = self.pending()
        if missing:
            raise StoreError(f"{len(missing)} shards not written yet (first: {missing[0].index})")
        lengths = []
        for shard in self.shards:
            with h5py.File(self.shard_path(shard), "r") as f:
                lengths.append(f["lengths"][:])
        lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(self.utt_ids) + 1, np.int64)
        np.cumsum(lengths_all, out=offsets[1:])
        total = int(offsets[-1])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        rows = chunk_rows_for(self.dim)
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as out:
            _dataset(out, "utt_ids", np.asarray(self.utt_ids, dtype=object), dtype=_STR)
            _dataset(out, "offsets", offsets)
            features = _dataset(out, "features", shape=(total, self.dim), dtype=np.float32, chunk_rows=rows)
            present = _dataset(out, "present", shape=(len(self.utt_ids),), dtype=bool)
            failure = _dataset(out, "failure", shape=(len(self.utt_ids),), dtype=_STR)
            frame_valid = (_dataset(out, "frame_valid", shape=(total,), dtype=bool, chunk_rows=rows * 16)
                           if self.has_frame_valid else None)
            row = first = 0
            for shard in self.shards:
                with h5py.File(self.shard_path(shard), "r") as f:
                    block = f["features"][:]
                    n = len(shard.utt_ids)
                    if len(block):
                        features[row:row + len(block)] = block
                        if frame_valid is not None:
                            frame_valid[row:row + len(block)] = f["frame_valid"][:]
                    present[first:first + n] = f["present"][:]
                    failure[first:first + n] = f["failure"][:]
                    row += len(block)
                    first += n
            _write_attrs(out, {**self.attrs, "dim": self.dim, "store_format": FORMAT_VERSION,
                               "n_utterances": len(self.utt_ids)})
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.path


class FeatureStore:
    """Read-only, lazily opened view of a store; safe to pickle into DataLoader workers.

    The HDF5 handle is opened on first use in the process that uses it and is never pickled, so each worker
    opens its own. Ids, offsets and the present mask are small and read once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"feature store {self.path} does not exist")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        with h5py.File(self.path, "r") as f:
            self.utt_ids: list[str] = [s.decode() if isinstance(s, bytes) else s for s in f["utt_ids"][:]]
            self.offsets: np.ndarray = f["offsets"][:]
            self.present: np.ndarray = f["present"][:].astype(bool)
            self.failure: list[str] = [s.decode() if isinstance(s, bytes) else s for s in f["failure"][:]]
            self.dim = int(f["features"].shape[1])
            self.has_frame_valid = "frame_valid" in f
            self.attrs: dict[str, Any] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.index = {u: i for i, u in enumerate(self.utt_ids)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self.index

    def _span(self, utt_id: str) -> tuple[int, int]:
        try:
            i = self.index[utt_id]
        except KeyError:
            raise KeyError(f"{utt_id!r} is not in the store {self.path}") from None
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return self.get(utt_id)

    def get(self, utt_id: str, valid_only: bool = False) -> np.ndarray:
        """The (T, D) float32 array of one utterance; with valid_only, only the frames marked valid."""
        lo, hi = self._span(utt_id)
        arr = self._handle()["features"][lo:hi] if hi > lo else np.zeros((0, self.dim), np.float32)
        if valid_only and self.has_frame_valid and hi > lo:
            arr = arr[self._handle()["frame_valid"][lo:hi]]
        return arr

    def frame_valid(self, utt_id: str) -> np.ndarray:
        lo, hi = self._span(utt_id)
        if not self.has_frame_valid:
            return np.ones(hi - lo, bool)
        return self._handle()["frame_valid"][lo:hi] if hi > lo else np.zeros(0, bool)

    def is_present(self, utt_id: str) -> bool:
        return bool(self.present[self.index[utt_id]])

    def length(self, utt_id: str) -> int:
        lo, hi = self._span(utt_id)
        return hi - lo

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for utt_id in self.utt_ids:
            yield utt_id, self.get(utt_id)

    def attr_json(self, key: str) -> Any:
        """An attribute that was stored as JSON (config, feature_names, library_versions, ...)."""
        value = self.attrs[key]
        return json.loads(value) if isinstance(value, str) else value

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
