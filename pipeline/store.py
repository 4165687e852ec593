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

import errno
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.errors import AffectflowError
from pipeline.missing import NON_FINITE, is_lfs_pointer

FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20
_STR = h5py.string_dtype(encoding="utf-8")
REQUIRED = ("utt_ids", "offsets", "features", "present", "failure")
RESTORE = "re-run the stage that writes it (dvc repro) or restore it with `dvc checkout`"


class StoreError(AffectflowError, RuntimeError):
    """A store that cannot be written or read as it is; the message names the file."""


def _disk_message(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is not writable"
    return err.strerror or str(err)


@dataclass
class UtteranceFeatures:
    """What an extractor returns for one utterance."""

    features: np.ndarray | None
    present: bool
    frame_valid: np.ndarray | None = None
    failure: str = ""
    columns: dict[str, np.ndarray] | None = None  # per-frame columns of a store that declares them (the face track)

    @classmethod
    def missing(cls, reason: str, dim: int) -> UtteranceFeatures:
        return cls(np.zeros((0, dim), np.float32), False, None, reason)


@dataclass(frozen=True)
class Shard:
    index: int
    utt_ids: tuple[str, ...]


def _attribute_value(value: Any) -> Any:
    """An HDF5 attribute value: a scalar as it is, anything else as sorted-key JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _write_attrs(obj: h5py.HDFObject, attrs: dict[str, Any]) -> None:
    for key in sorted(attrs):
        obj.attrs[key] = _attribute_value(attrs[key])


def _dataset(group: h5py.Group, name: str, data: np.ndarray | None = None, *, shape: tuple[int, ...] | None = None,
             dtype: Any = None, chunk_rows: int | None = None) -> h5py.Dataset:
    shape = tuple(data.shape) if data is not None else shape
    chunks = None
    if chunk_rows is not None and shape[0] > 0:
        chunks = (min(chunk_rows, shape[0]), *shape[1:])
    return group.create_dataset(name, shape=shape, dtype=dtype if dtype is not None else data.dtype, data=data,
                                chunks=chunks, track_times=False)


def chunk_rows_for(dim: int, itemsize: int = 4) -> int:
    return max(1, CHUNK_BYTES // (itemsize * max(dim, 1)))


def _column_bytes(columns: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    return sum(np.dtype(dt).itemsize * int(np.prod(shape, dtype=np.int64)) for dt, shape in columns.values())


class StoreWriter:
    """Writes a store from shards of consecutive sorted ids; reuses the shards of an interrupted run.

    `dtype` is /features' type (float32 for every feature store; uint8 for the face track's crops) and `columns`
    names extra per-frame datasets (`name -> (dtype, trailing shape)`, e.g. the face track's `box`); with the
    defaults the store's bytes are those of a store written before either existed.
    """

    def __init__(self, path: str | Path, utt_ids: Sequence[str], dim: int, attrs: dict[str, Any], *,
                 shard_size: int = 256, frame_valid: bool = False,
                 signatures: Sequence[str] | None = None, dtype: str = "float32",
                 columns: dict[str, tuple[str, tuple[int, ...]]] | None = None) -> None:
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
        self.dtype = np.dtype(dtype)
        self.columns = {name: (str(np.dtype(dt)), tuple(int(n) for n in shape))
                        for name, (dt, shape) in sorted((columns or {}).items())}
        clash = sorted(set(self.columns) & {*REQUIRED, "frame_valid", "lengths"})
        if clash:
            raise StoreError(f"per-frame columns {clash} would replace the store's own datasets")
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.shards = [Shard(i // shard_size, tuple(ids[i:i + shard_size])) for i in range(0, len(ids), shard_size)]
        layout: dict[str, Any] = {"format": FORMAT_VERSION, "ids": ids, "dim": self.dim, "shard_size": shard_size,
                                  "frame_valid": frame_valid,
                                  "attrs": {k: _attribute_value(v) for k, v in self.attrs.items()}}
        if self.dtype != np.float32 or self.columns:
            layout.update(dtype=str(self.dtype), columns=self.columns)
        blob = json.dumps(layout, sort_keys=True, default=str)
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
        try:
            if self.parts_dir.exists():
                if stamp.exists() and stamp.read_text().strip() == self.fingerprint:
                    return
                shutil.rmtree(self.parts_dir)
            self.parts_dir.mkdir(parents=True)
            stamp.write_text(self.fingerprint + "\n")
        except OSError as err:  # before any work: an unwritable or full features/ folder
            raise StoreError(f"cannot write the store's shards: {_disk_message(err)}", str(self.parts_dir),
                             "free space or fix the folder's permissions and run again") from None

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
        columns: dict[str, list[np.ndarray]] = {name: [] for name in self.columns}
        for utt_id, res in zip(shard.utt_ids, results, strict=True):
            arr = res.features if res.features is not None else np.zeros((0, self.dim), self.dtype)
            arr = self._typed(utt_id, arr)
            if arr.ndim != 2 or arr.shape[1] != self.dim:
                raise StoreError(f"{utt_id}: features of shape {arr.shape}, expected (T, {self.dim})")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():  # never a store holding NaN or inf
                res = UtteranceFeatures.missing(NON_FINITE, self.dim)
                arr = res.features.astype(self.dtype)
            for name, (dt, shape) in self.columns.items():
                given = (res.columns or {}).get(name)
                col = np.zeros((len(arr), *shape), dt) if given is None else np.asarray(given, dt)
                if col.shape != (len(arr), *shape):
                    raise StoreError(f"{utt_id}: column {name} of shape {col.shape}, expected {(len(arr), *shape)}")
                columns[name].append(col)
            if self.has_frame_valid:
                fv = np.ones(len(arr), bool) if res.frame_valid is None else np.asarray(res.frame_valid, bool)
                if fv.shape != (len(arr),):
                    raise StoreError(f"{utt_id}: frame_valid of shape {fv.shape}, expected ({len(arr)},)")
                valid.append(fv)
            feats.append(arr)
            lengths.append(len(arr))
            present.append(bool(res.present))
            failures.append(res.failure or "")
        image = io.BytesIO()  # built in memory, written with plain file I/O: a full disk is an OSError, not a crash
        with h5py.File(image, "w", libver=("earliest", "v110"), track_order=False) as f:
            f.create_dataset("lengths", data=np.asarray(lengths, np.int64), track_times=False)
            f.create_dataset("features", data=np.concatenate(feats) if feats else np.zeros((0, self.dim), self.dtype),
                             track_times=False)
            f.create_dataset("present", data=np.asarray(present, bool), track_times=False)
            f.create_dataset("failure", data=np.asarray(failures, dtype=object), dtype=_STR, track_times=False)
            if self.has_frame_valid:
                f.create_dataset("frame_valid", data=np.concatenate(valid) if valid else np.zeros(0, bool),
                                 track_times=False)
            for name, (dt, shape) in self.columns.items():
                f.create_dataset(name, data=np.concatenate(columns[name]) if columns[name] else
                                 np.zeros((0, *shape), dt), track_times=False)
        tmp = self.shard_path(shard).with_suffix(".tmp")
        try:
            tmp.write_bytes(image.getvalue())
            os.replace(tmp, self.shard_path(shard))
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write shard {shard.index}: {_disk_message(err)}", str(self.parts_dir),
                             "free space or fix the folder's permissions and run again; the finished shards are "
                             "kept") from None

    def _typed(self, utt_id: str, arr: Any) -> np.ndarray:
        """Features in the store's type: float32 stores take any numbers, others exactly their type."""
        arr = np.asarray(arr)
        if self.dtype == np.float32 or arr.dtype == self.dtype or arr.size == 0:
            return arr.astype(self.dtype, copy=False)
        raise StoreError(f"{utt_id}: features of type {arr.dtype} for a store of {self.dtype}")

    def missing_utterances(self) -> list[tuple[str, str]]:
        """(utt_id, reason) of every utterance marked missing in a finished shard (reused ones included), in id
        order: the same list whatever the shard size or the number of workers."""
        out: list[tuple[str, str]] = []
        for shard in self.shards:
            if self.is_done(shard):
                with h5py.File(self.shard_path(shard), "r") as f:
                    for utt_id, present, reason in zip(shard.utt_ids, f["present"][:], f["failure"][:], strict=True):
                        if not present:
                            out.append((utt_id, reason.decode() if isinstance(reason, bytes) else reason))
        return out

    def failures(self) -> Counter:
        """Why utterances are missing, over every finished shard (reused ones included)."""
        return Counter(reason for _, reason in self.missing_utterances())

    def _check_free_space(self, total: int) -> None:
        """Refuse to merge when the store cannot fit on its disk (measured before writing a byte)."""
        rows = total * (self.dtype.itemsize * self.dim + (1 if self.has_frame_valid else 0)
                        + _column_bytes(self.columns))
        needed = rows + 64 * len(self.utt_ids) + (1 << 20)  # ids, offsets, present, failure, HDF5 metadata
        free = shutil.disk_usage(self.path.parent).free
        if needed > free:
            raise StoreError(f"the disk is full: merging the store needs about {needed / 1e6:.1f} MB, "
                             f"{free / 1e6:.1f} MB are free", str(self.path),
                             f"free space on that disk and run again; the finished shards in {self.parts_dir} "
                             "are kept")

    def finalize(self) -> Path:
        """Merge the shards into the store (temporary file, then rename) and remove the parts."""
        missing = self.pending()
        if missing:
            raise StoreError(f"{len(missing)} shards not written yet (first: {missing[0].index})")
        lengths, failures = [], []
        for shard in self.shards:
            with h5py.File(self.shard_path(shard), "r") as f:
                lengths.append(f["lengths"][:])
                failures.extend(f["failure"][:])
        lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(self.utt_ids) + 1, np.int64)
        np.cumsum(lengths_all, out=offsets[1:])
        total = int(offsets[-1])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_free_space(total)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            failure = self._merge_isolated(tmp, offsets, total)
            if failure is None:
                os.replace(tmp, self.path)
        except OSError as err:
            failure = _disk_message(err)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if failure is not None:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write the store: {failure}", str(self.path),
                             f"free space or fix the folder's permissions and run again; the finished shards in "
                             f"{self.parts_dir} are kept")
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.path

    def _merge_isolated(self, tmp: Path, offsets: np.ndarray, total: int) -> str | None:
        """Merge in a forked child and return why it failed, or None. After a failed write (a full disk) HDF5
        cannot close the file and the process crashes at exit (a segmentation fault, measured), so the writing
        process is one that can be abandoned; without fork (not on Linux or macOS) the merge runs here."""
        if "fork" not in mp.get_all_start_methods():
            try:
                self._merge(tmp, offsets, total)
            except (OSError, RuntimeError) as err:
                return _h5_message(err)
            return None
        context = mp.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_merge_child, args=(self, tmp, offsets, total, send), daemon=True)
        child.start()
        send.close()
        try:
            message = receive.recv() if receive.poll(None) else None
        except EOFError:
            message = None
        finally:
            child.join(timeout=None if message is not None else 60)
            if child.is_alive():
                child.kill()
                child.join()
            receive.close()
        if message == "" and child.exitcode == 0:
            return None
        return message or f"the merging process ended with status {child.exitcode}"

    def _merge(self, tmp: Path, offsets: np.ndarray, total: int) -> None:
        """Stream the shards into `tmp`. HDF5 cannot be trusted to close a file after a failed write (a full disk
        ended in a segmentation fault), so the data goes through buffered OS writes that fail cleanly."""
        rows = chunk_rows_for(self.dim, self.dtype.itemsize)
        failures: list[str] = []
        for shard in self.shards:
            with h5py.File(self.shard_path(shard), "r") as f:
                failures.extend(f["failure"][:])
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as out:
            _dataset(out, "utt_ids", np.asarray(self.utt_ids, dtype=object), dtype=_STR)
            _dataset(out, "offsets", offsets)
            features = _dataset(out, "features", shape=(total, self.dim), dtype=self.dtype, chunk_rows=rows)
            present = _dataset(out, "present", shape=(len(self.utt_ids),), dtype=bool)
            # variable-length strings written in one call: written per shard, their heap layout (and so the
            # file's bytes) would depend on shard_size
            _dataset(out, "failure", np.asarray(failures, dtype=object), dtype=_STR)
            frame_valid = (_dataset(out, "frame_valid", shape=(total,), dtype=bool, chunk_rows=rows * 16)
                           if self.has_frame_valid else None)
            columns = {name: _dataset(out, name, shape=(total, *shape), dtype=dt,
                                      chunk_rows=chunk_rows_for(int(np.prod(shape, dtype=np.int64)),
                                                                np.dtype(dt).itemsize))
                       for name, (dt, shape) in self.columns.items()}
            row = first = 0
            for shard in self.shards:
                with h5py.File(self.shard_path(shard), "r") as f:
                    block = f["features"][:]
                    n = len(shard.utt_ids)
                    if len(block):
                        features[row:row + len(block)] = block
                        if frame_valid is not None:
                            frame_valid[row:row + len(block)] = f["frame_valid"][:]
                        for name, column in columns.items():
                            column[row:row + len(block)] = f[name][:]
                    present[first:first + n] = f["present"][:]
                    row += len(block)
                    first += n
            _write_attrs(out, {**self.attrs, "dim": self.dim, "store_format": FORMAT_VERSION,
                               "n_utterances": len(self.utt_ids)})


def _h5_message(err: BaseException) -> str:
    """What an h5py write error means, from the errno HDF5 puts in its text."""
    text = str(err)
    if isinstance(err, OSError) and err.errno is not None:
        return _disk_message(err)
    match = re.search(r"errno = (\d+)", text)
    if match:
        code = int(match.group(1))
        return _disk_message(OSError(code, os.strerror(code)))
    return text.splitlines()[0] if text else type(err).__name__


def check_store_file(path: Path) -> None:
    """Fail in one line, naming the file, when it is absent, empty, a Git LFS pointer or not HDF5 at all."""
    if not path.exists():
        raise StoreError("feature store does not exist", str(path), "run its extract stage (dvc repro) or fetch it "
                                                                     "with `dvc pull`")
    if not path.is_file():
        raise StoreError("feature store is not a file", str(path), RESTORE)
    size = path.stat().st_size
    if size == 0:
        raise StoreError("feature store is empty (0 bytes)", str(path), RESTORE)
    if is_lfs_pointer(path):
        raise StoreError("feature store is a Git LFS pointer, not HDF5", str(path),
                         "run `git lfs pull`, or " + RESTORE)
    if not h5py.is_hdf5(str(path)):
        raise StoreError(f"feature store is not an HDF5 file ({size} bytes; truncated or overwritten)", str(path),
                         RESTORE)


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return found


def _merge_child(writer: StoreWriter, tmp: Path, offsets: np.ndarray, total: int, send: Any) -> None:
    """Body of the forked merge: report "" or the failure, then leave without HDF5's teardown."""
    code = 0
    try:
        writer._merge(tmp, offsets, total)
        send.send("")
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent as text
        code = 1
        try:
            send.send(_h5_message(err))
        except BaseException:  # noqa: BLE001 - the parent sees the exit status instead
            pass
    finally:
        os._exit(code)


class FeatureStore:
    """Read-only, lazily opened view of a store; safe to pickle into DataLoader workers.

    The HDF5 handle is opened on first use in the process that uses it and is never pickled, so each worker
    opens its own. Ids, offsets and the present mask are small and read once.
    """

    features_dtype: Any = np.float32  # the face track's reader (pipeline/extract/face_track.py) takes uint8

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        check_store_file(self.path)
        try:
            with h5py.File(self.path, "r") as f:
                self._read_index(f)
        except StoreError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            reason = "truncated" if "truncated" in str(err) else _h5_message(err)
            raise self._invalid(f"it cannot be read ({reason})") from None
        self.index = {u: i for i, u in enumerate(self.utt_ids)}

    def _invalid(self, what: str) -> StoreError:
        return StoreError(f"invalid feature store: {what}", str(self.path), RESTORE)

    def _read_index(self, f: h5py.File) -> None:
        """Read ids, offsets, present and failure, checking the layout before anything trusts it."""
        for name in REQUIRED:
            link = f.get(name, getlink=True)
            if link is None:
                raise self._invalid(f"no /{name} dataset (truncated, or not written by affectflow)")
            if not isinstance(link, h5py.HardLink):
                raise self._invalid(f"/{name} is a {type(link).__name__}, not a dataset of this file")
        for name, obj in _datasets(f):
            if obj.external:
                raise self._invalid(f"/{name} keeps its data in external files ({obj.external[0][0]!r}): a store "
                                    "holds its own data")
            if obj.is_virtual:
                raise self._invalid(f"/{name} is a virtual dataset: a store holds its own data")
        features = f["features"]
        if features.ndim != 2 or features.dtype != self.features_dtype:
            raise self._invalid(f"/features is {features.dtype} of shape {features.shape}, not "
                                f"{np.dtype(self.features_dtype)} (T, D)")
        offsets_ds = f["offsets"]
        if offsets_ds.ndim != 1 or offsets_ds.dtype.kind not in "iu":
            raise self._invalid(f"/offsets is {offsets_ds.dtype} of shape {offsets_ds.shape}, not int64 (N+1,)")
        ids_ds = f["utt_ids"]
        if ids_ds.ndim != 1 or h5py.check_string_dtype(ids_ds.dtype) is None:
            raise self._invalid(f"/utt_ids is {ids_ds.dtype} of shape {ids_ds.shape}, not strings (N,)")
        self.utt_ids = [s.decode() if isinstance(s, bytes) else s for s in ids_ds[:]]
        n = len(self.utt_ids)
        self.offsets = offsets_ds[:].astype(np.int64)
        total = int(features.shape[0])
        if len(self.offsets) != n + 1:
            raise self._invalid(f"/offsets has {len(self.offsets)} entries for {n} utterances (expected {n + 1})")
        if (self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any() or self.offsets[-1] != total):
            raise self._invalid(f"/offsets are not 0, non-decreasing and ending at the {total} rows of /features")
        if self.utt_ids != sorted(set(self.utt_ids)):
            raise self._invalid("/utt_ids are not sorted and unique")
        present = f["present"]
        if present.shape != (n,) or present.dtype != np.bool_:
            raise self._invalid(f"/present is {present.dtype} of shape {present.shape}, not bool ({n},)")
        self.present = present[:].astype(bool)
        failure = f["failure"]
        if failure.shape != (n,) or h5py.check_string_dtype(failure.dtype) is None:
            raise self._invalid(f"/failure is {failure.dtype} of shape {failure.shape}, not strings ({n},)")
        self.failure = [s.decode() if isinstance(s, bytes) else s for s in failure[:]]
        self.has_frame_valid = "frame_valid" in f
        if self.has_frame_valid:
            valid = f["frame_valid"]
            if valid.shape != (total,) or valid.dtype != np.bool_:
                raise self._invalid(f"/frame_valid is {valid.dtype} of shape {valid.shape}, not bool ({total},)")
        self.dim = int(features.shape[1])
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}

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
        arr = self._handle()["features"][lo:hi] if hi > lo else np.zeros((0, self.dim), self.features_dtype)
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
