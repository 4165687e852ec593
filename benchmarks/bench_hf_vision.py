"""Throughput of `hf_vision` on face-track crops against transformers doing the same work, in one run.

Three ways to embed the same crops (a face track written here from the astronaut photo, jittered: `--utts`
utterances of `--frames` RGB crops at `--size`), with a mid-size randomly initialised ViT (no weights needed;
hidden 384, 6 layers, 6 heads, patch 16 at `--size`):
  (a) loop    one crop at a time through transformers' ViTImageProcessor and the model (what per-image scripts do);
  (b) bare    the same model on the extractor's batches of `--crops-per-batch`, pixels prepared in advance
              (forward only);
  (c) ours    `extract_to_store` end to end (read the track, resize/normalise in torch, batch, forward, write the
              HDF5 store), the weights already loaded and hashed.
Targets on a CPU: c >= 2 x a and c >= 0.9 x b. The three run interleaved `--repeat` times; the best time counts.
The load average is printed: the machine is shared, compare ratios from one run only.

Measured 2026-12-07 on the 2-core CPU (load average 0.8-1.7, i.e. this benchmark alone), best of 3, 192 crops:
crops_per_batch 64: loop 4.83 s, bare 2.46 s, ours 2.44 s (ours/loop 1.98x, ours/bare 1.01x); 32: 2.14x, 1.11x;
128: 1.80x, 0.84x. Runs of the loop vary by 20% from one call to the next, so the 2x target sits inside the
noise on a CPU: batching ViT-small crops there is worth about 2x and no more (ours matches the bare batched
model). Earlier figures (ours/bare 0.60x) came from running `extract_to_store` with one thread against two.

    PYTHONPATH=. python benchmarks/bench_hf_vision.py [--utts 24] [--frames 8] [--size 112] [--threads N]
        [--crops-per-batch 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from pipeline.extract.face_track import COLUMNS, FaceTrack, FaceTrackExtractor
from pipeline.extract.hf_vision import HfVisionExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance, VideoSegment
from pipeline.store import StoreWriter, UtteranceFeatures


def write_track(path: Path, n_utts: int, frames: int, size: int, seed: int = 0) -> list[Utterance]:
    """A face track of jittered crops of the astronaut's face (RGB, size x size); every frame has a face."""
    rng = np.random.default_rng(seed)
    photo = data.astronaut()
    utts = [Utterance(f"utt{i:04d}", "bench", "spk", "s1", video=VideoSegment("none.mp4", 0.0, 1.0, "full"))
            for i in range(n_utts)]
    attrs = {"extractor": FaceTrackExtractor.name, "extractor_version": FaceTrackExtractor.version,
             "config": json.dumps({"crop_size": size, "color": "rgb"}), "crop_shape": json.dumps([size, size, 3]),
             "frame_hop_s": 0.1}
    writer = StoreWriter(path, [u.utt_id for u in utts], size * size * 3, attrs, frame_valid=True, dtype="uint8",
                         columns=COLUMNS, shard_size=n_utts)
    results = []
    for _ in utts:
        crops = []
        for _ in range(frames):
            x, y = rng.integers(160, 200), rng.integers(40, 80)
            crops.append(cv2.resize(photo[y:y + 120, x:x + 120], (size, size), interpolation=cv2.INTER_AREA))
        results.append(UtteranceFeatures(np.stack(crops).reshape(frames, -1), True, np.ones(frames, bool)))
    writer.write_shard(writer.shards[0], results)
    writer.finalize()
    return utts


def loop(model: ViTModel, processor: ViTImageProcessor, crops: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return np.stack([model(**processor(images=c, return_tensors="pt")).last_hidden_state[0, 0].numpy()
                         for c in crops])


def bare(model: ViTModel, batches: list[torch.Tensor]) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([model(pixel_values=b).last_hidden_state[:, 0].numpy() for b in batches])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--crops-per-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        config = ViTConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536,
                           image_size=args.size, patch_size=16)
        ViTModel(config).eval().save_pretrained(root / "vit")
        utts = write_track(root / "faces.h5", args.utts, args.frames, args.size)
        ours = HfVisionExtractor({"model": str(root / "vit"), "device": "cpu", "crops_per_batch": args.crops_per_batch,
                                  "batch_size": args.utts}, root, face_track=root / "faces.h5")
        ours.setup()
        ours.describe()  # weights hashed once, as a stage does before its work
        model = ours._model  # the same weights for (a) and (b)
        processor = ViTImageProcessor(size={"height": args.size, "width": args.size})
        with FaceTrack(root / "faces.h5") as track:
            crops = [c for u in utts for c in track.crops(u.utt_id)]
        batches = [ours.pixels(crops[i:i + args.crops_per_batch]) for i in range(0, len(crops),
                                                                               args.crops_per_batch)]
        best = {"loop": float("inf"), "bare": float("inf"), "ours": float("inf")}
        for r in range(args.repeat):
            for name in best:
                start = time.perf_counter()
                if name == "loop":
                    loop(model, processor, crops)
                elif name == "bare":
                    bare(model, batches)
                else:
                    extract_to_store(ours, utts, root / f"hf_vision{r}.h5", progress=False,
                                     executor_options={"workers": 1, "threads_per_worker": args.threads})
                best[name] = min(best[name], time.perf_counter() - start)
    n = len(crops)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"torch threads {args.threads}; {n} crops {args.size}x{args.size} RGB; ViT 384-d x 6 layers, patch 16; "
          f"crops_per_batch {args.crops_per_batch}; best of {args.repeat}")
    for name, seconds in best.items():
        print(f"  {name:5s} {seconds:7.2f} s  {n / seconds:8.1f} crops/s")
    print(f"ours / loop {best['loop'] / best['ours']:.2f}x (target >= 2); ours / bare "
          f"{best['bare'] / best['ours']:.2f}x (target >= 0.9)")


if __name__ == "__main__":
    main()
