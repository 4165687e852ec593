"""tools/stage_times.py reads DVC's log and the stages' cost lines; tools/lock_diff.py finds changed outputs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.tool_modules import load_tool


def test_stage_times_reads_stamped_dvc_log() -> None:
    tool = load_tool("stage_times")
    log = [
        "@100.000 Running stage 'prepare@demo':",
        "@100.100 > affectflow prepare demo",
        "@130.000 2026-12-07 22:11:56,592 INFO affectflow: stage cost: prepare 29.5 s wall, 41.2 s CPU, "
        "peak RSS 0.31 GB",
        "@131.000 Running stage 'train@utt_fusion-demo':",
        "@140.000 Updating lock file 'dvc.lock'",
        "@141.500 Use `dvc push` to send your updates to remote storage.",
    ]
    stages = tool.parse(log, finished=142.0)
    assert [s.name for s in stages] == ["prepare@demo", "train@utt_fusion-demo"]
    assert stages[0].wall_s == pytest.approx(31.0) and stages[0].cpu_s == pytest.approx(41.2)
    assert stages[0].peak_gb == pytest.approx(0.31)
    assert stages[1].wall_s == pytest.approx(11.0) and stages[1].cpu_s is None  # no cost line: it failed early
    table = tool.table(stages)
    assert "| prepare@demo | 31.0 | 41.2 | 0.31 |" in table
    assert "| **all 2 stages** | 42.0 | 41.2 | |" in table


def test_stage_times_creates_the_log_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`make demo` logs to .dvc/tmp/stage_times.log, and a fresh clone has no .dvc/tmp/ (git ignores it)."""
    tool = load_tool("stage_times")
    log = tmp_path / ".dvc" / "tmp" / "stage_times.log"
    lines, _, code = tool.run(["--help"], log)  # `dvc repro --help`: runs nothing
    assert code == 0 and log.read_text().splitlines() == lines and any("usage" in line for line in lines)


def test_cli_logs_the_cost_line_that_stage_times_reads(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.cli import log_cost

    with caplog.at_level(logging.INFO, logger="affectflow"):
        log_cost("split", 1.25)
    line = "@5.000 " + caplog.records[-1].getMessage()
    stages = load_tool("stage_times").parse(["@4.000 Running stage 'split@demo':", line])
    assert stages[0].cpu_s is not None and stages[0].cpu_s > 0 and stages[0].peak_gb is not None


def test_lock_diff_names_changed_new_and_gone_outputs(tmp_path: Path) -> None:
    tool = load_tool("lock_diff")
    old = tmp_path / "old.lock"
    new = tmp_path / "new.lock"
    old.write_text("schema: '2.0'\nstages:\n  a:\n    cmd: x\n    outs:\n    - path: m.json\n      md5: 1\n"
                   "    - path: c\n      md5: 2.dir\n  b:\n    cmd: y\n    outs:\n    - path: n.json\n      md5: 3\n")
    new.write_text("schema: '2.0'\nstages:\n  a:\n    cmd: x2\n    outs:\n    - path: m.json\n      md5: 1\n"
                   "    - path: c\n      md5: 9.dir\n  d:\n    cmd: y\n    outs:\n    - path: o.json\n      md5: 4\n")
    lines = tool.compare(tool.output_hashes(tool.read_lock(str(old))), tool.output_hashes(tool.read_lock(str(new))))
    assert lines == ["changed  a: c (2.dir -> 9.dir)", "gone     b: n.json", "new      d: o.json"]
    assert tool.main([str(old), str(old)]) == 0 and tool.main([str(old), str(new)]) == 1
