"""`dvc exp run -S` over a tiny project: a two-point learning-rate sweep of utt_fusion (one point
queued and run by `dvc queue start`, one run in the workspace) on the audio-only tones corpus of
tests/test_audio_only.py, and `dvc exp show --json` listing both experiments with the dvclive summary
the generated dvc.yaml declares as metrics (issue 24). Also the dvclive files themselves: deterministic, and the
numbers of the metrics JSON."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.tracking import SUMMARY_KEYS
from tests.test_audio_only import BIN, make_project, run

MODEL, CORPUS = "utt_fusion", "tones"
SUMMARY = f"dvclive/{MODEL}/{CORPUS}/metrics.json"
RATES = ("0.003", "0.0003")


def sweep_project(dest: Path) -> Path:
    """The tones project trimmed to utt_fusion, its learning rate left to `models.utt_fusion.lr`, its data stages
    (prepare, extract, split) run and committed in dvc.lock: both experiments, the queued one in its copy of the
    repo too, take those outputs from the shared cache and run the training stage alone, as in a lab's sweep."""
    project = make_project(dest)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train_models"] = [MODEL]
    params["corpora"][CORPUS]["train"]["models"][MODEL].pop("lr")
    params["corpora"][CORPUS]["train"]["models"].pop("ssmm")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], project)
    if not (project / ".dvc").exists():
        run([str(BIN / "dvc"), "init", "-q"], project)
    run([str(BIN / "affectflow"), "stages"], project)
    run([str(BIN / "dvc"), "repro", f"split@{CORPUS}", f"extract@{CORPUS}-compare"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny project"], project)
    return project


def experiments(shown: Any) -> dict[str, dict[str, Any]]:
    """experiment name -> (its params, its metrics files), from `dvc exp show --json` (DVC 3's nested list): the
    named revisions whose summary could be read (the baseline commit has none; the workspace is left out)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if (isinstance(data, dict) and node.get("name") and node.get("rev") != "workspace"
                    and "data" in (data.get("metrics") or {}).get(SUMMARY, {})):
                found[node["name"]] = data
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(shown)
    return found


def wait_for_queue(project: Path, limit_s: float = 900) -> None:
    """Until `dvc queue status` lists nothing queued or running; a failed experiment fails the test."""
    deadline = time.monotonic() + limit_s
    while True:
        status = run([str(BIN / "dvc"), "queue", "status"], project).stdout
        assert "Failed" not in status, f"a queued experiment failed (`dvc queue logs <task>`):\n{status}"
        if not re.search(r"\b(Queued|Running)\b", status):
            return
        assert time.monotonic() < deadline, status
        time.sleep(1)


def test_a_two_point_sweep_lists_both_experiments_with_their_summaries(tmp_path: Path) -> None:
    project = sweep_project(tmp_path / "project")
    target, dvc = f"train@{MODEL}-{CORPUS}", str(BIN / "dvc")
    # the second point first, through the queue (a worker runs it in a copy of the repo), then one in the workspace
    run([dvc, "exp", "run", target, "--queue", "-S", f"models.{MODEL}.lr={RATES[1]}"], project)
    run([dvc, "queue", "start"], project)
    wait_for_queue(project)
    ran = run([dvc, "exp", "run", target, "-S", f"models.{MODEL}.lr={RATES[0]}"], project)
    assert "Running stage 'prepare@tones'" not in ran.stdout and f"Running stage '{target}'" in ran.stdout, ran.stdout
    # the last experiment's files are in the workspace: dvclive's layout, no timestamps
    live = project / "dvclive" / MODEL / CORPUS
    files = {p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file()}
    assert {"metrics.json", "plots/metrics/train_loss.tsv", "plots/metrics/val_ua.tsv",
            "plots/sklearn/confusion/azz.json"} <= files, files
    confusion = json.loads((live / "plots/sklearn/confusion/azz.json").read_text())
    assert {row["actual"] for row in confusion} <= {"low", "mid", "high"}
    assert (live / "plots/metrics/val_ua.tsv").read_text().splitlines()[0] == "step\tval_ua"
    summary = json.loads((live / "metrics.json").read_text())
    full = json.loads((project / f"metrics/{MODEL}/{CORPUS}.json").read_text())["conditions"]["azz"]
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: round(full[k]["mean"], 6) for k in SUMMARY_KEYS}
    assert set(summary) == {*SUMMARY_KEYS, "step"}  # a handful of numbers: a short `dvc metrics show` row

    shown = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], project).stdout)
    exps = experiments(shown)
    rates = {}
    for name, data in exps.items():
        params = data["params"]["params.yaml"]["data"]
        metrics = data["metrics"][SUMMARY]["data"]
        assert set(SUMMARY_KEYS) <= set(metrics), (name, metrics)
        rates[name] = str(params["models"][MODEL]["lr"])
    assert sorted(float(r) for r in rates.values()) == sorted(float(r) for r in RATES), exps.keys()
    table = run([str(BIN / "dvc"), "metrics", "show"], project).stdout
    assert SUMMARY in table and max(len(line) for line in table.splitlines()) < 200, table
    assert "DVC_EXP" not in os.environ  # nothing above leaked into this process
