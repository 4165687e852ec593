"""A tiny generated project for the fault tests: manifest, corpus.json, split file, three stores and params.yaml
in a temporary folder, and `affectflow` run on it in a subprocess."""

from __future__ import annotations

import atexit
import copy
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.manifest import CorpusInfo, Segment, Utterance, write_manifest
from pipeline.splits import build_splits, write_splits
from pipeline.store import StoreWriter, UtteranceFeatures
from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["ang", "hap", "neu", "sad"]
DIMS = {"compare": 6, "denseface": 5, "bert": 7}
FAST = {"epochs_constant": 1, "epochs_decay": 1, "batch_size": 16, "frames": {"audio": 6, "visual": 6, "text": 6}}


def utterances() -> list[Utterance]:
    """2 sessions x 2 speakers, 4 dialogues of 10 turns."""
    utts = []
    for s in range(2):
        for d in range(2):
            for t in range(10):
                k = len(utts)
                label = None if k % 9 == 0 else CLASSES[k % 4]
                utts.append(Utterance(utt_id=f"s{s}d{d}_{t:02d}", corpus="tiny", speaker=f"s{s}{'FM'[t % 2]}",
                                      session=f"s{s}", dialogue_id=f"s{s}d{d}", turn=t, text="x", label=label,
                                      audio=Segment(f"audio/s{s}d{d}_{t:02d}.wav")))
    return utts


def write_store(path: Path, utts: list[Utterance], dim: int, present: bool = True) -> None:
    rng = np.random.default_rng(dim)
    writer = StoreWriter(path, [u.utt_id for u in utts], dim, {"extractor": path.stem})
    results = []
    for u in utts:
        if not present:
            results.append(UtteranceFeatures.missing("no_face", dim))
            continue
        centre = np.zeros(dim, np.float32)
        centre[CLASSES.index(u.label or "neu") % dim] = 2.0
        results.append(UtteranceFeatures(centre + rng.normal(0, 1, (int(rng.integers(2, 8)), dim)).astype(np.float32),
                                         True))
    for shard in writer.pending():
        writer.write_shard(shard, results[:len(shard.utt_ids)])
    writer.finalize()


def params(workers: int = 1, seeds: list[int] | None = None, folds: list[int] | None = None) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"].update(seeds=seeds or [0], folds=folds or [0], threads=1, workers=workers, device="cpu")
    for cfg in data["models"].values():
        if cfg["family"] in ("utt_fusion", "mmin"):
            cfg.update(copy.deepcopy(FAST))
            if cfg["family"] == "mmin":
                cfg["init"] = "pytorch"
    data["corpora"] = {"tiny": {"adapter": "demo", "root": "raw",
                                "splits": {"speaker": {"protocol": "speaker_folds", "val": "partner"},
                                           "dialogue": {"protocol": "session_folds", "val": 0.5}}}}
    data["report"]["corpora"] = ["tiny"]
    without_cross_corpus(data)
    return data


def make_project(root: Path, **params_args: Any) -> Path:
    utts = utterances()
    write_manifest(root / "data/tiny/manifest.jsonl", utts, CLASSES)
    CorpusInfo("tiny", CLASSES, "demo").write(root / "data/tiny/corpus.json")
    (root / "raw/audio").mkdir(parents=True)
    for name, dim in DIMS.items():
        write_store(root / f"features/tiny/{name}.h5", utts, dim)
    protocols = params(**params_args)["corpora"]["tiny"]["splits"]
    write_splits(root / "splits/tiny.json", build_splits("tiny", utts, CLASSES, protocols, [1.0], 0))
    write_params(root, params(**params_args))
    return root


def write_params(root: Path, data: dict[str, Any]) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def command(*args: str, prelude: str = "") -> list[str]:
    """`affectflow ARGS` as a subprocess command line; `prelude` is Python run first (registering an extractor)."""
    code = f"import sys\n{prelude}\nfrom pipeline.cli import main\nsys.exit(main({list(args)!r}))"
    return [sys.executable, "-c", code]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


# `affectflow` runs in a process of its own, forked for each command from one that imported the CLI, the train
# stage and torch once: the commands run as they would from a shell (own pid, cwd, fds, exit status, resource
# limits), without paying torch's 3-4 s import each (about a minute of the suite over these tests). Nothing a
# command does reaches the next one: each starts from the same freshly imported process. The Ctrl-C tests still
# start `python -c` themselves (`command`).
ZYGOTE = r"""
import json, os, sys, traceback
import torch  # noqa: F401
import pipeline.cli, pipeline.train  # noqa: F401
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(request["cwd"])
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            exec(compile(request["code"], "<affectflow>", "exec"), {"__name__": "__main__"})
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    _, waited = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(waited)), flush=True)
"""
_zygote: subprocess.Popen | None = None


def _forker() -> subprocess.Popen:
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        _zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env(), text=True, cwd=ROOT)
        atexit.register(_zygote.kill)
    return _zygote


def affectflow(cwd: Path, *args: str, prelude: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    """`affectflow ARGS` in `cwd` (a forked process, see ZYGOTE): its exit status, stdout and stderr."""
    zygote = _forker()
    with tempfile.TemporaryDirectory(prefix="affectflow-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        code = f"import sys\n{prelude}\nfrom pipeline.cli import main\nsys.exit(main({list(args)!r}))"
        zygote.stdin.write(json.dumps({"cwd": str(cwd), "code": code, "stdout": str(out), "stderr": str(err)}) + "\n")
        zygote.stdin.flush()
        ready, _, _ = select.select([zygote.stdout], [], [], timeout)
        if not ready:
            zygote.kill()
            raise subprocess.TimeoutExpired(["affectflow", *args], timeout)
        status = json.loads(zygote.stdout.readline())
        return subprocess.CompletedProcess(["affectflow", *args], status, out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's one error line, after asserting rc 2, no traceback and exactly one error line on stderr."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def assert_error(proc: subprocess.CompletedProcess, message: str) -> None:
    """The error line ends with exactly `message` (the CLI puts its prefix `affectflow...: error: ` first)."""
    line = error_line(proc)
    assert line.endswith(f"error: {message}"), f"\n{line}\n!= error: {message}"


def snapshot(root: Path, *folders: str) -> dict[str, bytes]:
    out = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def outputs_of(model: str) -> list[str]:
    return [f"checkpoints/{model}/tiny", f"metrics/{model}/tiny.json", f"plots/curves/{model}/tiny.csv"]


def leftovers(root: Path) -> list[str]:
    """Temporaries anywhere in the project (staging folders, .partial, .tmp, probes)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".partial", ".tmp", ".old")) or ".probe-" in p.name)


def failures_listing(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
