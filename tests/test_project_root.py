"""The CLI puts the project root (the folder holding dvc.yaml) on sys.path, so a lab's adapter module imports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.cli import main, put_project_root_on_path


def test_the_nearest_folder_holding_dvc_yaml_goes_on_the_path(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    deep = tmp_path / "data" / "corpus"
    deep.mkdir(parents=True)
    assert put_project_root_on_path(deep) == tmp_path.resolve()
    assert sys.path[-1] == str(tmp_path.resolve())
    put_project_root_on_path(deep)
    assert sys.path.count(str(tmp_path.resolve())) == 1  # once


def test_without_dvc_yaml_the_working_directory_goes_on_the_path(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    assert put_project_root_on_path() == tmp_path.resolve()
    assert str(tmp_path.resolve()) in sys.path


def test_affectflow_prepare_imports_a_module_beside_dvc_yaml(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "lab_adapters").mkdir()
    (tmp_path / "lab_adapters" / "tiny.py").write_text(
        "from pipeline.corpora import PreparedCorpus\n"
        "from pipeline.manifest import Utterance\n\n\n"
        "def prepare(root, options):\n"
        "    utts = [Utterance(utt_id=f'u{i}', corpus='tiny', speaker=f's{i}', session='a', label='x',\n"
        "                      text='hello') for i in range(3)]\n"
        "    return PreparedCorpus(utts, ['x'], {'utterances': 3})\n")
    (tmp_path / "raw").mkdir()
    raw = tmp_path / "raw"
    (tmp_path / "params.yaml").write_text(f"corpora:\n  tiny: {{adapter: lab_adapters.tiny, root: {raw}}}\n")
    monkeypatch.chdir(tmp_path / "raw")  # a subfolder: the root is found upwards
    try:
        assert main(["--params", str(tmp_path / "params.yaml"), "prepare", "tiny"]) == 0
    finally:
        sys.modules.pop("lab_adapters.tiny", None)
        sys.modules.pop("lab_adapters", None)
    assert len((tmp_path / "raw" / "data" / "tiny" / "manifest.jsonl").read_text().splitlines()) == 3
