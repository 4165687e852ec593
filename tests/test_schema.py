"""The typed configuration (pipeline/schema.py) is never looser than the code that reads it: every setting it
accepts, the model families' own checks, Denseface training's and the exporters' accept too. Each value of each
key is replaced by values of the wrong kind or out of range; whenever the schema lets one through, the consumer's
check runs on it and must pass."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from models import mmgcn, mmin, recipe, ssmm
from pipeline.denseface.train import check_config as check_denseface
from pipeline.export import export_config
from pipeline.params import ConfigError, merged
from pipeline.schema import DensefaceTrain, ModelBase, check_params, model_settings
from pipeline.train import PIPELINE_KEYS
from pipeline.typed_config import parse

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
BAD_VALUES: list[Any] = ["x", None, -1, 0, 1.5, 3, True, [], [1, 2], {}, {"a": 1}]
FAMILY_CHECKS = {
    "utt_fusion": lambda cfg: recipe.check_recipe_cfg(cfg, "utt_fusion"),
    "mmin": lambda cfg: (mmin.check_mmin_cfg(cfg), recipe.check_recipe_cfg(cfg, "mmin")),
    "mmgcn": mmgcn.validate_config,
    "ssmm": ssmm.check_config,
    "culture": lambda cfg: recipe.check_recipe_cfg(cfg, "culture"),
}


def variants(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The config with one key (or one key of a nested mapping) set to each bad value, or removed."""
    out = []
    for key, value in cfg.items():
        out.append((f"-{key}", {k: v for k, v in cfg.items() if k != key}))
        for bad in BAD_VALUES:
            out.append((f"{key}={bad!r}", {**cfg, key: bad}))
        if isinstance(value, dict):
            for sub in value:
                for bad in BAD_VALUES:
                    out.append((f"{key}.{sub}={bad!r}", {**cfg, key: {**value, sub: bad}}))
    return out


def accepted(tp: type, cfg: dict[str, Any]) -> bool:
    try:
        parse(tp, cfg, "x")
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("model", ["utt_fusion", "mmin", "mmgcn", "ssmm", "culture_adv"])
def test_every_model_setting_the_schema_accepts_the_family_accepts(model: str) -> None:
    base = model_settings(PARAMS, model, "demo")
    family = FAMILY_CHECKS[base["family"]]
    rejected = 0
    for label, cfg in variants(base):
        if not accepted(ModelBase, cfg):
            rejected += 1
            continue
        family_cfg = {k: copy.deepcopy(v) for k, v in cfg.items() if k not in PIPELINE_KEYS}
        try:
            family({**family_cfg, "n_classes": 4})
        except (ValueError, KeyError, TypeError) as err:
            pytest.fail(f"{model}: the schema accepts {label} but the family rejects it: {err!r}")
    assert rejected > len(base)  # the variants do hit the checks


def test_every_denseface_training_setting_the_schema_accepts_training_accepts() -> None:
    base = merged(PARAMS["denseface"]["train"], PARAMS["denseface"]["sets"]["demo"])
    for label, cfg in variants(base):
        if accepted(DensefaceTrain, cfg):
            try:
                check_denseface(cfg)
            except (ValueError, KeyError, TypeError) as err:
                pytest.fail(f"the schema accepts {label} but train-denseface rejects it: {err!r}")


@pytest.mark.parametrize("kind", ["mmin", "mmgcn"])
def test_every_export_setting_the_schema_accepts_the_exporter_accepts(kind: str) -> None:
    for label, cfg in variants(PARAMS["export"][kind]):
        params = {**PARAMS, "export": {**PARAMS["export"], kind: cfg}, "_path": "params.yaml"}
        try:
            check_params(params)
        except ConfigError:
            continue
        try:
            export_config(params, kind)
        except ConfigError as err:
            pytest.fail(f"the schema accepts export.{kind} {label} but the exporter rejects it: {err}")


@pytest.mark.parametrize("name", ["compare", "compare_utterance"])
def test_every_opensmile_setting_the_schema_accepts_the_extractor_accepts(name: str) -> None:
    from pipeline.extract.compare import CompareExtractor, CompareUtteranceExtractor, _settings
    from pipeline.schema import EXTRACTOR_CONFIGS

    cls = {"compare": CompareExtractor, "compare_utterance": CompareUtteranceExtractor}[name]
    for label, cfg in variants(PARAMS["extractors"][name]["config"]):
        if accepted(EXTRACTOR_CONFIGS[name], cfg):
            try:
                _settings(cls.settings_class, cfg, name)
            except (ValueError, KeyError, TypeError) as err:
                pytest.fail(f"the schema accepts {name} config {label} but the extractor rejects it: {err!r}")


def test_key_line_follows_merges_aliases_and_lists(tmp_path: Path) -> None:
    from pipeline.schema import key_line

    path = tmp_path / "p.yaml"
    path.write_text("models:\n"                       # 1
                    "  a: &a\n"                       # 2
                    "    lr: 0.1\n"                   # 3
                    "    hidden: [1, 2]\n"            # 4
                    "  b:\n"                          # 5
                    "    <<: *a\n"                    # 6
                    "    dropout: 0.5\n"              # 7
                    "corpora:\n"                      # 8
                    "  demo:\n"                       # 9
                    "    train: {models: {b: *a}}\n"  # 10
                    "extract:\n"                      # 11
                    "  - compare\n"                   # 12
                    "  - bert\n")                     # 13
    assert key_line(path, "models.b.dropout") == 7
    assert key_line(path, "models.b.lr") == 3                       # inherited: where the value is written
    assert key_line(path, "models.b.hidden[1]") == 4
    assert key_line(path, "corpora.demo.train.models.b.lr") == 3   # through an alias
    assert key_line(path, "extract[1]") == 13
    assert key_line(path, "corpora.demo.root") == 9                 # missing: its parent
    assert key_line(path, "models.b.lr", {"other": 1}) is None      # the file no longer holds these params
