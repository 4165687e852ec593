"""A corpus with fewer modalities: the condition names over a subset, which modalities (and stores) a model trains
on, the extract stage's refusal, every family trained on two modalities and on audio alone with only those stores
on disk, and the report of such metrics."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from models.condition_names import (
    conditions_over,
    full_condition,
    missing_conditions,
    selection_condition,
    training_conditions,
)
from models.data import Sequences, UtteranceSet
from pipeline.cli import main
from pipeline.modalities import model_extractors, model_fits_corpus, model_modalities
from pipeline.params import ConfigError
from pipeline.report.stage import build_report
from pipeline.train import train_model
from tests.test_train import ROOT, tiny_corpus, tiny_params
from tests.trimmed_params import without_cross_corpus

SIX = ["azz", "zvz", "zzl", "avz", "azl", "zvl"]


def test_conditions_over_a_subset_of_modalities() -> None:
    assert conditions_over(["audio", "visual", "text"]) == (*SIX, "avl")
    assert conditions_over(["text", "audio"]) == ("azz", "zzl", "azl")
    assert conditions_over(["audio"]) == ("azz",) and missing_conditions(["audio"]) == ()
    assert full_condition(["visual", "text"]) == "zvl"
    # the six listed missing conditions leave those that still drop something over audio + text
    assert training_conditions(SIX, ["audio", "text"]) == ["azz", "zzl"]
    assert training_conditions(SIX, ["audio"]) == []
    assert training_conditions(["avl"], ["audio"]) == ["azz"]
    assert selection_condition("average", ["audio", "text"]) == "average"
    assert selection_condition("average", ["audio"]) == "azz"
    assert selection_condition("avl", ["visual"]) == "zvz"
    with pytest.raises(ValueError, match="'zvz' feeds"):
        selection_condition("zvz", ["audio", "text"])
    with pytest.raises(ValueError, match="unknown condition"):
        training_conditions(["abc"], ["audio"])


def test_an_utterance_set_holds_the_modalities_its_corpus_has() -> None:
    audio = Sequences(torch.ones(3, 2, 4), torch.tensor([2, 0, 1]))  # utterance 1 lacks audio: length 0
    data = UtteranceSet(["u0", "u1", "u2"], audio, None, None, torch.tensor([0, 1, -1]))
    assert data.modalities == ("audio",) and data.dims == {"audio": 4}
    part = data.subset([2, 0])
    assert part.modalities == ("audio",) and part.visual is None and part.audio.lengths.tolist() == [1, 2]
    with pytest.raises(ValueError, match="no text modality \\(they have audio\\)"):
        data.modality("text")
    with pytest.raises(ValueError, match="at least one modality"):
        UtteranceSet(["u0"], None, None, None, torch.tensor([0]))


def params_with(modalities: list[str] | None = None, **models: dict) -> dict:
    params = tiny_params()
    params["train"]["seeds"] = [0]
    params["corpora"] = {"tiny": {} if modalities is None else {"modalities": modalities}}
    without_cross_corpus(params)
    for model, entry in models.items():
        params["models"][model].update(entry)
    return params


def test_model_modalities_intersect_corpus_model_and_features() -> None:
    assert model_modalities(params_with(["audio", "text"]), "utt_fusion", "tiny") == ("audio", "text")
    assert model_modalities(params_with(["audio", "text"], mmgcn={"modalities": "vt"}), "mmgcn", "tiny") == ("text",)
    own = params_with(None, ssmm={"features": {"text": "bert", "audio": "compare_utterance"}})
    assert model_extractors(own, "ssmm", "tiny") == {"audio": "compare_utterance", "text": "bert"}
    assert model_extractors(own, "utt_fusion", "tiny") == {"audio": "compare", "visual": "denseface", "text": "bert"}
    audio = params_with(["audio"])
    assert model_fits_corpus(audio, "utt_fusion", "tiny") and not model_fits_corpus(audio, "mmin", "tiny")
    with pytest.raises(ConfigError, match="'mmin' \\(mmin\\) needs at least 2 modalities"):
        model_modalities(audio, "mmin", "tiny")
    with pytest.raises(ConfigError, match="no modality to train on"):
        model_modalities(params_with(["audio"], mmgcn={"modalities": "vt"}), "mmgcn", "tiny")
    with pytest.raises(ConfigError, match="corpora.tiny.modalities"):  # a malformed setting is an error, not "no"
        model_fits_corpus(params_with(["sound"]), "utt_fusion", "tiny")


def test_extract_refuses_an_extractor_whose_modality_the_corpus_lacks(tmp_path: Path, monkeypatch, capsys) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpora"] = {"tones": {"adapter": "demo", "root": "raw", "modalities": ["audio"]}}
    without_cross_corpus(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert main(["extract", "tones", "bert"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "extractor 'bert' reads text, which corpus 'tones' does not have" in err[0]
    assert not (tmp_path / "features").exists()  # refused before any work: no manifest was even read


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tiny_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def conditions(project: Path, model: str) -> set[str]:
    return set(json.loads((project / f"metrics/{model}/tiny.json").read_text())["conditions"])


def test_every_family_trains_on_audio_and_text_without_the_visual_store(project: Path) -> None:
    (project / "features/tiny/denseface.h5").unlink()  # a corpus without video has no such store
    params = params_with(["audio", "text"])
    for model in ("utt_fusion", "utt_fusion_aug", "mmin", "mmin_nocycle", "mmgcn", "ssmm"):
        train_model(params, model, "tiny")
    for model in ("utt_fusion", "utt_fusion_aug", "mmin", "mmin_nocycle"):
        assert conditions(project, model) == {"azz", "zzl", "azl", "average"}, model
    assert conditions(project, "mmgcn") == conditions(project, "ssmm") == {"azl"}
    runs = json.loads((project / "checkpoints/mmin/tiny/runs.json").read_text())
    assert runs["config"]["features"] == {"audio": "compare", "text": "bert"}
    assert set(runs["runs"][0]["predictions"]) == {"azz", "zzl", "azl"}
    assert json.loads((project / "checkpoints/mmgcn/tiny/runs.json").read_text())["config"]["modalities"] == "at"


def test_audio_alone_trains_every_family_but_mmin_and_reports(project: Path) -> None:
    for name in ("denseface", "bert"):
        (project / f"features/tiny/{name}.h5").unlink()
    params = params_with(["audio"])
    for model in ("utt_fusion", "utt_fusion_aug", "mmgcn", "ssmm"):
        metrics = train_model(params, model, "tiny")
        assert set(metrics["conditions"]) == {"azz"}, model
        assert 0.0 <= metrics["conditions"]["azz"]["ua"]["mean"] <= 1.0
    ssmm = json.loads((project / "metrics/ssmm/tiny.json").read_text())
    assert all(set(f["conditions"]) == {"azz"} for f in ssmm["sweep"]["labelled_fraction"].values())
    with pytest.raises(ConfigError, match="needs at least 2 modalities"):
        train_model(params, "mmin", "tiny")
    assert not (project / "metrics/mmin").exists()

    cfg = copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text())["report"])
    cfg["corpora"] = ["tiny"]
    cfg["plots"]["tsne"]["models"] = []
    markdown = build_report(project, cfg).markdown
    mmin_table = markdown.split("### MMIN family")[1].split("###")[0]
    header = next(line for line in mmin_table.splitlines() if line.startswith("| Metric"))
    assert header == "| Metric | Model | {a} |"  # only the condition an audio-only corpus has
    ssmm_full = markdown.split("### SSMM: WA/UA with all labels")[1].split("###")[0]
    row = next(line for line in ssmm_full.splitlines() if line.startswith("| ssmm |"))
    assert "—" not in row and "±" in row  # the full condition is the model's own, azz
    assert "test condition {a}" in markdown  # confusion matrices at azz


def readme_block(section: str, language: str) -> str:
    """The first fenced `language` block of the README section headed `## <section>`."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_readme_training_settings_block_overrides_one_corpus_only() -> None:
    from pipeline.modalities import corpus_modalities
    from pipeline.params import merged
    from pipeline.train import model_config

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    block = yaml.safe_load(readme_block("Training settings", "yaml"))
    params = merged(params, block)
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
    for model in ("utt_fusion", "utt_fusion_aug"):
        cfg = model_config(params, model, "emodb")
        assert (cfg["batch_size"], cfg["lr"]) == (32, 1.0e-3)
        assert (defaults[model]["batch_size"], defaults[model]["lr"]) == (128, 2.0e-4)  # the papers' stay
        assert cfg["epochs_constant"] == defaults[model]["epochs_constant"] and cfg["seeds"] == [0, 1, 2]
    assert model_config(params, "ssmm", "emodb")["batch_size"] == 32
    assert model_config(params, "mmin", "emodb")["batch_size"] == 128
    assert corpus_modalities(params, "emodb") == ("audio",)
    assert model_extractors(params, "utt_fusion", "emodb") == {"audio": "compare"}
    assert not model_fits_corpus(params, "mmin", "emodb")
