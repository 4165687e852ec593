"""Sharing features across a lab: a DVC remote carries the stores, a second clone re-runs no extraction, and an
extraction killed with SIGKILL resumes from its finished shards to the same bytes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_DEMO = {"seed": 11, "sessions": 2, "dialogues_per_session": 2, "turns": [5, 6],
             "fer": {"train_per_class": 1, "test_per_class": 1}}
EXTRACTOR = "compare"  # the fastest real extractor: the mechanism is the same for all


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PATH": f"{BIN}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def tracked_copy(dest: Path) -> None:
    """The project's tracked files (as they are in the working tree) in a fresh git repo with a tiny demo."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("data/", "features/", "splits/")) and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["corpora"] = {"demo": {**params["corpora"]["demo"], "options": {
        **params["corpora"]["demo"]["options"], **TINY_DEMO}}}
    params["extract"] = [EXTRACTOR]
    params["extractors"][EXTRACTOR].update(workers=1, shard_size=2)
    params["extractors"][EXTRACTOR]["config"]["batch_size"] = 1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lab")
    a, remote = base / "a", base / "remote"
    a.mkdir()
    tracked_copy(a)
    run(["git", "init", "-q", "-b", "main"], a)
    run([str(BIN / "dvc"), "remote", "add", "-d", "lab", str(remote)], a)
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "project"], a)
    return {"base": base, "a": a, "remote": remote}


def extract_stages(cwd: Path) -> list[str]:
    params = yaml.safe_load((cwd / "params.yaml").read_text())
    return [f"extract@demo-{name}" for name in params["extract"]]


def test_second_clone_pulls_and_reruns_no_extraction(lab: dict[str, Path]) -> None:
    a, base = lab["a"], lab["base"]
    stages = extract_stages(a)
    run([str(BIN / "dvc"), "repro", *stages], a)
    run([str(BIN / "dvc"), "push", "--run-cache"], a)
    run(["git", "add", "-A"], a)
    run(["git", "commit", "-qm", "features"], a)

    b = base / "b"
    run(["git", "clone", "-q", str(a), str(b)], base)
    run([str(BIN / "dvc"), "pull", "--with-deps", *stages], b)
    status = run([str(BIN / "dvc"), "status", *stages], b).stdout
    assert "changed" not in status, status
    repro = run([str(BIN / "dvc"), "repro", *stages], b)
    output = repro.stdout + repro.stderr
    assert "Running stage 'extract@" not in output, output
    assert "Running stage 'prepare@" not in output, output
    for name in yaml.safe_load((a / "params.yaml").read_text())["extract"]:
        store = Path("features/demo") / f"{name}.h5"
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
