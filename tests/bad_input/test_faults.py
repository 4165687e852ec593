"""Faults through `affectflow` in a subprocess: damaged stores and checkpoints, a modality missing everywhere, the
failure listing of extraction, unwritable and full disks, and SIGINT/SIGTERM during `train`.

Each case asserts the exact one-line message, exit status 2, no traceback on stderr, and that the stage's outputs
are absent (or, where earlier outputs exist, unchanged) with no temporaries left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import CorpusInfo, Segment, Utterance, write_manifest
from pipeline.splits import load_splits
from pipeline.store import RESTORE, FeatureStore
from tests.bad_input import fault_project as fp
from tests.toy_extractor import ToyExtractor, toy_utterances

LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123456\n"
BERT = "features/tiny/bert.h5"
TOY = "import pipeline.extract as e; e.register('toy', 'tests.toy_extractor:ToyExtractor')"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fp.make_project(tmp_path_factory.mktemp("base"))


@pytest.fixture()
def project(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(base, root)
    return root


def assert_untouched(root: Path, model: str = "utt_fusion") -> None:
    assert [p for p in fp.outputs_of(model) if (root / p).exists()] == []
    assert fp.leftovers(root) == []


# --- stores -------------------------------------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _tamper_offsets(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["offsets"][3] = f["offsets"][2] - 1


def _offsets_past_features(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["offsets"][-1] = f["offsets"][-1] + 5


def _external(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        values = f["features"][:]
        del f["features"]
        values.tofile(path.with_name("elsewhere.bin"))
        f.create_dataset("features", shape=values.shape, dtype=np.float32,
                         external=[("elsewhere.bin", 0, values.nbytes)])


def _virtual(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        values = f["features"][:]
        f.create_dataset("source", data=values)
        layout = h5py.VirtualLayout(shape=values.shape, dtype=np.float32)
        layout[:] = h5py.VirtualSource(f["source"])
        del f["features"]
        f.create_virtual_dataset("features", layout)


def _drop_present(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["present"]


def _float64_features(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        values = f["features"][:]
        del f["features"]
        f.create_dataset("features", data=values.astype(np.float64))


def _rows(root: Path) -> int:
    return FeatureStore(root / BERT).offsets[-1]


STORE_CASES: dict[str, tuple[Callable[[Path], None], Callable[[Path], str]]] = {
    "truncated": (_truncate, lambda r: f"invalid feature store: it cannot be read (truncated) ({BERT}) - {RESTORE}"),
    "empty": (lambda p: p.write_bytes(b""), lambda r: f"feature store is empty (0 bytes) ({BERT}) - {RESTORE}"),
    "lfs_pointer": (lambda p: p.write_bytes(LFS),
                    lambda r: f"feature store is a Git LFS pointer, not HDF5 ({BERT}) - run `git lfs pull`, or "
                              f"{RESTORE}"),
    "overwritten": (lambda p: p.write_bytes(b"{}\n" * 50),
                    lambda r: f"feature store is not an HDF5 file (150 bytes; truncated or overwritten) ({BERT}) - "
                              f"{RESTORE}"),
    "absent": (lambda p: p.unlink(),
               lambda r: f"feature store does not exist ({BERT}) - run its extract stage (dvc repro) or fetch it "
                         "with `dvc pull`"),
    "offsets_decrease": (_tamper_offsets,
                         lambda r: f"invalid feature store: /offsets are not 0, non-decreasing and ending at the "
                                   f"{r} rows of /features ({BERT}) - {RESTORE}"),
    "offsets_past_features": (_offsets_past_features,
                              lambda r: f"invalid feature store: /offsets are not 0, non-decreasing and ending at "
                                        f"the {r} rows of /features ({BERT}) - {RESTORE}"),
    "external_storage": (_external,
                         lambda r: "invalid feature store: /features keeps its data in external files "
                                   f"('elsewhere.bin'): a store holds its own data ({BERT}) - {RESTORE}"),
    "virtual_dataset": (_virtual, lambda r: "invalid feature store: /features is a virtual dataset: a store holds "
                                            f"its own data ({BERT}) - {RESTORE}"),
    "dataset_missing": (_drop_present, lambda r: "invalid feature store: no /present dataset (truncated, or not "
                                                 f"written by affectflow) ({BERT}) - {RESTORE}"),
    "wrong_dtype": (_float64_features, lambda r: f"invalid feature store: /features is float64 of shape ({r}, 7), "
                                                 f"not float32 (T, D) ({BERT}) - {RESTORE}"),
}


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_a_damaged_store_is_one_line_naming_it(project: Path, case: str) -> None:
    damage, message = STORE_CASES[case]
    rows = _rows(project)
    damage(project / BERT)
    proc = fp.affectflow(project, "train", "utt_fusion", "tiny")
    fp.assert_error(proc, message(rows))
    assert_untouched(project)


# --- a modality missing for every training utterance ---------------------------------------------------------------

def test_a_modality_missing_everywhere_is_refused_unless_expected(project: Path) -> None:
    utts = fp.utterances()
    fp.write_store(project / "features/tiny/denseface.h5", utts, fp.DIMS["denseface"], present=False)
    n_train = len(load_splits(project / "splits/tiny.json")["protocols"]["speaker"]["folds"][0]["train"])
    proc = fp.affectflow(project, "train", "utt_fusion", "tiny")
    fp.assert_error(proc, f"the visual modality is missing for all {n_train} training utterances of tiny "
                          f"(no_face: {n_train}; see features/tiny/denseface.failures.jsonl) "
                          "(features/tiny/denseface.h5) - fix the inputs and re-run the extract stage, or set "
                          "models.utt_fusion.allow_absent_modalities: [visual] if the corpus has no visual")
    assert_untouched(project)

    params = fp.params()
    params["models"]["utt_fusion"]["allow_absent_modalities"] = ["visual"]
    fp.write_params(project, params)
    proc = fp.affectflow(project, "train", "utt_fusion", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((project / "metrics/utt_fusion/tiny.json").read_text())["model"] == "utt_fusion"


# --- checkpoints -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained") / "p"
    shutil.copytree(base, root)
    proc = fp.affectflow(root, "train", "utt_fusion", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.parametrize("case", ["truncated", "empty", "lfs_pointer"])
def test_a_damaged_checkpoint_stops_finetuning_before_training(trained: Path, tmp_path: Path, case: str) -> None:
    root = tmp_path / "p"
    shutil.copytree(trained, root)
    fold = load_splits(root / "splits/tiny.json")["protocols"]["speaker"]["folds"][0]["name"]
    path = f"checkpoints/utt_fusion/tiny/{fold}_seed0.pt"
    data = (root / path).read_bytes()
    damaged = {"truncated": data[:len(data) // 3], "empty": b"", "lfs_pointer": LFS}[case]
    (root / path).write_bytes(damaged)
    before = fp.snapshot(root, "checkpoints", "metrics", "plots")
    proc = fp.affectflow(root, "train", "mmin", "tiny")
    what = {"truncated": f"checkpoint cannot be loaded ({len(damaged)} bytes; truncated or not a torch file)",
            "empty": "checkpoint is empty (0 bytes)", "lfs_pointer": "checkpoint is a Git LFS pointer, not weights"}
    fix = ("run `git lfs pull`, or " if case == "lfs_pointer" else "") + RESTORE
    fp.assert_error(proc, f"{what[case]} ({path}) - {fix}")
    assert fp.snapshot(root, "checkpoints", "metrics", "plots") == before
    assert_untouched(root, "mmin")


def test_a_denseface_checkpoint_that_is_an_lfs_pointer_stops_extraction(project: Path) -> None:
    (project / "weights").mkdir()
    (project / "weights/ferplus.pt").write_bytes(LFS)
    params = fp.params()
    params["extractors"]["denseface"]["config"]["checkpoint"] = "weights/ferplus.pt"
    fp.write_params(project, params)
    proc = fp.affectflow(project, "extract", "tiny", "denseface")
    fp.assert_error(proc, "Denseface checkpoint is a Git LFS pointer, not weights (weights/ferplus.pt) - run "
                          f"`git lfs pull`, or {RESTORE}")


# --- extraction failures ---------------------------------------------------------------------------------------

def media_project(root: Path, n: int = 12) -> list[Utterance]:
    """Audio utterances whose files are, in turn, Git LFS pointers, absent, and zero bytes."""
    utts = [Utterance(utt_id=f"m{i:02d}", corpus="media", speaker="s", session="s", audio=Segment(f"m{i:02d}.wav"),
                      label="neu") for i in range(n)]
    write_manifest(root / "data/media/manifest.jsonl", utts, fp.CLASSES)
    CorpusInfo("media", fp.CLASSES, "demo").write(root / "data/media/corpus.json")
    (root / "raw").mkdir(exist_ok=True)
    for i, u in enumerate(utts):
        if i % 3 == 0:
            (root / "raw" / u.audio.path).write_bytes(LFS)
        elif i % 3 == 2:
            (root / "raw" / u.audio.path).write_bytes(b"")
    params = fp.params()
    params["corpora"]["media"] = {"adapter": "demo", "root": "raw"}
    fp.write_params(root, params)
    return utts


def test_extraction_names_the_first_ten_failures_and_lists_all(tmp_path: Path) -> None:
    media_project(tmp_path)
    proc = fp.affectflow(tmp_path, "extract", "media", "compare")
    first = ", ".join(f"m{i:02d} ({['lfs_pointer', 'missing_file', 'empty_file'][i % 3]})" for i in range(10))
    fp.assert_error(proc, "compare: 12 of 12 utterances failed (100.0% > max_failure_rate 5.0%; lfs_pointer: 4, "
                          f"missing_file: 4, empty_file: 4): {first} and 2 more "
                          "(features/media/compare.failures.jsonl) - fix the inputs and run again (the finished "
                          "shards in features/media/compare.h5.parts are kept), raise max_failure_rate, or list "
                          "expected reasons in expected_missing. Git LFS pointers: run `git lfs pull` in the corpus "
                          "root.")
    assert not (tmp_path / "features/media/compare.h5").exists()
    listed = fp.failures_listing(tmp_path / "features/media/compare.failures.jsonl")
    assert listed == [{"utt_id": f"m{i:02d}", "reason": ["lfs_pointer", "missing_file", "empty_file"][i % 3]}
                      for i in range(12)]
    assert fp.leftovers(tmp_path) == []


def test_failure_listing_bytes_do_not_depend_on_shards_or_workers(tmp_path: Path) -> None:
    utts = toy_utterances(30)
    cfg = {"dim": 3, "fail_ids": ["u0002", "u0011", "u0017", "u0029"]}
    for name, shard_size, workers in (("a", 4, 1), ("b", 7, 2), ("c", 256, 2)):
        extract_to_store(ToyExtractor(cfg, tmp_path), utts, tmp_path / f"{name}.h5", shard_size=shard_size,
                         max_failure_rate=0.5, progress=False,
                         executor_options={"workers": workers, "start_method": "fork"})
    listings = [(tmp_path / f"{n}.failures.jsonl").read_bytes() for n in "abc"]
    assert listings[0] == listings[1] == listings[2]
    reasons = {r["utt_id"]: r["reason"] for r in fp.failures_listing(tmp_path / "a.failures.jsonl")}
    assert {u for u, r in reasons.items() if r == "toy failure"} == set(cfg["fail_ids"])


# --- unwritable and full disks ---------------------------------------------------------------------------------

@contextlib.contextmanager
def mounted_tmpfs(path: Path, options: str) -> Iterator[None]:
    """A tmpfs at `path` (root only); skips the test where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_read_only_metrics_folder_is_found_before_training(project: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits: a read-only mount is the real thing
        reason, where = "the file system is read-only", "metrics/utt_fusion"
        guard: contextlib.AbstractContextManager = mounted_tmpfs(project / "metrics", "ro,size=64k")
    else:
        (project / "metrics").mkdir()
        (project / "metrics").chmod(0o555)
        reason, where = "permission denied", "metrics/utt_fusion"
        guard = contextlib.nullcontext()
    with guard:
        proc = fp.affectflow(project, "train", "utt_fusion", "tiny")
    fp.assert_error(proc, f"cannot write the outputs: {reason} ({where}) - make the folder writable (or free "
                          "space) and run again")
    assert "seed 0 fraction" not in proc.stderr  # no run was trained
    assert_untouched(project)


def test_full_disk_while_writing_checkpoints_is_one_line_and_leaves_nothing(project: Path) -> None:
    with mounted_tmpfs(project / "checkpoints", "size=64k"):
        proc = fp.affectflow(project, "train", "utt_fusion", "tiny")
        fp.assert_error(proc, "cannot write the outputs of train utt_fusion on tiny: the disk is full "
                              "(checkpoints/utt_fusion/tiny) - free space or make the folder writable and run "
                              "again (earlier outputs are unchanged)")
        assert_untouched(project)


def toy_project(root: Path, n: int = 200) -> None:
    utts = toy_utterances(n)
    write_manifest(root / "data/toy/manifest.jsonl", utts, fp.CLASSES)
    CorpusInfo("toy", fp.CLASSES, "demo").write(root / "data/toy/corpus.json")
    params = fp.params()
    params["corpora"]["toy"] = {"adapter": "demo", "root": "raw"}
    params["extractors"]["toy"] = {"modality": "text", "executor": "local", "workers": 1, "shard_size": 50,
                                   "max_failure_rate": 1.0, "config": {"dim": 1000}}
    fp.write_params(root, params)


MERGE_FIX = ("free space or fix the folder's permissions and run again; the finished shards in "
             "features/toy/toy.h5.parts are kept")


def test_full_disk_before_the_merge_is_found_by_its_size(tmp_path: Path) -> None:
    toy_project(tmp_path)
    with mounted_tmpfs(tmp_path / "features", "size=4m"):
        proc = fp.affectflow(tmp_path, "extract", "toy", "toy", prelude=TOY)
        line = fp.error_line(proc)
        pattern = (r".*error: the disk is full: merging the store needs about \d+\.\d MB, \d+\.\d MB are free "
                   r"\(features/toy/toy\.h5\) - free space on that disk and run again; the finished shards in "
                   r"features/toy/toy\.h5\.parts are kept")
        assert re.fullmatch(pattern, line), line
        assert not (tmp_path / "features/toy/toy.h5").exists()
        assert fp.leftovers(tmp_path) == []
        assert len(list((tmp_path / "features/toy/toy.h5.parts").glob("shard-*.h5"))) == 4


def test_full_disk_during_the_merge_is_one_line_rc2_and_no_tmp(tmp_path: Path) -> None:
    toy_project(tmp_path)
    unchecked = TOY + "\nimport pipeline.store as s; s.StoreWriter._check_free_space = lambda self, total: None"
    with mounted_tmpfs(tmp_path / "features", "size=4m"):
        proc = fp.affectflow(tmp_path, "extract", "toy", "toy", prelude=unchecked)
        fp.assert_error(proc, f"cannot write the store: the disk is full (features/toy/toy.h5) - {MERGE_FIX}")
        assert not (tmp_path / "features/toy/toy.h5").exists()
        assert fp.leftovers(tmp_path) == []


def test_a_write_that_fails_during_the_merge_without_a_mount(tmp_path: Path) -> None:
    """Where no tmpfs can be mounted, the same failing write comes from a file size limit (EFBIG instead of
    ENOSPC): each shard fits under 2 MB, the merged store does not."""
    toy_project(tmp_path)
    limit = 2_000_000
    prelude = TOY + (f"\nimport resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                     f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))")
    proc = fp.affectflow(tmp_path, "extract", "toy", "toy", prelude=prelude)
    fp.assert_error(proc, f"cannot write the store: File too large (features/toy/toy.h5) - {MERGE_FIX}")
    assert not (tmp_path / "features/toy/toy.h5").exists()
    assert fp.leftovers(tmp_path) == []
    assert all(p.stat().st_size < limit for p in (tmp_path / "features/toy/toy.h5.parts").glob("shard-*.h5"))


def test_read_only_features_folder_fails_before_extracting(tmp_path: Path) -> None:
    toy_project(tmp_path)
    with mounted_tmpfs(tmp_path / "features", "ro,size=64k"):
        proc = fp.affectflow(tmp_path, "extract", "toy", "toy", prelude=TOY)
    fp.assert_error(proc, "cannot write the store's shards: the folder is not writable (features/toy/toy.h5.parts) - "
                          "free space or fix the folder's permissions and run again")
    assert "shards written" not in proc.stderr


def test_full_disk_while_writing_shards_is_one_line(tmp_path: Path) -> None:
    toy_project(tmp_path)
    with mounted_tmpfs(tmp_path / "features", "size=256k"):
        proc = fp.affectflow(tmp_path, "extract", "toy", "toy", prelude=TOY)
        line = fp.error_line(proc)
        assert re.fullmatch(r".*error: cannot write shard \d+: the disk is full \(features/toy/toy\.h5\.parts\) - free "
                            r"space or fix the folder's permissions and run again; the finished shards are kept",
                            line), line
        assert not (tmp_path / "features/toy/toy.h5").exists()
        assert fp.leftovers(tmp_path) == []


# --- signals -----------------------------------------------------------------------------------------------------

def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an exited child that the container's init has not reaped yet)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _interrupt_midway(root: Path, signum: int, workers: int, group: bool,
                      before: dict[str, bytes] | None = None) -> None:
    """Stop `train` once a run has finished; `group` sends the signal to the whole process group, as Ctrl-C in a
    terminal does (the workers get it too), otherwise to the stage process alone (as `kill` or DVC do). `before`:
    the outputs of an earlier run, which must come through unchanged (otherwise there must be none)."""
    params = fp.params(workers=workers, seeds=[0, 1, 2, 3], folds=[0, 1, 2, 3])
    params["models"]["utt_fusion"].update(epochs_constant=15, epochs_decay=15)
    fp.write_params(root, params)
    proc = subprocess.Popen(fp.command("train", "utt_fusion", "tiny"), cwd=root, env=fp.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group)
    staging = root / "checkpoints/utt_fusion/.tiny.partial"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not list(staging.glob("*.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert list(staging.glob("*.pt")), "no run finished in time"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= (workers if workers > 1 else 0)
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    try:
        _, stderr = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"train still running 5 s after {signal.Signals(signum).name}") from None
    assert time.monotonic() - sent < 5
    _, alive = psutil.wait_procs(children, timeout=1)
    assert [p for p in alive if _running(p)] == []
    name = signal.Signals(signum).name
    fp.assert_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr),
                    f"train utt_fusion on tiny stopped by {name}; nothing was written (checkpoints/utt_fusion/tiny) "
                    "- run it again (earlier outputs are unchanged)")
    if before is None:
        assert_untouched(root)
    else:
        assert fp.snapshot(root, "checkpoints", "metrics", "plots") == before
        assert fp.leftovers(root) == []


def test_ctrl_c_with_two_workers_stops_within_5s_and_leaves_nothing(project: Path) -> None:
    _interrupt_midway(project, signal.SIGINT, workers=2, group=True)


def test_sigint_to_the_stage_alone_with_two_workers_stops_within_5s(project: Path) -> None:
    _interrupt_midway(project, signal.SIGINT, workers=2, group=False)


def test_sigterm_with_one_worker_stops_within_5s_and_keeps_earlier_outputs(trained: Path, tmp_path: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(trained, root)
    before = fp.snapshot(root, "checkpoints", "metrics", "plots")
    assert "metrics/utt_fusion/tiny.json" in before
    _interrupt_midway(root, signal.SIGTERM, workers=1, group=False, before=before)
