"""The README's "Extractors" section as written: its params block passes the typed params check and the stage
generator, and an entry that names another extractor (`extractor: hf_audio`) runs that extractor."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.extract import extractor_class
from pipeline.extract.hf_audio import HfAudioExtractor
from pipeline.extract.stage import extractor_settings
from pipeline.schema import HfAudioConfig, check_params
from pipeline.stages import render
from tests.test_readme import blocks, readme, section

REPO = Path(__file__).resolve().parents[1]
HUB_IDS = ("microsoft/wavlm-large", "facebook/hubert-large-ll60k", "openai/whisper-large-v3",
           "openai/clip-vit-large-patch14", "facebook/dinov2-large", "FacebookAI/roberta-large")


def readme_params() -> tuple[dict, dict]:
    """(the README block, the project's params.yaml with the block's entries merged in)."""
    (block,) = [b for b in blocks(section(readme(), "Extractors"), "yaml") if "hf_audio" in b]
    example = yaml.safe_load(block)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["extract"] = example["extract"]
    params["extractors"].update(copy.deepcopy(example["extractors"]))
    params["train"]["features"] = example["train"]["features"]
    return example, params


def test_the_table_names_every_extractor_and_the_hub_ids() -> None:
    body = section(readme(), "Extractors")
    for name in ("compare", "compare_utterance", "hf_text", "bert", "hf_audio", "faces", "denseface", "hf_vision"):
        assert f"| `{name}`" in body or f"(`{name}`" in body, name
    for hub_id in HUB_IDS:
        assert hub_id in body, hub_id


def test_the_params_block_passes_the_typed_check_and_the_stage_generator() -> None:
    example, params = readme_params()
    checked = check_params(params)
    wavlm = checked.extractor_configs[("demo", "wavlm_large")]
    whisper = checked.extractor_configs[("demo", "whisper_large_v3")]
    assert isinstance(wavlm, HfAudioConfig) and (wavlm.layer, wavlm.level) == ("all", "utterance")
    assert isinstance(whisper, HfAudioConfig) and whisper.chunk_s == 30.0
    dvc = yaml.safe_load(render(params, REPO))
    instances = str(dvc["stages"])
    assert "demo-wavlm_large" in instances and "pipeline/extract/hf_audio.py" in instances
    assert extractor_class(extractor_settings(params, "demo", "wavlm_large")["extractor"]) is HfAudioExtractor


def test_a_wrong_key_in_the_block_is_refused_with_its_path() -> None:
    from pipeline.params import ConfigError

    _, params = readme_params()
    params["extractors"]["wavlm_large"]["config"]["layers"] = "all"
    with pytest.raises(ConfigError, match="extractors.wavlm_large.config"):
        check_params(params)
    _, params = readme_params()
    params["extractors"]["wavlm_large"]["config"]["level"] = "frame"  # layer: all needs level: utterance
    with pytest.raises(ConfigError, match="level"):
        check_params(params)
