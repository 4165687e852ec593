"""The `affectflow` command: prepare through params.yaml, clear configuration errors, help for each stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.cli import COMMANDS
from pipeline.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def affectflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_prepare_demo_writes_manifest_and_corpus_json(tmp_path: Path) -> None:
    params = {"corpora": {"tiny": {"adapter": "demo", "root": "data/tiny/raw", "options": {
        "seed": 5, "sessions": 1, "dialogues_per_session": 1, "turns": [3, 3],
        "fer": {"train_per_class": 1, "test_per_class": 1}}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = affectflow("prepare", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "prepared tiny: 3 utterances, 1 dialogues, 2 speakers" in result.stderr
    info = json.loads((tmp_path / "data/tiny/corpus.json").read_text())
    assert info["classes"] == ["ang", "hap", "neu", "sad"] and "root" not in info  # a machine fact: params only
    utts = read_manifest(tmp_path / "data/tiny/manifest.jsonl", info["classes"], tmp_path / "data/tiny/raw")
    assert [u.turn for u in utts] == [0, 1, 2]
    assert json.loads((tmp_path / "data/tiny/stats.json").read_text())["utterances"] == 3


def test_missing_corpus_root_names_the_params_key(tmp_path: Path) -> None:
    params = {"corpora": {"iemocap": {"adapter": "iemocap", "root": str(tmp_path / "nowhere")}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = affectflow("prepare", "iemocap", cwd=tmp_path)
    assert result.returncode == 2
    assert "corpora.iemocap.root" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_unknown_corpus_and_adapter(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"corpora": {"x": {"adapter": "nope", "root": "."}}}))
    result = affectflow("prepare", "missing", cwd=tmp_path)
    assert result.returncode == 2 and "key 'corpora.missing' is missing" in result.stderr
    result = affectflow("prepare", "x", cwd=tmp_path)
    assert result.returncode == 2 and "corpora.x.adapter" in result.stderr and "no corpus adapter" in result.stderr


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("corpora:\n  demo: [unclosed\n")
    result = affectflow("prepare", "demo", cwd=tmp_path)
    assert result.returncode == 2 and "params.yaml line" in result.stderr and "not valid YAML" in result.stderr


def test_every_stage_has_help(tmp_path: Path) -> None:
    for name in COMMANDS:
        result = affectflow(name, "--help", cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.startswith("usage: affectflow"), name
