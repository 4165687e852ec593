"""dvc.yaml is generated (pipeline/stages.py): each stage depends on exactly the code it imports, the committed file
is the generator's output, and a stale one is reported in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import load_params
from pipeline.stages import ENTRY_MODULES, adapter_module, extractor_module, family_module, model_settings, render

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# In one process: what every command imports (the CLI, its parser, its error list), then, in a forked child per
# stage, the stage's own modules; each child prints the project files in sys.modules. Python's import system, not
# the generator's AST walk, decides what is loaded. The parent first imports the heavy third-party libraries the
# stages use (argv[2:]): a library never imports a project module, so the project files each child loads are the
# same, and each child no longer pays torch's import (the probe took 80 s of the suite, 2 s a stage).
PROBE = r"""
import json, os, sys, importlib
root = os.path.realpath(sys.argv[1])
for library in sys.argv[2:]:
    try:
        importlib.import_module(library)
    except ImportError:
        pass
import pipeline.cli as cli
cli.build_parser()
getattr(cli, "_known_errors", lambda: None)()
for line in sys.stdin:
    stage, modules = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for m in modules:
            importlib.import_module(m)
        files = sorted(os.path.relpath(os.path.realpath(f), root) for f in
                       (getattr(mod, "__file__", None) for mod in list(sys.modules.values()))
                       if f and os.path.isabs(f) and os.path.realpath(f).startswith(root + os.sep)
                       and not os.path.realpath(f).startswith(os.path.realpath(sys.prefix) + os.sep))
        os.write(w, json.dumps([stage, files]).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    print(data.decode(), flush=True)
"""


PRELOADED = ("numpy", "scipy", "h5py", "yaml", "tqdm", "torch", "torchvision", "transformers", "sklearn",
             "opensmile", "soundfile", "cv2", "facenet_pytorch", "matplotlib.pyplot", "PIL.Image", "dvclive")


def dvc_deps(root: Path) -> dict[str, list[str]]:
    """Each stage's deps as DVC itself resolves dvc.yaml (templating and slots included)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: [d.def_path for d in s.deps] for s in repo.index.stages}


def uncovered(files: list[str], deps: list[str]) -> list[str]:
    """The project files a stage imported that none of its deps (a file or a folder) covers."""
    return [f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]


def stage_modules(params: dict, stage: str) -> list[str]:
    """The modules `affectflow <command>` of a stage imports beyond the CLI: its entry module and registry entry."""
    group, _, key = stage.partition("@")
    if group == "prepare":
        return [*ENTRY_MODULES["prepare"], adapter_module(params, key)]
    if group == "split":  # the adapter declares the corpus's standard protocols
        return [*ENTRY_MODULES["split"], adapter_module(params, key)]
    if group in ("train-denseface", "report"):
        return list(ENTRY_MODULES[group])
    if group == "extract":
        return [*ENTRY_MODULES["extract"], extractor_module(key.rpartition("-")[2])]
    if group == "extract-face":
        return [*ENTRY_MODULES["extract"], extractor_module(key.rpartition("-")[2])]
    if group == "faces":
        return [*ENTRY_MODULES["faces"], extractor_module("faces")]
    if group == "split-cross":  # a cross-corpus protocol: pipeline/cross_corpus.py through the split stage
        return list(ENTRY_MODULES["split"])
    if group == "train-cross":
        return [*ENTRY_MODULES["train"], "pipeline.cross_training", "models.culture_adv"]
    if group in ("train", "finetune"):
        model, corpus = key.rsplit("-", 1)
        return [*ENTRY_MODULES["train"], family_module(model_settings(params, model, corpus)["family"])]
    raise ValueError(f"no stage group {group!r}")


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    params = load_params(ROOT / "params.yaml")
    # check-stages@<corpus> has no outputs: its one dep (the generator) only says when to compare again
    stages = sorted(s for s in dvc_deps(ROOT) if not s.startswith("check-stages@"))
    modules = {s: stage_modules(params, s) for s in stages}
    distinct = sorted({tuple(m) for m in modules.values()})  # stages of one family or extractor import the same
    lines = "".join(json.dumps([k, list(m)]) + "\n" for k, m in enumerate(distinct))
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), *PRELOADED], input=lines, capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
                         check=True).stdout
    files = {tuple(distinct[k]): found for k, found in map(json.loads, out.splitlines())}
    return {stage: files[tuple(m)] for stage, m in modules.items()}


def test_committed_dvc_yaml_is_the_generators_output() -> None:
    expected = render(load_params(ROOT / "params.yaml"), ROOT)
    assert (ROOT / "dvc.yaml").read_text() == expected, "dvc.yaml is out of date: run `affectflow stages`"


def test_each_stage_depends_on_every_project_module_it_imports(imported: dict[str, list[str]]) -> None:
    deps = dvc_deps(ROOT)
    assert set(imported) == {s for s in deps if not s.startswith("check-stages@")} and len(imported) > 10
    for stage, files in imported.items():
        assert "pipeline/cli.py" in files and len(files) > 5, (stage, files)
        assert uncovered(files, deps[stage]) == [], f"{stage} imports modules it does not depend on"
    # per-extractor and per-family code: the text extractor's modules are deps of the text store alone
    assert "pipeline/extract/text_clean.py" in deps["extract@demo-bert"]
    assert "pipeline/extract/text_clean.py" not in deps["extract@demo-compare"]
    assert "pipeline/extract/face.py" not in deps["extract@demo-bert"]
    assert "models/ssmm.py" in deps["train@ssmm-demo"] and "models/ssmm.py" not in deps["train@utt_fusion-demo"]
    assert "pipeline/corpora/demo.py" in deps["prepare@demo"]
    # `affectflow export`'s handler imports the exporters (and the train stage) when export runs, never in a stage
    assert "pipeline/export_cli.py" in deps["prepare@demo"] and "pipeline/export.py" not in deps["prepare@demo"]
    assert "pipeline/train.py" in deps["train@utt_fusion-demo"]
    # the report cites the training stages' code and params md5s: it is written again whenever they change
    training = [s for s in deps if s.startswith(("train@", "finetune@", "train-cross@"))]
    assert {d for s in training for d in deps[s] if d.endswith(".py")} <= set(deps["report"])
    report_params = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]["params"]
    assert {"train", "models.mmin", "models.culture_adv", "cross_corpus.demo_to_demo_b"} <= set(report_params)
    assert not [s for s in deps if s.startswith(("prepare@", "extract", "faces@")) and "pipeline/train.py" in deps[s]]


def test_the_check_fails_when_a_stage_misses_a_module(imported: dict[str, list[str]]) -> None:
    deps = dvc_deps(ROOT)
    for stage, module in [("extract@demo-bert", "pipeline/extract/text_clean.py"),
                          ("train@mmgcn-demo", "pipeline/store.py"), ("prepare@demo", "pipeline/corpora/demo.py")]:
        assert module in imported[stage]
        cut = [d for d in deps[stage] if d != module]
        assert uncovered(imported[stage], cut) == [module]
    # a folder dep covers the modules under it
    assert uncovered(imported["extract@demo-bert"], ["pipeline", "models"]) == []


def _project(tmp_path: Path) -> Path:
    for name in ("pipeline", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _affectflow(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(cwd)}, timeout=120)


def test_new_corpus_is_reported_then_generated_for_its_modalities(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "mylab").mkdir()
    (project / "mylab" / "emodb.py").write_text("from pipeline.corpora import PreparedCorpus\n\n\n"
                                                "def prepare(root, options):\n    return PreparedCorpus([], [])\n")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["corpora"]["emodb"] = {"adapter": "mylab.emodb", "root": "/data/emodb", "modalities": ["audio"]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    stale = _affectflow(project, "stages", "--check")
    assert stale.returncode == 2
    assert "new stage prepare@emodb" in stale.stderr and "run `affectflow stages`" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1 and "Traceback" not in stale.stderr

    assert _affectflow(project, "stages").returncode == 0
    assert _affectflow(project, "stages", "--check").returncode == 0
    deps = dvc_deps(project)
    assert "mylab/emodb.py" in deps["prepare@emodb"] and "mylab/emodb.py" not in deps["prepare@demo"]
    assert "extract@emodb-compare" in deps and "extract@emodb-bert" not in deps and "faces@emodb" not in deps
    assert "extract-face@emodb-denseface" not in deps
    stores = [d for d in deps["train@utt_fusion-emodb"] if d.startswith("features/")]
    assert set(stores) == {"features/emodb/compare.h5"}  # padded slots repeat an entry
    assert {"features/demo/compare.h5", "features/demo/denseface.h5", "features/demo/bert.h5"} <= \
        set(deps["train@utt_fusion-demo"])
    assert "checkpoints/utt_fusion/demo" in deps["finetune@mmin-demo"]
    assert "finetune@mmin-emodb" not in deps  # MMIN imagines a missing modality: it needs two
    assert not any("root" in p for p in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
                   ["prepare"]["do"].get("params", []))


def test_dvc_repro_reports_a_stale_dvc_yaml(tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(project), "PATH": f"{BIN}:{os.environ['PATH']}"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["corpora"]["lab"] = {**params["corpora"]["demo"], "root": "/elsewhere"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run([str(BIN / "dvc"), "repro", "check-stages@lab"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "out of date with params.yaml and the code (new stage prepare@lab" in result.stdout + result.stderr
    # any stage `dvc repro` runs checks first: nothing is prepared from a stale dvc.yaml
    result = subprocess.run([str(BIN / "dvc"), "repro", "--single-item", "prepare@demo"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and not (project / "data" / "demo" / "manifest.jsonl").exists()
    assert "affectflow: error: dvc.yaml: out of date" in result.stdout + result.stderr
