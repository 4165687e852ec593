"""Bad configuration and bad command lines, each run through `affectflow` in a subprocess: one exact line
`affectflow: error: <what> (<where>) - <how to fix>`, exit code 2, no traceback, and every earlier output of the
project byte-for-byte as it was (nothing written, nothing deleted, nothing outside the project).

The project of each case is the repository's own params.yaml with one edit, next to "earlier outputs" (a manifest,
a store, a metrics file, a checkpoint) that a failed command must leave alone. Cases that fail at validation need
no real stores: the check of the whole params file runs before any stage opens anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.manifest import CorpusInfo, Segment, Utterance, write_manifest

ROOT = Path(__file__).resolve().parents[2]
REPO_PARAMS = (ROOT / "params.yaml").read_text()

EARLIER = {
    "data/demo/manifest.jsonl": b'{"earlier": "manifest"}\n',
    "features/demo/compare.h5": b"an earlier store, not HDF5: a stage that opened it would fail differently",
    "metrics/utt_fusion/demo.json": b'{"earlier": "metrics"}\n',
    "checkpoints/mmgcn/demo/fold01_seed0.pt": b"earlier checkpoint",
}


def run_affectflow(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_project(tmp_path: Path, params: dict[str, Any] | str | bytes) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    text = params if isinstance(params, (str, bytes)) else yaml.safe_dump(params, sort_keys=False)
    (project / "params.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    for rel, data in EARLIER.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_bytes(data)
    return project


def assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr == expected + "\n", result.stderr


def params() -> dict[str, Any]:
    return yaml.safe_load(REPO_PARAMS)


@dataclass
class Case:
    """One bad input: an edit of the repository's params (or its text), the command, the exact line expected."""

    name: str
    edit: Callable[[dict[str, Any]], None] | None
    argv: tuple[str, ...]
    line: str
    text_edit: Callable[[str], str | bytes] | None = None
    at: str | None = None  # the params line the message names: its start (after indentation, or from `^`)


def _rename(block: dict[str, Any], old: str, new: str) -> None:
    block[new] = block.pop(old)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = p
        for part in parents:
            node = node[part]
        node[leaf] = value

    return edit


def _line_of(text: str, start: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if line.startswith(start))


def _line_at(text: str, at: str) -> int:
    """The one line of `text` that starts with `at` after its indentation (or, for `^...`, as written); `at#N`:
    the N-th of several such lines (params.yaml has two demo corpora, each with its `options:`)."""
    at, _, nth = at.partition("#")
    lines = [i for i, line in enumerate(text.splitlines(), start=1)
             if (line.startswith(at[1:]) if at.startswith("^") else line.lstrip().startswith(at))]
    if nth:
        return lines[int(nth) - 1]
    assert len(lines) == 1, (at, lines)
    return lines[0]


E = "affectflow: error: "
CASES = [
    Case("typo in a corpus's model override (epochs_constnat)",
         lambda p: _rename(p["corpora"]["demo"]["train"]["models"]["utt_fusion"], "epochs_constant", "epochs_constnat"),
         ("train", "utt_fusion", "demo"),
         E + "unknown key 'epochs_constnat' (params.yaml: corpora.demo.train.models.utt_fusion.epochs_constnat) - "
             "did you mean 'epochs_constant'?",
         at='epochs_constnat:'),
    Case("typo in a model's hyper-parameter (dropuot)",
         lambda p: _rename(p["models"]["utt_fusion"], "dropout", "dropuot"), ("train", "utt_fusion", "demo"),
         E + "unknown key 'dropuot' (params.yaml: models.utt_fusion.dropuot) - did you mean 'dropout'?",
         at='dropuot:'),
    Case("workers: two", _set("corpora.demo.train.workers", "two"), ("prepare", "demo"),
         E + "workers must be an integer >= 1, got 'two' (params.yaml: corpora.demo.train.workers) - e.g. workers: 1",
         at='workers: two'),
    Case("max_failure_rate: '5%'", _set("extractors.compare.max_failure_rate", "5%"), ("extract", "demo", "compare"),
         E + "max_failure_rate must be a number >= 0 and <= 1, got '5%' "
             "(params.yaml: extractors.compare.max_failure_rate) - e.g. max_failure_rate: 0.05",
         at="max_failure_rate: 5%"),
    Case("max_failure_rate above 1", _set("extractors.bert.max_failure_rate", 5), ("extract", "demo", "bert"),
         E + "max_failure_rate must be >= 0 and <= 1, got 5.0 (params.yaml: extractors.bert.max_failure_rate) - "
             "e.g. max_failure_rate: 0.05",
         at='max_failure_rate: 5'),
    Case("seeds: 0", _set("train.seeds", 0), ("split", "demo"),
         E + "seeds must be a list of integers >= 0, got 0 (params.yaml: train.seeds) - e.g. seeds: [0, 1, 2]",
         at='seeds: 0'),
    Case("device: gpu", _set("train.device", "gpu"), ("train", "mmgcn", "demo"),
         E + "device must be auto, cpu, cuda, cuda:<n> or mps, got 'gpu' (params.yaml: train.device) - "
             "e.g. device: auto",
         at='device: gpu'),
    Case("root: null", _set("corpora.demo.root", None), ("prepare", "demo"),
         E + "root must be a string, got null (params.yaml: corpora.demo.root) - "
             "e.g. root: /data/IEMOCAP_full_release",
         at='root: null'),
    Case("a corpus without root", lambda p: p["corpora"]["demo"].pop("root"), ("prepare", "demo"),
         E + "key 'root' is missing (params.yaml: corpora.demo.root) - add root: /data/IEMOCAP_full_release",
         at='^  demo:'),
    Case("a bad model hyper-parameter fails before any store is read (odd MMGCN hidden size)",
         _set("models.mmgcn.hidden", 201), ("train", "mmgcn", "demo"),
         E + "hidden must be even (the BiLSTM halves it), got 201 (params.yaml: models.mmgcn.hidden) - "
             "e.g. hidden: 200",
         at='hidden: 201'),
    Case("a dropout outside [0, 1)", _set("models.mmin.dropout", 1.5), ("train", "mmin", "demo"),
         E + "dropout must be >= 0 and < 1, got 1.5 (params.yaml: models.mmin.dropout) - e.g. dropout: 0.3",
         at='dropout: 1.5'),
    Case("unknown key in a section, with the closest valid key", lambda p: _rename(p["report"], "corpora", "corpra"),
         ("report",), E + "unknown key 'corpra' (params.yaml: report.corpra) - did you mean 'corpora'?",
         at='corpra:'),
    Case("unknown section", lambda p: _rename(p, "train", "trian"), ("prepare", "demo"),
         E + "unknown key 'trian' (params.yaml: trian) - did you mean 'train'?",
         at='trian:'),
    Case("unknown model family", _set("models.mmgcn.family", "mmgnc"), ("train", "mmgcn", "demo"),
         E + "family must be one of utt_fusion, mmin, mmgcn, ssmm, culture, got 'mmgnc' (params.yaml: "
             "models.mmgcn.family) - "
             "did you mean mmgcn?",
         at='family: mmgnc'),
    Case("a choice misspelt", _set("extractors.bert.executor", "rey"), ("extract", "demo", "bert"),
         E + "executor must be one of local, ray, got 'rey' (params.yaml: extractors.bert.executor) - "
             "did you mean ray?",
         at='executor: rey'),
    Case("a corpus's extractor config misspelt", _set("corpora.demo.extractors.bert.config", {"modle": "x"}),
         ("extract", "demo", "bert"),
         E + "unknown key 'modle' (params.yaml: corpora.demo.extractors.bert.config.modle) - did you mean 'model'?",
         at='modle:'),
    Case("a Denseface set's optimiser key misspelt",
         lambda p: _rename(p["denseface"]["sets"]["demo"]["optim"], "epochs", "epoch"), ("train-denseface", "demo"),
         E + "unknown key 'epoch' (params.yaml: denseface.sets.demo.optim.epoch) - did you mean 'epochs'?",
         at='epoch:'),
    Case("a labelled fraction of 0", _set("splits.labelled_fractions", [0, 0.5]), ("split", "demo"),
         E + "labelled_fractions must be > 0 and <= 1, got 0.0 (params.yaml: splits.labelled_fractions) - "
             "e.g. labelled_fractions: [0.05, 0.1, 0.3, 1.0]",
         at='^  labelled_fractions:'),
    Case("a corpus modality that does not exist", _set("corpora.demo.modalities", ["audio", "video"]),
         ("prepare", "demo"),
         E + "modalities must be one of audio, visual, text, got 'video' (params.yaml: corpora.demo.modalities[1]) - "
             "use one of audio, visual, text",
         at='- video'),
    Case("extract names an extractor that is not defined", _set("extract", ["compare", "bret"]),
         ("extract", "demo", "compare"),
         E + "extract names 'bret', which `extractors` does not define (params.yaml: extract[1]) - "
             "did you mean 'bert'?",
         at='- bret'),
    Case("train_models names a model that is not defined", _set("train_models", ["utt_fusion", "mmgnc"]),
         ("train", "utt_fusion", "demo"),
         E + "train_models names 'mmgnc', which `models` does not define (params.yaml: train_models[1]) - "
             "did you mean 'mmgcn'?",
         at='- mmgnc'),
    Case("a report folder outside the project", _set("report.out_dir", "../reports"), ("report",),
         E + "out_dir '../reports' leaves the project; outputs are written inside it (params.yaml: report.out_dir) - "
             "give a relative path such as reports",
         at='out_dir: ../reports'),
    Case("a corpus name with a slash on the command line", None, ("prepare", "../demo"),
         E + "corpus name '../demo' may hold only letters, digits, _ and - (command line: corpus) - "
             "give the name of an entry under corpora in params.yaml"),
    Case("an unknown corpus on the command line", None, ("prepare", "demoo"),
         E + "key 'corpora.demoo' is missing: no corpus 'demoo' (params.yaml) - did you mean 'demo'?"),
    Case("an unknown model on the command line", None, ("train", "mmgnc", "demo"),
         E + "key 'models.mmgnc' is missing: no model 'mmgnc' (params.yaml) - did you mean 'mmgcn'?"),
    Case("a YAML syntax error names its line", None, ("prepare", "demo"),
         E + "not valid YAML: mapping values are not allowed here "
             f"(params.yaml line {len(REPO_PARAMS.splitlines()) + 2}) - fix the YAML syntax there (indentation, "
             "brackets, quotes, a colon after each key)",
         text_edit=lambda text: text + "zzz: 1\n   yyy: 2\n"),
    Case("a key written twice", None, ("prepare", "demo"),
         E + "not valid YAML: key 'train_models' written twice "
             f"(first on line {_line_of(REPO_PARAMS, 'train_models:')}) "
             f"(params.yaml line {len(REPO_PARAMS.splitlines()) + 1}) - keep one of the two",
         text_edit=lambda text: text + "train_models: [mmgcn]\n"),
    Case("an empty params file", None, ("prepare", "demo"),
         E + "the top level must be a mapping of sections (params.yaml) - start from the project's params.yaml",
         text_edit=lambda text: ""),
    Case("a params file that is not UTF-8", None, ("prepare", "demo"),
         E + f"not UTF-8 text (byte 0xff at offset {len(REPO_PARAMS.encode()) + 7}) (params.yaml) - "
             "save the file as UTF-8",
         text_edit=lambda text: text.encode() + b"zzz: 'a\xff'\n"),
    Case("adapter options that are not a mapping", _set("corpora.demo.options", ["seed", 1]), ("prepare", "demo"),
         E + "options must be a mapping, got ['seed', 1] (params.yaml: corpora.demo.options) - e.g. options: {}",
         at='^    options:#1'),
    Case("a Denseface depth that does not fit its blocks", _set("denseface.train.network.depth", 99),
         ("train-denseface", "demo"),
         E + "depth 99 does not fit 3 blocks: depth - 4 must be a positive multiple of 6 "
             "(params.yaml: denseface.train.network.depth) - e.g. depth: 100 (or 40, 250)",
         at='depth: 99'),
    Case("a split protocol's validation rule misspelt", _set("corpora.demo.splits.speaker.val", "partnr"),
         ("split", "demo"),
         E + "val must be one of partner, next, official or a share in (0, 1), got 'partnr' "
             "(params.yaml: corpora.demo.splits.speaker.val) - did you mean 'partner'?",
         at='val: partnr'),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config_gives_one_line_and_changes_nothing(tmp_path: Path, case: Case) -> None:
    if case.text_edit is not None:
        project = make_project(tmp_path, case.text_edit(REPO_PARAMS))
    else:
        p = params()
        if case.edit is not None:
            case.edit(p)
        project = make_project(tmp_path, p)
    expected = case.line
    if case.at is not None:
        line = _line_at((project / "params.yaml").read_text(), case.at)
        expected = expected.replace("(params.yaml: ", f"(params.yaml line {line}: ")
    before = snapshot(tmp_path)
    assert_one_line(run_affectflow(project, *case.argv), expected)
    assert snapshot(tmp_path) == before


def test_a_corpus_key_that_is_an_absolute_path_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    p = params()
    p["corpora"][str(outside)] = p["corpora"]["demo"]
    project = make_project(tmp_path, p)
    before = snapshot(tmp_path)
    for argv in (("prepare", "demo"), ("prepare", str(outside))):
        result = run_affectflow(project, *argv)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    line = _line_at((project / "params.yaml").read_text(), f"^  {outside}:")
    assert_one_line(run_affectflow(project, "prepare", "demo"),
                    E + f"name {str(outside)!r} may hold only letters, digits, _ and - (it becomes part of output "
                        f"paths) (params.yaml line {line}: corpora.{outside}) - rename it with letters, digits, "
                        "_ and - only")
    assert snapshot(tmp_path) == before and not outside.exists()


def test_a_generated_corpus_root_outside_the_project_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "raw"
    p = params()
    p["corpora"]["demo"]["root"] = str(outside)
    project = make_project(tmp_path, p)
    before = snapshot(tmp_path)
    assert_one_line(run_affectflow(project, "prepare", "demo"),
                    E + f"the root of a generated corpus is an output and must stay inside the project, got "
                        f"{str(outside)!r} (params.yaml: corpora.demo.root) - give a relative path such as "
                        "data/demo/raw")
    assert snapshot(tmp_path) == before and not outside.parent.exists()


# ------------------------------------------------------------------- errors of the stages, through the CLI

def _tiny_manifest(project: Path, corpus: str) -> Path:
    utts = [Utterance(utt_id=f"s{s}_u{i}", corpus=corpus, speaker=f"spk{s}", session=f"ses{s // 2}",
                      audio=Segment(f"s{s}_u{i}.wav"), label=["ang", "neu"][i % 2]) for s in range(4) for i in range(3)]
    path = project / "data" / corpus / "manifest.jsonl"
    write_manifest(path, utts, ["ang", "neu"])
    CorpusInfo(corpus, ["ang", "neu"], "demo").write(path.parent / "corpus.json")
    return path


def _lab_corpus_params(**corpus: Any) -> dict[str, Any]:
    p = params()
    p["corpora"]["lab"] = {"adapter": "ravdess", "root": "raw",
                           "splits": {"speaker": {"protocol": "speaker_folds", "val": "next"}}, **corpus}
    return p


def test_a_manifest_line_with_a_label_outside_the_class_list_fails_the_split_in_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, _lab_corpus_params())
    path = _tiny_manifest(project, "lab")
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace('"label":"ang"', '"label":"joy"').replace('"label":"neu"', '"label":"joy"')
    path.write_text("".join(lines))
    before = snapshot(tmp_path)
    assert_one_line(run_affectflow(project, "split", "lab"),
                    E + "data/lab/manifest.jsonl:line 5 field 'label': 'joy' is not in the class list ['ang', 'neu']")
    assert snapshot(tmp_path) == before and not (project / "splits").exists()


def test_a_duplicate_utterance_id_fails_the_split_in_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, _lab_corpus_params())
    path = _tiny_manifest(project, "lab")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[0]]))
    before = snapshot(tmp_path)
    result = run_affectflow(project, "split", "lab")
    assert_one_line(result, E + "data/lab/manifest.jsonl:line 13 field 'utt_id': duplicate id 's0_u0' "
                                "(first on line 1)")
    assert snapshot(tmp_path) == before


def test_an_adapter_error_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path, _lab_corpus_params())
    (project / "raw" / "Actor_01").mkdir(parents=True)
    (project / "raw" / "Actor_01" / "not-a-ravdess-name.wav").write_bytes(b"RIFF")
    before = snapshot(tmp_path)
    assert_one_line(run_affectflow(project, "prepare", "lab"),
                    E + "raw/Actor_01/not-a-ravdess-name.wav field 'file name': 'not-a-ravdess-name.wav' is not a "
                        "RAVDESS file name (MM-VV-EE-II-SS-RR-AA, modality 03 as .wav, 01/02 as .mp4); set "
                        "bad_names: skip to list and ignore such files")
    assert snapshot(tmp_path) == before and not (project / "data" / "lab").exists()


def test_an_unknown_adapter_option_fails_in_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path, _lab_corpus_params(options={"bad_name": "skip"}))
    (project / "raw").mkdir()
    before = snapshot(tmp_path)
    result = run_affectflow(project, "prepare", "lab")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(E + "ravdess: unknown option") and "bad_name" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert snapshot(tmp_path) == before and not (project / "data" / "lab").exists()


def test_a_missing_corpus_root_names_the_params_key(tmp_path: Path) -> None:
    project = make_project(tmp_path, _lab_corpus_params(root="nowhere"))
    before = snapshot(tmp_path)
    assert_one_line(run_affectflow(project, "prepare", "lab"),
                    E + "the corpus root 'nowhere' does not exist or is not a directory (params.yaml: "
                        "corpora.lab.root) - point it at the corpus as released (see README, 'Use a real corpus')")
    assert snapshot(tmp_path) == before


def test_a_missing_params_file_and_a_missing_manifest(tmp_path: Path) -> None:
    assert_one_line(run_affectflow(tmp_path, "prepare", "demo"),
                    E + "params.yaml not found (params.yaml) - run affectflow from the project root (the folder "
                        "with dvc.yaml), or pass --params")
    project = make_project(tmp_path, params())
    (project / "data" / "demo" / "manifest.jsonl").unlink()
    assert_one_line(run_affectflow(project, "split", "demo"),
                    E + "No such file or directory (data/demo/corpus.json) - run the stage that writes it first "
                        "(dvc repro), or check the path")


def test_debug_shows_the_traceback_and_still_exits_2(tmp_path: Path) -> None:
    p = params()
    p["train"]["seeds"] = 0
    project = make_project(tmp_path, p)
    for argv in (("--debug", "split", "demo"), ("split", "demo", "--debug")):
        result = run_affectflow(project, *argv)
        assert result.returncode == 2
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.splitlines()[-1].startswith(E + "seeds must be a list of integers")


def test_the_repository_params_pass_and_version_prints(tmp_path: Path) -> None:
    from pipeline.params import load_params
    from pipeline.schema import check_params

    checked = check_params(load_params(ROOT / "params.yaml"))
    assert checked.models[("demo", "mmgcn")].folds == [0, 1, 2, 3]  # the demo's override, merged
    assert checked.models[("demo", "utt_fusion")].lr == 1.0e-3 and checked.models[("demo", "mmin")].lr == 1.0e-3
    assert type(checked.extractor_configs[("demo", "bert")]).__name__ == "BertConfig"
    result = run_affectflow(tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("affectflow ")
