"""Throughput of the speech encoder extractor (`hf_audio`) against the bare transformers model, in one run.

Three ways to embed the same generated IEMOCAP-like clips (1-15 s, median ~4 s, speech-like harmonics):
  (a) loop    one clip at a time, feature extractor + forward, with the model as transformers loads it (what
              MERTools / EmoBox-style scripts do);
  (b) bare    that same model on the extractor's own length-sorted chunk batches, feature-extracted and padded
              in advance (forward only);
  (c) ours    `extract_to_store` end to end (decode the WAV files, normalise, chunk, plan, batch, forward, write
              the HDF5 store), with the weights already loaded and hashed (that one-off cost is printed apart).
The model is a mid-size randomly initialised Wav2Vec2 (WavLM-large's layout: layer-normalised convolutions,
pre-LN transformer, attention mask; `--hidden`, `--layers`, `--conv-dim` set its size; no weights needed). All three
run in the extractor's dtype on its device (float32 on the CPU, float16 on a GPU) with the same torch threads,
interleaved, `--repeat` times, best time of each. Targets: c >= 2 x a and c >= 0.9 x b. The load average is
printed: the ratios only mean something against a machine that is not otherwise busy.

Measured on the shared 2-core CPU (AVX-512), `--n 24 --repeat 2`, load average 8.1 (five jobs on two cores, so
rough): 101 s of audio in 10 batches with 2.3% padding; (a) 52.6 s, (b) 40.8 s, (c) 45.5 s: c/a = 1.16 (target 2
missed on a CPU: a 4 s clip is already 200 frames, a matrix large enough that batching adds little there; the
2x is for a GPU, where one clip leaves most of it idle; not measured, no GPU in that session), c/b = 0.90.

Quiet machine (2026-12-07 evening, load average 1.2, this benchmark alone), same command: (a) 3.71 s, (b) 3.82 s,
(c) 3.68 s: c/a = 1.01, c/b = 1.04. On an idle 2-core CPU a batch costs what its clips cost one by one (the bare
batched model is no faster than the loop), so no extractor can reach 2x here; the figures under load above
measured the contention, not the batching.

    PYTHONPATH=. python benchmarks/bench_hf_audio.py [--n 32] [--threads 2] [--hidden 384] [--layers 4]
        [--conv-dim 256] [--sample-budget 960000] [--batch-overhead 0.5] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, AutoModel

from pipeline.extract.hf_audio import HfAudioExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Segment, Utterance
from tests.encoder_models import SAMPLE_RATE, speech_like


def random_wav2vec2(directory: Path, hidden: int, layers: int, conv_dim: int) -> Path:
    """wav2vec2's real 7-layer convolutional front end (narrower) and a pre-LN transformer, random weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                            intermediate_size=4 * hidden, conv_dim=(conv_dim,) * 7, feat_extract_norm="layer",
                            do_stable_layer_norm=True, conv_bias=True)
    Wav2Vec2Model(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(directory)
    return directory


def clips(root: Path, n: int, seed: int = 0) -> list[Utterance]:
    """IEMOCAP-like durations (log-normal, 1-15 s) as 16 kHz WAV files."""
    rng = np.random.default_rng(seed)
    utts = []
    for i in range(n):
        seconds = float(np.clip(rng.lognormal(np.log(4.0), 0.6), 1.0, 15.0))
        sf.write(root / f"c{i:04d}.wav", speech_like(seconds, seed=i), SAMPLE_RATE)
        utts.append(Utterance(f"c{i:04d}", "bench", "spk", "s1", audio=Segment(f"c{i:04d}.wav")))
    return utts


def loop_one_by_one(model: torch.nn.Module, fe, signals: list[np.ndarray], device: str, dtype) -> None:  # noqa: ANN001
    with torch.inference_mode():
        for signal in signals:
            inputs = fe(signal, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            model(inputs["input_values"].to(device, dtype),
                  attention_mask=inputs["attention_mask"].to(device)).last_hidden_state.float().cpu().numpy()


def planned_batches(extractor: HfAudioExtractor, fe, signals: list[np.ndarray]) -> list[dict]:  # noqa: ANN001
    """The extractor's chunk batches (its length-sorted plan), feature-extracted and padded in advance."""
    pieces = [c.samples for i, s in enumerate(signals) for c in extractor.chunks_of(i, s)]
    return [fe([pieces[j] for j in batch], sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt")
            for batch in extractor.chunk_batches([len(p) for p in pieces])]


def bare_batched(model: torch.nn.Module, batches: list[dict], device: str, dtype) -> None:  # noqa: ANN001
    with torch.inference_mode():
        for batch in batches:
            model(batch["input_values"].to(device, dtype),
                  attention_mask=batch["attention_mask"].to(device)).last_hidden_state.float().cpu().numpy()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(args: argparse.Namespace, workdir: Path) -> None:
    torch.set_num_threads(args.threads)
    model_dir = random_wav2vec2(workdir / "model", args.hidden, args.layers, args.conv_dim)
    utts = clips(workdir, args.n)
    start = time.perf_counter()
    extractor = HfAudioExtractor({"model": str(model_dir), "sample_budget": args.sample_budget,
                                  "batch_overhead_s": args.batch_overhead}, workdir)
    extractor.setup()
    extractor.describe()
    one_off = time.perf_counter() - start
    device, dtype = extractor.device, getattr(torch, extractor.dtype_name)
    fe = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()  # as a plain script loads it
    signals = [sf.read(workdir / u.audio.path, dtype="float32")[0] for u in utts]
    seconds_audio = sum(len(s) for s in signals) / SAMPLE_RATE
    batches = planned_batches(extractor, fe, signals)
    loop_one_by_one(model, fe, signals[:2], device, dtype)  # warm-up
    bare_batched(model, batches[:1], device, dtype)
    times = {"loop": float("inf"), "bare": float("inf"), "ours": float("inf")}
    for rep in range(args.repeat):  # interleaved, best of `repeat` each: other load only ever slows a run
        for name, run in (("loop", lambda: loop_one_by_one(model, fe, signals, device, dtype)),
                          ("bare", lambda: bare_batched(model, batches, device, dtype)),
                          ("ours", lambda r=rep: extract_to_store(
                              extractor, utts, workdir / f"store-{r}.h5", progress=False,
                              executor_options={"workers": 1, "threads_per_worker": args.threads}))):
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name] = min(times[name], time.perf_counter() - start)
            torch.set_num_threads(args.threads)
    padded = sum(b["input_values"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    print(f"hf_audio: {args.n} clips, {seconds_audio:.0f} s of audio; random Wav2Vec2 hidden {args.hidden}, "
          f"{args.layers} layers, conv {args.conv_dim}; {device} {extractor.dtype_name}, {args.threads} threads; "
          f"sample_budget {args.sample_budget}, batch_overhead_s {args.batch_overhead}: {len(batches)} batches, "
          f"{padded / real - 1:.1%} padding; best of {args.repeat}; load+hash {one_off:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, label in (("loop", "(a) loop one by one"), ("bare", "(b) bare model, sorted batches"),
                        ("ours", "(c) extract_to_store")):
        print(f"  {label:32s} {times[name]:8.2f} s  {seconds_audio / times[name]:8.1f} x real time")
    print(f"  ratio c/a = {times['loop'] / times['ours']:.2f}  (target >= 2)")
    print(f"  ratio c/b = {times['bare'] / times['ours']:.2f}  (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--conv-dim", type=int, default=256)
    parser.add_argument("--sample-budget", type=int, default=960_000)
    parser.add_argument("--batch-overhead", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench(args, Path(tmp))


if __name__ == "__main__":
    main()
