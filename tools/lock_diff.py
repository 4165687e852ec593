"""Which stage outputs changed between two versions of dvc.lock: the check that a refactor changed no number.

Usage: `python tools/lock_diff.py OLD [NEW]`, each a git revision (its dvc.lock) or a path to a lock file; NEW
defaults to the working tree's dvc.lock. Prints one line per output whose hash differs, appeared or disappeared,
then a count; exits 1 when any output differs. Dependencies are not compared: code moving between modules changes
them by design, and what matters is whether the bytes a stage wrote are the same.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def read_lock(version: str) -> dict[str, Any]:
    path = Path(version)
    if path.is_file():
        return yaml.safe_load(path.read_text())
    text = subprocess.run(["git", "show", f"{version}:dvc.lock"], check=True, capture_output=True, text=True).stdout
    return yaml.safe_load(text)


def output_hashes(lock: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(stage, output path) -> md5 (a directory's hash ends in .dir)."""
    return {(stage, out["path"]): str(out.get("md5") or out.get("hash") or "")
            for stage, entry in (lock.get("stages") or {}).items() for out in entry.get("outs") or []}


def compare(old: dict[tuple[str, str], str], new: dict[tuple[str, str], str]) -> list[str]:
    lines = []
    for key in sorted(old.keys() | new.keys()):
        stage, path = key
        if key not in new:
            lines.append(f"gone     {stage}: {path}")
        elif key not in old:
            lines.append(f"new      {stage}: {path}")
        elif old[key] != new[key]:
            lines.append(f"changed  {stage}: {path} ({old[key]} -> {new[key]})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="git revision or lock file")
    parser.add_argument("new", nargs="?", default="dvc.lock", help="git revision or lock file (default: dvc.lock)")
    args = parser.parse_args(argv)
    old, new = output_hashes(read_lock(args.old)), output_hashes(read_lock(args.new))
    lines = compare(old, new)
    print("\n".join(lines))
    same = sum(1 for key in old.keys() & new.keys() if old[key] == new[key])
    print(f"{same} outputs identical, {len(lines)} differ ({args.old} -> {args.new})")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
