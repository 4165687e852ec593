"""Sharing across a lab: a DVC remote carries every output, a second clone at another path (its corpus at another
absolute path) re-runs no stage, and an extraction killed with SIGKILL resumes from its finished shards to the same
bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.corpora.demo import generate
from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_DEMO = {"seed": 11, "sessions": 2, "dialogues_per_session": 2, "turns": [5, 6],
             "fer": {"train_per_class": 1, "test_per_class": 1}}
EXTRACTOR = "compare"  # the fastest real extractor: the mechanism is the same for all
OUTPUT_DIRS = ("data/", "features/", "splits/", "checkpoints/", "metrics/", "plots/", "reports/")


# A stand-in for the `affectflow` console script, first on PATH while clone A runs `dvc repro`: it runs the real
# CLI and, at exit, writes the project files the process imported (sys.modules: module and function-level imports
# alike) to TRACE_DIR. The freshness check that `dvc repro` triggers is left out (DVC_STAGE unset): it can stop a
# stage but changes no output, so it is no stage's dep by design (pipeline/stages.py).
SHIM = """#!{python}
import atexit, hashlib, json, os, sys
os.environ.pop("DVC_STAGE", None)
def _dump():
    root = os.path.realpath(os.getcwd())
    files = sorted({{os.path.relpath(os.path.realpath(f), root) for f in
                    (getattr(m, "__file__", None) for m in list(sys.modules.values()))
                    if f and os.path.isabs(f) and os.path.realpath(f).startswith(root + os.sep)}})
    name = hashlib.md5(" ".join(sys.argv[1:]).encode()).hexdigest()
    with open(os.path.join({trace_dir!r}, name + ".json"), "w") as fh:
        json.dump({{"argv": sys.argv[1:], "files": files}}, fh)
atexit.register(_dump)
from pipeline.cli import main
sys.exit(main())
"""


def run(cmd: list[str], cwd: Path, check: bool = True, path_first: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{path_first}:{BIN}" if path_first else str(BIN)
    env = {**os.environ, "PYTHONPATH": str(cwd), "PATH": f"{path}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


DEMO_RELEASE_ADAPTER = '''"""The demo corpus read as released: no generation, the tree already at the corpus root."""
from pathlib import Path

from pipeline.corpora import PreparedCorpus
from pipeline.corpora.demo import read_transcripts


def prepare(root: Path, options: dict) -> PreparedCorpus:
    classes = list(options["classes"])
    return PreparedCorpus(read_transcripts(Path(root), classes), classes, {})
'''


def tracked_copy(dest: Path, corpus_root: Path) -> None:
    """The project's tracked files (as in the working tree) with a tiny demo whose corpus sits at `corpus_root`
    (an absolute path outside the clone), one model per stage kind and tiny training."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(OUTPUT_DIRS) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    demo = params["corpora"]["demo"]
    demo["root"] = str(corpus_root)
    demo["options"].update(TINY_DEMO)
    # the demo corpus as a lab holds a released corpus: generated once outside the project, read by a lab adapter
    # (the built-in demo adapter generates its root, an output, which must stay inside the project)
    demo["adapter"] = "mylab.demo_release"
    (dest / "mylab").mkdir()
    (dest / "mylab" / "__init__.py").write_text("")
    (dest / "mylab" / "demo_release.py").write_text(DEMO_RELEASE_ADAPTER)
    generate(corpus_root, demo["options"], progress=False)
    demo["train"] = {"folds": [0], "threads": 1, "workers": 1, "models": {"utt_fusion": {
        "batch_size": 8, "epochs_constant": 1, "epochs_decay": 1, "frames": {"audio": None, "visual": None,
                                                                              "text": None}}}}
    demo["extractors"]["faces"]["workers"] = demo["extractors"]["denseface"]["workers"] = 1  # no spawn for ~20 clips
    params["corpora"] = {"demo": demo}
    without_cross_corpus(params)
    params["extract"] = ["compare", "bert"]
    params["extractors"][EXTRACTOR].update(workers=1, shard_size=2)
    params["extractors"][EXTRACTOR]["config"]["batch_size"] = 1
    params["train"]["seeds"] = [0]
    params["train_models"], params["finetune_models"] = ["utt_fusion"], []
    # the FER set train-denseface reads is part of the project (tracked by git), not of the corpus
    params["denseface"]["sets"]["demo"]["data"] = {"fer2013": "fer/fer2013.csv", "ferplus": "fer/fer2013new.csv"}
    params["denseface"]["sets"]["demo"]["optim"].update(epochs=1, batch_size=8)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fer = dest / "fer"
    shutil.copytree(corpus_root / "fer", fer)
    run([str(BIN / "affectflow"), "stages"], dest)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lab")
    a, remote = base / "a", base / "remote"
    a.mkdir()
    tracked_copy(a, base / "corpus-a")
    run(["git", "init", "-q", "-b", "main"], a)
    run([str(BIN / "dvc"), "remote", "add", "-d", "lab", str(remote)], a)
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "project"], a)
    shim, traces = base / "shim", base / "traces"
    shim.mkdir()
    traces.mkdir()
    (shim / "affectflow").write_text(SHIM.format(python=sys.executable, trace_dir=str(traces)))
    (shim / "affectflow").chmod(0o755)
    run([str(BIN / "dvc"), "repro"], a, path_first=shim)
    return {"base": base, "a": a, "remote": remote, "traces": traces}


def test_every_stage_run_imported_only_modules_it_depends_on(lab: dict[str, Path]) -> None:
    """The import closure as the stages really ran (function-level imports included) against dvc.yaml's deps."""
    from dvc.repo import Repo

    with Repo(str(lab["a"])) as repo:
        deps = {s.cmd.split(" ", 1)[1]: [d.def_path for d in s.deps] for s in repo.index.stages}
    traces = [json.loads(p.read_text()) for p in sorted(lab["traces"].glob("*.json"))]
    ran = {" ".join(t["argv"]): t["files"] for t in traces if t["argv"][0] != "stages"}
    assert {"prepare demo", "extract demo bert", "faces demo", "extract demo denseface", "train-denseface demo",
            "train utt_fusion demo", "report"} <= set(ran), sorted(ran)
    for command, files in ran.items():
        assert "pipeline/cli.py" in files, command
        missing = [f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps[command])]
        assert missing == [], f"`affectflow {command}` imported {missing}, which its stage does not depend on"
    assert "pipeline/extract/text_clean.py" in ran["extract demo bert"]  # via the registry (importlib)


def test_second_clone_elsewhere_pulls_and_runs_no_stage(lab: dict[str, Path]) -> None:
    """Clone A runs the whole pipeline and pushes; clone B, at another path with its copy of the corpus at another
    absolute path, pulls: `dvc status` is clean and `dvc repro` runs nothing."""
    a, base = lab["a"], lab["base"]
    run([str(BIN / "dvc"), "push"], a)
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "results"], a)
    info = json.loads((a / "data/demo/corpus.json").read_text())
    assert "root" not in info and "seconds" not in json.loads((a / "data/demo/stats.json").read_text())
    assert str(base) not in (a / "data/demo/manifest.jsonl").read_text()
    assert (a / "metrics/utt_fusion/demo.json").exists() and (a / "reports/results.md").exists()

    b = base / "elsewhere" / "b"
    b.parent.mkdir()
    run(["git", "clone", "-q", str(a), str(b)], base)
    params = yaml.safe_load((b / "params.yaml").read_text())
    params["corpora"]["demo"]["root"] = str(base / "elsewhere" / "corpus-b")  # where B's copy of the corpus is
    generate(base / "elsewhere" / "corpus-b", params["corpora"]["demo"]["options"], progress=False)
    (b / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([str(BIN / "dvc"), "pull"], b)
    status = run([str(BIN / "dvc"), "status"], b)
    assert "up to date" in status.stdout and "changed" not in status.stdout, status.stdout
    repro = run([str(BIN / "dvc"), "repro"], b)
    assert "Running stage" not in repro.stdout + repro.stderr, repro.stdout
    for store in ("features/demo/compare.h5", "features/demo/bert.h5", "features/demo/faces.h5",
                  "features/demo/denseface.h5"):
        assert (a / store).read_bytes() == (b / store).read_bytes(), store


def test_sigkilled_extraction_resumes_to_the_same_bytes(lab: dict[str, Path]) -> None:
    a = lab["a"]
    run([str(BIN / "dvc"), "repro", "prepare@demo"], a)
    name = EXTRACTOR
    out = a / "features/demo" / f"{name}.h5"
    parts = out.with_name(out.name + ".parts")
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(a)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "extract", "demo", name], cwd=a, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("shard-*.h5"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(parts.glob("shard-*.h5")))
    assert finished >= 2 and not out.exists()
    resumed = run([sys.executable, "-m", "pipeline.cli", "extract", "demo", name], a)
    assert f"reused {finished}" in resumed.stderr, resumed.stderr
    killed_bytes = out.read_bytes()
    shutil.rmtree(parts, ignore_errors=True)
    out.unlink()
    run([sys.executable, "-m", "pipeline.cli", "extract", "demo", name], a)
    assert out.read_bytes() == killed_bytes
