"""Wall time and peak memory of `affectflow prepare` on a small corpus against the adapter function alone.

One run generates a 12-clip RAVDESS-layout corpus (audio-only WAVs, `Actor_NN/03-01-EE-II-SS-RR-AA.wav`, 1 s each)
in a temporary project whose params.yaml is the repository's with that corpus added, then measures, best of
--repeat each, interleaved:
  python    `python -c pass`: the interpreter's own floor;
  adapter   a child process that imports pipeline.corpora.ravdess and calls its `prepare(root, {})`;
  cli       a child process running `affectflow prepare bench` (the console script): params loaded and checked,
            the adapter run, manifest, corpus.json and stats.json written;
and, in this process, the adapter call alone (module already imported). Peak RSS is the child's own maximum
resident set (getrusage via wait4). Targets: cli <= 1.5 s and <= 300 MB (it was 4.5 s and 930 MB when every
command imported torch). Timings on a shared machine move with its load, printed alongside; compare ratios.

    python benchmarks/bench_prepare.py [--clips 12] [--repeat 5] [--code OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import array
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 16000
TARGET_SECONDS, TARGET_MB = 1.5, 300.0


def make_corpus(root: Path, clips: int) -> None:
    """`clips` audio-only RAVDESS files over two actors, a second of a tone each (the standard library's wave
    module: this process stays small, since a child's peak RSS counts the image it was forked from)."""
    rng = random.Random(0)
    for i in range(clips):
        actor = 1 + i % 2
        emotion, statement, repetition = 1 + (i // 2) % 8, 1 + (i // 16) % 2, 1 + (i // 32) % 2
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"03-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
        pitch = rng.uniform(100, 300)
        samples = array.array("h", (int(6000 * math.sin(2 * math.pi * pitch * k / RATE) + rng.gauss(0, 300))
                                    for k in range(RATE)))
        with wave.open(str(folder / name), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(samples.tobytes())


def run_child(argv: list[str], cwd: Path, code: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process running the checkout `code`, which must succeed."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout the children run (default: this one), to compare before and after")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        raw = project / "raw"
        make_corpus(raw, args.clips)
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["corpora"]["bench"] = {"adapter": "ravdess", "root": "raw", "modalities": ["audio"]}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

        script = Path(sys.executable).with_name("affectflow")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "adapter": [sys.executable, "-c", "from pathlib import Path; from pipeline.corpora.ravdess import prepare; "
                        f"print(len(prepare(Path({str(raw)!r}), {{}}).utterances))"],
            "cli": [*cli, "prepare", "bench"],
        }
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                wall, rss = run_child(argv, project, args.code.resolve())
                old = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(old[0], wall), min(old[1], rss))

        from pipeline.corpora.ravdess import prepare

        calls = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            utterances = prepare(raw, {}).utterances
            calls.append(time.perf_counter() - start)
        assert len(utterances) == args.clips, len(utterances)
        written = sum(1 for _ in open(project / "data" / "bench" / "manifest.jsonl"))

    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    load = os.getloadavg()
    print(f"affectflow prepare on a {args.clips}-clip corpus ({written} utterances), best of {args.repeat}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"  {'':10s} {'wall s':>8s} {'peak MB':>8s}")
    for name, (wall, rss) in best.items():
        print(f"  {name:10s} {wall:8.3f} {rss:8.1f}")
    print(f"  {'call only':10s} {min(calls):8.4f} {'':>8s}   (the adapter function in this process, imported)")
    print(f"  (a child's peak RSS counts the image it was forked from: this process, {parent_mb:.1f} MB at most)")
    cli_wall, cli_rss = best["cli"]
    ad_wall, ad_rss = best["adapter"]
    print(f"ratios: cli / adapter process  {cli_wall / ad_wall:.2f}x time, {cli_rss / ad_rss:.2f}x memory; "
          f"cli - adapter process  {cli_wall - ad_wall:+.3f} s, {cli_rss - ad_rss:+.1f} MB")
    ok = cli_wall <= TARGET_SECONDS and cli_rss <= TARGET_MB
    print(f"targets: cli <= {TARGET_SECONDS} s and <= {TARGET_MB:.0f} MB: {'met' if ok else 'NOT met'} "
          f"({cli_wall:.2f} s, {cli_rss:.0f} MB)")


if __name__ == "__main__":
    main()
