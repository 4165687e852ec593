"""Run `dvc repro` and print each stage's wall time, CPU time and peak RSS as a markdown table.

Usage: `python tools/stage_times.py [--log FILE] [-- DVC REPRO ARGS ...]`, e.g.
`python tools/stage_times.py --log /tmp/demo.log -- -f` for every stage from scratch. `--parse FILE` reads an
earlier log instead of running anything.

A stage's wall time runs from DVC's "Running stage" line to the next one (DVC's own hashing included); its CPU time
and peak RSS come from the `stage cost:` line that every `affectflow` stage command logs when it ends
(`pipeline/cli.py`: the process and the workers it waited for). The load average is printed at the start and end:
wall times taken on a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RUNNING = re.compile(r"Running stage '([^']+)'")
COST = re.compile(r"stage cost: \S+ ([\d.]+) s wall, ([\d.]+) s CPU, peak RSS ([\d.]+) GB")
STAMP = re.compile(r"^@(\d+\.\d+) ")


@dataclass
class StageTime:
    name: str
    started: float
    wall_s: float = 0.0
    cpu_s: float | None = None
    peak_gb: float | None = None


def parse(lines: list[str], finished: float | None = None) -> list[StageTime]:
    """Stages from a log whose lines start with `@<unix time> ` (what `run` writes)."""
    stages: list[StageTime] = []
    last = 0.0
    for line in lines:
        stamp = STAMP.match(line)
        if not stamp:
            continue
        last = float(stamp.group(1))
        if running := RUNNING.search(line):
            if stages:
                stages[-1].wall_s = last - stages[-1].started
            stages.append(StageTime(running.group(1), last))
        elif (cost := COST.search(line)) and stages:
            stages[-1].cpu_s, stages[-1].peak_gb = float(cost.group(2)), float(cost.group(3))
    if stages:
        stages[-1].wall_s = (finished or last) - stages[-1].started
    return stages


def table(stages: list[StageTime]) -> str:
    rows = ["| stage | wall s | CPU s | peak RSS GB |", "|---|---:|---:|---:|"]
    for stage in stages:
        cpu = f"{stage.cpu_s:.1f}" if stage.cpu_s is not None else "-"
        peak = f"{stage.peak_gb:.2f}" if stage.peak_gb is not None else "-"
        rows.append(f"| {stage.name} | {stage.wall_s:.1f} | {cpu} | {peak} |")
    wall = sum(s.wall_s for s in stages)
    cpu_total = sum(s.cpu_s or 0.0 for s in stages)
    rows.append(f"| **all {len(stages)} stages** | {wall:.1f} | {cpu_total:.1f} | |")
    return "\n".join(rows)


def run(dvc_args: list[str], log_path: Path) -> tuple[list[str], float, int]:
    """`dvc repro` with every output line stamped and echoed; returns the lines, the end time, the exit code."""
    command = [str(Path(sys.executable).with_name("dvc")), "repro", *dvc_args]
    lines: list[str] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)  # `make demo` logs to .dvc/tmp/, absent in a fresh clone
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = f"@{time.time():.3f} {raw.rstrip()}"
            lines.append(line)
            log.write(line + "\n")
            log.flush()
            print(raw, end="", flush=True)
    return lines, time.time(), proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=Path("stage_times.log"), help="where the stamped log goes")
    parser.add_argument("--parse", type=Path, help="read this stamped log instead of running dvc repro")
    parser.add_argument("dvc_args", nargs="*", help="passed to `dvc repro` (after --)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.parse:
        lines, finished, code = args.parse.read_text().splitlines(), None, 0
    else:
        lines, finished, code = run(args.dvc_args, args.log)
    print(f"\nload average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(table(parse(lines, finished)))
    return code


if __name__ == "__main__":
    sys.exit(main())
