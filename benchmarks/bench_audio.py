"""Throughput and memory of the `compare` extractor against a bare openSMILE loop, printed as ratios.

One run generates the clips once (default 200 clips of 3 s, 16 kHz WAV) and measures on them:
  bare      a plain `opensmile.Smile.process_file` loop over both ComParE_2016 levels the extractor needs
            (LowLevelDescriptors and LowLevelDescriptors_Deltas: two calls per clip), in this process;
  bare-1x   the same loop with one Smile reading both levels in one pass (what the extractor runs), for reference;
  ext w=1   `extract_to_store` with the compare extractor, 1 worker (loading, checks, merge, downsampling by 10,
            HDF5 store included), in a child process;
  ext w=N   the same with N workers (pool start-up included), workers forked (the setting proposed for compare)
            and, for comparison, spawned (the executor's default: each worker re-imports opensmile and scipy);
  ext w=N x4 the corpus repeated 4 times (same files, new ids), forked workers: peak RSS must not grow with it.
Peak RSS is the largest sum of RSS over the child and its workers, sampled every 20 ms with psutil, plus the
largest single process from getrusage. Targets: ext w=1 >= 0.9x bare, ext w=N >= 1.7x ext w=1, RSS x4 within 10%.
Timings taken on a shared machine are disturbed by other load; compare ratios from one run only.

    python benchmarks/bench_audio.py [--clips 200] [--seconds 3] [--workers 2] [--repeat 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 16000
CONFIG = {"sample_rate": RATE, "downsample": 10, "min_frames": 10, "silence_dbfs": -90.0, "decode_timeout_s": 120,
          "batch_size": 8}


def make_clips(folder: Path, clips: int, seconds: float) -> list[Path]:
    """Voiced-like clips: a harmonic tone with random pitch and vibrato, an amplitude envelope, and noise."""
    rng = np.random.default_rng(2024)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for i in range(clips):
        f0 = rng.uniform(90, 300) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 6))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) ** 2
        signal = 0.2 * envelope * voice + 0.01 * rng.standard_normal(len(t))
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, np.clip(signal, -1, 1).astype(np.float32), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def bare_loop(paths: list[Path], one_pass: bool) -> tuple[float, float]:
    """Wall and CPU seconds of the loop (Smile objects built before the clock starts)."""
    import opensmile

    if one_pass:
        smiles = [opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level="lld;lld_de")]
    else:
        smiles = [opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=level)
                  for level in (opensmile.FeatureLevel.LowLevelDescriptors,
                                opensmile.FeatureLevel.LowLevelDescriptors_Deltas)]
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        for smile in smiles:
            smile.process_file(str(path))
    return time.perf_counter() - start, time.process_time() - cpu


def child(spec: dict[str, Any]) -> None:
    """Runs in a fresh process: one extraction into a store, timed around `extract_to_store` only."""
    from pipeline.extract.compare import CompareExtractor
    from pipeline.extract.to_store import extract_to_store
    from pipeline.manifest import Segment, Utterance

    root = Path(spec["root"])
    utts = [Utterance(f"{Path(name).stem}_r{r}", "bench", f"spk{i % 10}", f"s{i % 5}", audio=Segment(name))
            for r in range(spec["repeat"]) for i, name in enumerate(spec["files"])]
    extractor = CompareExtractor(CONFIG, root)
    start, cpu = time.perf_counter(), _cpu_seconds()
    summary = extract_to_store(extractor, utts, spec["out"], shard_size=256, progress=False,
                               executor_options={"workers": spec["workers"], "start_method": spec["start_method"]})
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "present": summary.present, "missing": summary.missing,
                      "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "maxrss_workers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the pool workers, once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Start `child` in a new interpreter and sample the summed RSS of it and its workers until it ends."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE,
                            env=env, text=True)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [watched, *watched.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.02)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_tree_rss_mb"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    audio_s = args.clips * args.seconds
    with tempfile.TemporaryDirectory(prefix="bench_audio_") as tmp:
        folder = Path(tmp)
        paths = make_clips(folder, args.clips, args.seconds)
        files = [p.name for p in paths]
        print(f"{args.clips} clips of {args.seconds:g} s ({audio_s:g} s of audio), {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        rows: dict[str, tuple[float, float]] = {}
        rows["bare (2 levels, 2 calls/clip)"] = bare_loop(paths, one_pass=False)
        rows["bare-1x (1 call/clip, lld;lld_de)"] = bare_loop(paths, one_pass=True)

        def spec(workers: int, repeat: int, start_method: str = "fork") -> dict[str, Any]:
            return {"root": str(folder), "files": files, "workers": workers, "repeat": repeat,
                    "start_method": start_method, "out": str(folder / f"store_w{workers}_r{repeat}_{start_method}.h5")}

        one = run_child(spec(1, 1))
        spawned = run_child(spec(args.workers, 1, "spawn"))
        many = run_child(spec(args.workers, 1))
        repeated = run_child(spec(args.workers, args.repeat))
        rows["ext w=1"] = one["seconds"], one["cpu_s"]
        rows[f"ext w={args.workers} spawn"] = spawned["seconds"], spawned["cpu_s"]
        rows[f"ext w={args.workers}"] = many["seconds"], many["cpu_s"]
        rows[f"ext w={args.workers} x{args.repeat}"] = repeated["seconds"], repeated["cpu_s"]
        print(f"{'run':36s} {'seconds':>8s} {'CPU s':>8s} {'clips/s':>8s} {'x realtime':>10s}")
        for name, (seconds, cpu) in rows.items():
            n = args.clips * (args.repeat if name.endswith(f"x{args.repeat}") else 1)
            print(f"{name:36s} {seconds:8.2f} {cpu:8.2f} {n / seconds:8.2f} {n * args.seconds / seconds:10.1f}")
        print(f"missing utterances: {one['missing']}, {spawned['missing']}, {many['missing']}, {repeated['missing']}")
        for name, res in ((f"w={args.workers} corpus", many), (f"w={args.workers} x{args.repeat}", repeated),
                          ("w=1 corpus", one)):
            print(f"peak RSS {name:16s} tree {res['peak_tree_rss_mb']:7.1f} MB, stage process "
                  f"{res['maxrss_self_mb']:7.1f} MB, largest child {res['maxrss_workers_mb']:7.1f} MB")
        bare = rows["bare (2 levels, 2 calls/clip)"][0]
        ratio_1 = bare / one["seconds"]
        ratio_n = one["seconds"] / many["seconds"]
        ratio_rss = repeated["peak_tree_rss_mb"] / many["peak_tree_rss_mb"]
        print(f"ratio ext w=1 / bare throughput:        {ratio_1:5.2f}  (target >= 0.90)")
        one_pass = rows["bare-1x (1 call/clip, lld;lld_de)"][0]
        print(f"ratio ext w=1 / bare-1x throughput:     {one_pass / one['seconds']:5.2f}")
        print(f"ratio ext w={args.workers} / ext w=1 throughput:     {ratio_n:5.2f}  (target >= 1.70)")
        print(f"ratio ext w={args.workers} spawn / ext w=1:          {one['seconds'] / spawned['seconds']:5.2f}")
        for name, res in (("fork", many), ("spawn", spawned)):
            overhead = res["cpu_s"] - one["cpu_s"]
            ideal = (one["cpu_s"] + overhead) / args.workers
            print(f"CPU spent by w={args.workers} {name} beyond w=1 (pool start-up, IPC): {overhead:5.2f} s; projected "
                  f"on idle cores: {one['cpu_s'] / ideal:.2f}x w=1")
        print(f"ratio peak RSS x{args.repeat} / x1:                  {ratio_rss:5.2f}  (target within 0.90-1.10)")


if __name__ == "__main__":
    main()
