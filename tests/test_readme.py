"""The README's "Add a corpus" and "Use a real corpus" sections, run as written.

The fenced python and yaml blocks are read out of README.md by section heading. "Add a corpus": the adapter goes
into a temporary project at the path its first line names, the yaml's corpus entry (root pointed at a generated
EmoDB tree) into a params.yaml trimmed to that corpus with tiny training settings, next to a copy of the project's
own dvc.yaml; `affectflow prepare` and `split` run there with no PYTHONPATH to the project (the CLI finds the
project root), and `dvc repro` runs to the metrics with no stand-in stores. "Use a real corpus": every entry of
its yaml blocks is prepared and split on a generated tree of its release. Editing the README can break these
tests, on purpose: a module name that no longer matches the module's path fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import corpus_fixtures as fx
from tests.trimmed_params import without_cross_corpus

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def section(text: str, title: str) -> str:
    """The body of the README's `## <title>` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no section '## {title}'"
    return match[1]


def blocks(body: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", body, re.S | re.M)


def add_a_corpus(text: str) -> tuple[str, str, dict[str, Any]]:
    """(module path the python block's first line names, the module's source, the yaml's `corpora` mapping)."""
    body = section(text, "Add a corpus")
    (source,), (config,) = blocks(body, "python"), blocks(body, "yaml")
    path = re.match(r"# ([\w/]+\.py)\b", source)
    assert path, f"the adapter block must start with '# <module path>.py': {source.splitlines()[0]!r}"
    return path[1], source, yaml.safe_load(config)["corpora"]


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def tiny_params(corpora: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """The project's params.yaml trimmed to `corpora`, the models given, one fold, one seed, two epochs."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["corpora"] = corpora
    without_cross_corpus(params)
    for entry in corpora.values():
        entry["train"] = {"folds": [0], "threads": 1, "workers": 1,
                          "models": {"utt_fusion": {"batch_size": 16, "lr": 1.0e-3, "epochs_constant": 1,
                                                    "epochs_decay": 1, "frames": {"audio": 20}},
                                     "ssmm": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16,
                                              "labelled_fractions": [0.5, 1.0]}}}
    params["train"]["seeds"] = [0]
    params["train_models"] = models
    params["finetune_models"] = []
    params["splits"]["labelled_fractions"] = [0.5, 1.0]
    for extractor in params["extractors"].values():
        extractor["workers"] = 1
    params["denseface"]["sets"] = {}
    params["report"]["corpora"] = list(corpora)
    return params


def make_project(tmp_path: Path, text: str, models: list[str]) -> tuple[Path, str]:
    """A project holding the project's dvc.yaml, the README's adapter at its path and the trimmed params; returns
    it and the corpus name."""
    module_path, source, corpora = add_a_corpus(text)
    (name, entry), = corpora.items()
    project = tmp_path / "project"
    (project / module_path).parent.mkdir(parents=True)
    (project / module_path).write_text(source)
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    for package in ("pipeline", "models"):  # the code the stages declare as deps
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    entry["root"] = str(fx.emodb_tree(tmp_path / "corpus"))
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params({name: entry}, models), sort_keys=False))
    return project, name


def run(project: Path, *cmd: str, ok: bool = True, timeout: int = 900) -> str:
    # the code under test comes from this checkout; the project itself is NOT on PYTHONPATH
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    out = done.stdout + done.stderr
    assert (done.returncode == 0) == ok, f"{cmd} exited {done.returncode}:\n{out}"
    return out


# ------------------------------------------------------------------------------------------------ the blocks
def test_the_sections_blocks_parse() -> None:
    text = readme()
    module_path, source, corpora = add_a_corpus(text)
    compile(source, module_path, "exec")
    (name, entry), = corpora.items()
    assert entry["adapter"] == module_path.removesuffix(".py").replace("/", ".")
    assert entry["modalities"] == ["audio"]
    real = [yaml.safe_load(block)["corpora"] for block in blocks(section(text, "Use a real corpus"), "yaml")]
    assert real and all(set(entry) <= {"adapter", "root", "options"} for entry in real[0].values())


# ----------------------------------------------------------------------------------------------- Add a corpus
def test_add_a_corpus_prepare_and_split_through_the_readmes_adapter(tmp_path: Path) -> None:
    project, name = make_project(tmp_path, readme(), ["utt_fusion"])
    affectflow = str(BIN / "affectflow")
    run(project, affectflow, "prepare", name)
    manifest = [json.loads(line) for line in (project / "data" / name / "manifest.jsonl").read_text().splitlines()]
    speakers, texts = len(fx.EMODB_SPEAKERS), 2
    assert len(manifest) == speakers * texts * len(fx.EMODB_CODES)
    corpus = json.loads((project / "data" / name / "corpus.json").read_text())
    assert corpus["classes"] == ["anger", "happiness", "sadness", "neutral"]  # the yaml's options
    labelled = [u for u in manifest if u["label"] is not None]
    assert len(labelled) == speakers * texts * 4
    assert {u["extra"]["code"] for u in manifest if u["label"] is None} == {"L", "E", "A"}
    assert any(u["audio"]["path"].endswith(".WAV") for u in manifest)
    stats = json.loads((project / "data" / name / "stats.json").read_text())
    assert stats["codes"] == {code: speakers * texts for code in sorted(fx.EMODB_CODES)}
    run(project, affectflow, "split", name)
    splits = json.loads((project / "splits" / f"{name}.json").read_text())
    assert {p: len(v["folds"]) for p, v in splits["protocols"].items()} == {"speaker": speakers,
                                                                          "dialogue": speakers}


def test_a_module_name_that_does_not_match_its_path_fails(tmp_path: Path) -> None:
    module_path, _, _ = add_a_corpus(readme())
    renamed = readme().replace(f"# {module_path}", f"# {module_path.replace('.py', '_renamed.py')}", 1)
    project, name = make_project(tmp_path, renamed, ["utt_fusion"])
    out = run(project, str(BIN / "affectflow"), "prepare", name, ok=False)
    assert "cannot import" in out and module_path.removesuffix(".py").replace("/", ".") in out


def test_add_a_corpus_runs_dvc_repro_to_the_metrics(tmp_path: Path) -> None:
    """The audio-only corpus through the project's own dvc.yaml: only its audio store is extracted, both
    families train on it, the report renders; editing the adapter module re-runs prepare."""
    project, name = make_project(tmp_path, readme(), ["utt_fusion", "ssmm"])
    dvc = str(BIN / "dvc")
    run(project, dvc, "init", "--no-scm", "-q")
    run(project, dvc, "config", "core.analytics", "false")
    run(project, str(BIN / "affectflow"), "stages")  # dvc.yaml for this params.yaml (README, 'Add a corpus')
    run(project, dvc, "repro")
    for model in ("utt_fusion", "ssmm"):
        metrics = json.loads((project / "metrics" / model / f"{name}.json").read_text())
        assert metrics["corpus"] == name and metrics["conditions"]
    assert (project / "features" / name / "compare.h5").is_file()
    assert not (project / "features" / name / "bert.h5").exists()
    assert not (project / "features" / name / "denseface.h5").exists()
    assert (project / "reports" / "results.md").is_file()
    assert "Running stage" not in run(project, dvc, "repro")
    module_path, _, _ = add_a_corpus(readme())
    with open(project / module_path, "a") as fh:
        fh.write("# edited\n")
    assert f"prepare@{name}" in run(project, dvc, "status")


# ------------------------------------------------------------------------------------------- Use a real corpus
TREES = {"iemocap": fx.iemocap_sessions_tree, "meld": fx.meld_tree, "msp_improv": fx.msp_tree,
         "crema_d": fx.crema_tree, "ravdess": fx.ravdess_tree}


@pytest.mark.parametrize("block", range(len(blocks(section(readme(), "Use a real corpus"), "yaml"))))
def test_use_a_real_corpus_entries_prepare_and_split(block: int, tmp_path: Path) -> None:
    """Each entry of the block, root pointed at a generated tree of its release, through `affectflow prepare` and
    `affectflow split` in a project whose params.yaml holds the entry as written (plus tiny training settings)."""
    corpora = yaml.safe_load(blocks(section(readme(), "Use a real corpus"), "yaml")[block])["corpora"]
    written = {name: dict(entry) for name, entry in corpora.items()}
    for name, entry in corpora.items():
        entry["root"] = str(TREES[entry["adapter"]](tmp_path / f"corpus-{name}"))
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(corpora, ["utt_fusion"]), sort_keys=False))
    for name in corpora:
        run(project, str(BIN / "affectflow"), "prepare", name)
        run(project, str(BIN / "affectflow"), "split", name)
        splits = json.loads((project / "splits" / f"{name}.json").read_text())
        assert {"speaker", "dialogue"} <= set(splits["protocols"])
        for protocol, settings in (written[name].get("splits") or {}).items():
            assert splits["protocols"][protocol]["kind"] == settings["protocol"]


def test_cross_corpus_example_passes_the_schema_and_its_mappings_fit_the_adapters() -> None:
    """The README's IEMOCAP -> MSP-IMPROV and CREMA-D -> RAVDESS block, in the project's params: the whole-params
    check, and every mapping's labels are labels of its corpus (the adapter's label set) onto the shared classes."""
    from pipeline import corpora as registry
    from pipeline.cross_corpus import check_mapping
    from pipeline.schema import check_params

    block = yaml.safe_load(blocks(section(readme(), "Cross-corpus (cross-culture) evaluation"), "yaml")[0])
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(block)
    params["report"]["cross"]["protocols"] = list(block["cross_corpus"])
    check_params(params)
    for name, cfg in block["cross_corpus"].items():
        for corpus in [*cfg["sources"], cfg["target"]]:
            entry = block["corpora"][corpus]
            module = registry.adapter(entry["adapter"])
            label_set = (entry.get("options") or {}).get("label_set") or module.DEFAULTS["label_set"]
            check_mapping(name, corpus, cfg["mapping"][corpus], module.LABEL_SETS[label_set]["classes"],
                          cfg["classes"])


def test_layout_section_names_every_module_and_package() -> None:
    """README's layout lists every module and subpackage of pipeline/ and models/ (a moved file shows up here)."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Layout"):text.index("### The manifest")]
    entries = [p for root in ("pipeline", "models") for p in sorted((REPO / root).iterdir())
               if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()]
    assert entries, "no modules found"
    missing = [f"{p.parent.name}/{p.name}" for p in entries
               if (p.name + "/" if p.is_dir() else p.name) not in block]
    assert missing == [], f"README's layout section does not name {missing}"
