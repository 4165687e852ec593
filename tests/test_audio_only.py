"""An audio-only corpus end to end: a lab adapter written into a temporary project (`modalities: [audio]`, a
handful of speakers, tiny training settings), the project's own dvc.yaml and code copied in, no stand-in stores.

`test_dvc_repro_takes_an_audio_only_corpus_to_its_metrics` is the issue's "Done when": `dvc repro` to the metrics
and the report. The stages' commands (`affectflow prepare/extract/split/train/report`) are what `dvc repro` runs,
one by one (dvc.yaml's `cmd`s, checked below); `test_stage_commands_refuse_what_an_audio_only_corpus_cannot_have`
runs the refusals (a text extractor, MMIN over one modality) in the same repro'd project: one
pipeline run for the module, not two (a second run from scratch repeated the same commands).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLASSES = ["low", "mid", "high"]
PITCH = {"low": 180.0, "mid": 320.0, "high": 560.0}
SPEAKERS = ["s01", "s02", "s03", "s04"]
CLIPS_PER_CLASS = 3  # per speaker: 4 x 3 x 3 = 36 utterances
SAMPLE_RATE = 16000
MODELS = ["utt_fusion", "ssmm"]  # one model of the MMIN recipe and one of SSMM, both over audio alone

ADAPTER = '''"""Tones: an audio-only corpus, wav/<speaker>_<label>_<n>.wav (written by tests/test_audio_only.py)."""
from pathlib import Path
from typing import Any

from pipeline.corpora import PreparedCorpus
from pipeline.manifest import ManifestError, Segment, Utterance

CLASSES = ["low", "mid", "high"]


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    utterances = []
    for path in sorted((root / "wav").glob("*.wav")):
        speaker, label, _ = path.stem.split("_")
        if label not in CLASSES:
            raise ManifestError(f"{path.name!r}: label {label!r} is not one of {CLASSES}", source=path)
        utterances.append(Utterance(utt_id=path.stem, corpus="tones", speaker=speaker, session=speaker,
                                    audio=Segment(f"wav/{path.name}"), label=label))
    return PreparedCorpus(utterances, list(CLASSES), {"utterances": len(utterances)})
'''


def write_clips(root: Path) -> None:
    """Voiced tones whose pitch carries the class, with a speaker-dependent shift, a vibrato and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    (root / "wav").mkdir(parents=True)
    for k, speaker in enumerate(SPEAKERS):
        for label in CLASSES:
            for n in range(CLIPS_PER_CLASS):
                f0 = PITCH[label] * (1.0 + 0.04 * k) * (1.0 + 0.01 * n)
                phase = 2 * np.pi * np.cumsum(f0 * (1.0 + 0.02 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
                wave = sum(np.sin(h * phase) / h for h in (1, 2, 3)) * np.hanning(len(t))
                wave = 0.3 * wave + 0.01 * rng.standard_normal(len(t))
                sf.write(root / "wav" / f"{speaker}_{label}_{n}.wav", wave.astype(np.float32), SAMPLE_RATE)


def tones_params() -> dict:
    """The project's params.yaml with the demo replaced by the tones corpus: audio only, tiny training."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpora"] = {"tones": {
        "adapter": "mylab.tones", "root": "raw", "modalities": ["audio"],
        "splits": {"speaker": {"protocol": "speaker_folds", "val": "next"}},
        "train": {"folds": [0, 1], "seeds": [0], "threads": 1, "workers": 1, "models": {
            "utt_fusion": {"batch_size": 8, "lr": 1.0e-3, "epochs_constant": 2, "epochs_decay": 2,
                           "encoder": {"audio_hidden": 16}, "classifier_hidden": [16]},
            "ssmm": {"batch_size": 8, "epochs": 4, "warmup_epochs": 1, "hidden": [32], "latent": 8,
                     "classifier_hidden": [8], "labelled_fractions": [0.5, 1.0]}}}}}
    params["splits"]["labelled_fractions"] = [0.5, 1.0]
    params["extract"] = ["compare"]
    params["extractors"]["compare"].update(workers=1, shard_size=64)
    params["train_models"] = list(MODELS)
    params["finetune_models"] = []
    params["denseface"]["sets"] = {}  # no video: no face model to train
    params["report"]["corpora"] = ["tones"]
    params["report"]["plots"]["tsne"]["models"] = []
    return without_cross_corpus(params)


def make_project(dest: Path) -> Path:
    """A project: the code, dvc.yaml and DVC config of this checkout, the adapter, the raw corpus, the params."""
    for rel in ("pipeline", "models"):
        shutil.copytree(ROOT / rel, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("dvc.yaml", ".dvcignore", ".dvc/config"):
        if (ROOT / rel).exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / "mylab").mkdir()
    (dest / "mylab" / "__init__.py").write_text("")
    (dest / "mylab" / "tones.py").write_text(ADAPTER)
    write_clips(dest / "raw")
    (dest / "params.yaml").write_text(yaml.safe_dump(tones_params(), sort_keys=False))
    return dest


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PATH": f"{BIN}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def assert_audio_only_metrics(project: Path) -> None:
    assert sorted(p.name for p in (project / "features/tones").glob("*.h5")) == ["compare.h5"]
    split = json.loads((project / "splits/tones.json").read_text())
    assert split["conditions"] == {"azz": [1, 0, 0]} and split["full_condition"] == "azz"
    for model in MODELS:
        metrics = json.loads((project / f"metrics/{model}/tones.json").read_text())
        assert metrics["folds"] == 2 and metrics["seeds"] == [0]
        assert set(metrics["conditions"]) == {"azz"}, (model, metrics["conditions"])
        for stat in metrics["conditions"]["azz"].values():
            assert 0.0 <= stat["mean"] <= 1.0
        runs = json.loads((project / f"checkpoints/{model}/tones/runs.json").read_text())
        assert runs["config"]["features"] == {"audio": "compare"}
        assert all(set(r["predictions"]) == {"azz"} for r in runs["runs"])
    report = (project / "reports/results.md").read_text()
    assert "| Metric | Model | {a} |" in report


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tones project after `git init`, `dvc init`, `affectflow stages` and one `dvc repro`."""
    project = make_project(tmp_path_factory.mktemp("audio_only") / "project")
    run(["git", "init", "-q", "-b", "main"], project)
    if not (project / ".dvc").exists():
        run([str(BIN / "dvc"), "init", "-q"], project)
    run([str(BIN / "affectflow"), "stages"], project)  # dvc.yaml for this project's params (README)
    run([str(BIN / "dvc"), "repro"], project)
    return project


def test_dvc_repro_takes_an_audio_only_corpus_to_its_metrics(reproduced: Path) -> None:
    project = reproduced
    stages = yaml.safe_load((project / "dvc.yaml").read_text())
    assert "extract-face" not in stages["stages"] and "finetune" not in stages["stages"]
    # dvc repro ran the stage commands themselves, one by one
    commands = {name: stage.get("do", stage)["cmd"] for name, stage in stages["stages"].items()}
    assert commands["prepare"] == "affectflow prepare ${key}" and commands["split"] == "affectflow split ${key}"
    assert commands["extract"].startswith("affectflow extract ") and commands["train"].startswith("affectflow train ")
    assert commands["report"] == "affectflow report"
    assert_audio_only_metrics(project)
    status = run([str(BIN / "dvc"), "status"], project).stdout
    assert "changed" not in status, status


def test_stage_commands_refuse_what_an_audio_only_corpus_cannot_have(reproduced: Path) -> None:
    project = reproduced
    affectflow = str(BIN / "affectflow")
    features = snapshot(project / "features")
    refused = run([affectflow, "extract", "tones", "bert"], project, check=False)
    assert refused.returncode == 2 and "reads text, which corpus 'tones' does not have" in refused.stderr
    assert snapshot(project / "features") == features  # refused before anything was written
    refused = run([affectflow, "train", "mmin", "tones"], project, check=False)
    assert refused.returncode == 2 and "needs at least 2 modalities" in refused.stderr
    assert not (project / "metrics" / "mmin").exists() and not (project / "checkpoints" / "mmin" / "tones").exists()
    assert_audio_only_metrics(project)  # the refusals left the metrics and the report as dvc repro wrote them
    assert "changed" not in run([str(BIN / "dvc"), "status"], project).stdout


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
