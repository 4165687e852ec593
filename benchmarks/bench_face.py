"""Throughput of the `denseface` extractor against the bare libraries doing the same work, in one run, on one video.

Three ways to turn the same video segment into Denseface rows at the same sampling rate:

  loop       one frame at a time, the obvious script: cv2 `read()` every frame, keep the sampled ones,
             `MTCNN.detect` on one frame, crop, Denseface on one crop (PyTorch defaults: NCHW, batch 1)
  extractor  `DensefaceExtractor.process` (seek, grab skipped frames, MTCNN in frame batches, NHWC networks,
             Denseface in crop batches; the one-pass extractor of tests/denseface_one_pass.py)
  bare       the sampled frames decoded in advance, then MTCNN and Denseface in the same batches and memory format
             as the extractor: what the extractor costs beyond the two networks

Prints frames/s and the ratios extractor/loop (target >= 1.5) and extractor/bare (target >= 0.8). Weights are a
randomly initialised depth-100 network: speed does not depend on their values. Timings on a shared machine are
disturbed by other load; compare ratios taken in the same run. All three get the same torch threads, by default
torch's own default (all cores), what the plain one-frame script gets; batch-1 calls hardly use a second thread,
batched ones do, so `--threads 1` gives a lower extractor/loop ratio (on the 2-core dev machine: 1.27 at
1 thread; 1.58-1.94 at 2 when the machine is quiet, 1.43 once under other load).

    PYTHONPATH=. python benchmarks/bench_face.py [--seconds 8 --video-fps 25 --fps 10 --threads N]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from skimage import data

from models.denseface import Denseface, DensefaceConfig
from pipeline.denseface.checkpoint import Normalisation, save_checkpoint
from pipeline.extract.face import crop_face, select_face
from pipeline.manifest import Utterance, VideoSegment
from tests.denseface_one_pass import DensefaceExtractor

NORMALISATION = Normalisation(64, 131.0754, 47.858177)


def make_video(path: Path, seconds: float, fps: float, width: int, height: int) -> Path:
    """The astronaut drifting slowly across a grey frame (every frame differs, the face stays in view)."""
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    side = int(height * 0.9)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    n = int(round(seconds * fps))
    for i in range(n):
        frame = np.full((height, width, 3), 96, np.uint8)
        x = int((width - side) * (0.5 + 0.4 * math.sin(2 * math.pi * i / n)))
        y = (height - side) // 2
        frame[y:y + side, x:x + side] = face
        writer.write(frame)
    writer.release()
    return path


def run_loop(path: Path, fps: float, config: dict, detector: MTCNN, model: Denseface) -> np.ndarray:
    """One frame at a time with the libraries' defaults."""
    cap = cv2.VideoCapture(str(path))
    video_fps = cap.get(cv2.CAP_PROP_FPS)
    rows = []
    index, k = 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index == math.floor(k / fps * video_fps + 1e-6):
            k += 1
            boxes, probs = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            box = select_face(boxes, probs, config["face_selection"], config["min_face_probability"])
            if box is None:
                rows.append(np.zeros(model.feature_dim, np.float32))
            else:
                crop = crop_face(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), box, config["margin"], NORMALISATION.size)
                x = (torch.from_numpy(crop).float()[None, None] - NORMALISATION.mean) / NORMALISATION.std
                with torch.no_grad():
                    rows.append(model.features(x)[0].numpy())
        index += 1
    cap.release()
    return np.stack(rows)


def decode_sampled(path: Path, fps: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    video_fps = cap.get(cv2.CAP_PROP_FPS)
    rgb, gray = [], []
    index, k = 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index == math.floor(k / fps * video_fps + 1e-6):
            k += 1
            rgb.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            gray.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        index += 1
    cap.release()
    return rgb, gray


def run_bare(rgb: list[np.ndarray], gray: list[np.ndarray], config: dict, detector: MTCNN,
             model: Denseface) -> np.ndarray:
    """Batched MTCNN then batched Denseface, NHWC, on frames already in memory."""
    crops, owners = [], []
    for lo in range(0, len(rgb), config["detect_batch"]):
        boxes, probs = detector.detect(np.stack(rgb[lo:lo + config["detect_batch"]]))
        for i, (b, p) in enumerate(zip(boxes, probs, strict=True)):
            box = select_face(b, p, config["face_selection"], config["min_face_probability"])
            if box is not None:
                crops.append(crop_face(gray[lo + i], box, config["margin"], NORMALISATION.size))
                owners.append(lo + i)
    rows = np.zeros((len(rgb), model.feature_dim), np.float32)
    with torch.inference_mode():
        for lo in range(0, len(crops), config["embed_batch"]):
            batch = torch.from_numpy(np.stack(crops[lo:lo + config["embed_batch"]])).float()[:, None]
            x = ((batch - NORMALISATION.mean) / NORMALISATION.std).contiguous(memory_format=torch.channels_last)
            rows[owners[lo:lo + len(batch)]] = model.features(x).numpy()
    return rows


def timed_round_robin(methods: dict, repeats: int) -> tuple[dict[str, float], dict[str, float], dict]:
    """Best wall and best CPU (process) time of each method over `repeats` rounds, the methods interleaved within
    each round so that load from other processes falls on all of them alike. With one torch thread the CPU time
    is the work done, much less disturbed by other processes than the wall time."""
    wall = {name: math.inf for name in methods}
    cpu = {name: math.inf for name in methods}
    results = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    return wall, cpu, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="video length")
    parser.add_argument("--video-fps", type=float, default=25.0)
    parser.add_argument("--fps", type=float, default=10.0, help="sampling rate of the extractor")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--detect-batch", type=int, default=8)
    parser.add_argument("--embed-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads for all three, the same for each (default: torch's default here, what the "
                             "one-frame-at-a-time script gets)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N interleaved rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video = make_video(root / "bench.mp4", args.seconds, args.video_fps, args.width, args.height)
        network = Denseface(DensefaceConfig(depth=args.depth)).eval()
        checkpoint = save_checkpoint(root / "denseface.pt", network, [f"c{i}" for i in range(8)], NORMALISATION)
        config = {
            "checkpoint": str(checkpoint), "network": {"depth": args.depth, "growth_rate": 12}, "fps": args.fps,
            "detector": {"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7], "factor": 0.709},
            "face_selection": "largest", "min_face_probability": 0.9, "margin": 0.2,
            "detect_batch": args.detect_batch, "embed_batch": args.embed_batch, "batch_size": 1, "device": "cpu",
        }
        extractor = DensefaceExtractor(config, root)
        extractor.setup()
        utterance = Utterance("bench", "bench", "spk", "s1", video=VideoSegment("bench.mp4", None, None, "full"))

        loop_detector = MTCNN(keep_all=True, post_process=False, device="cpu").eval()
        loop_model = Denseface(network.config).eval()
        loop_model.load_state_dict(network.state_dict())
        bare_detector = MTCNN(keep_all=True, post_process=False, device="cpu").eval()
        bare_detector.to(memory_format=torch.channels_last)
        bare_model = Denseface(network.config).eval().to(memory_format=torch.channels_last)
        bare_model.load_state_dict(network.state_dict())

        run_loop(video, args.fps, config, loop_detector, loop_model)  # warm-up of every path
        extractor.process([utterance])
        rgb, gray = decode_sampled(video, args.fps)
        run_bare(rgb[:2], gray[:2], config, bare_detector, bare_model)

        times, cpu, results = timed_round_robin({
            "loop": lambda: run_loop(video, args.fps, config, loop_detector, loop_model),
            "extractor": lambda: extractor.process([utterance])[0],
            "bare": lambda: run_bare(rgb, gray, config, bare_detector, bare_model),
        }, args.repeats)
        t_loop, t_ext, t_bare = times["loop"], times["extractor"], times["bare"]
        loop_rows, ext_result, bare_rows = results["loop"], results["extractor"], results["bare"]

    frames = len(ext_result.features)
    if not (len(loop_rows) == len(bare_rows) == frames):
        raise SystemExit(f"frame counts differ: loop {len(loop_rows)}, extractor {frames}, bare {len(bare_rows)}")
    worst = max(np.abs(ext_result.features - bare_rows).max(), np.abs(ext_result.features - loop_rows).max())
    scale = np.abs(bare_rows).max()
    print(f"video {args.width}x{args.height} @ {args.video_fps:g} fps, {args.seconds:g} s; sampled at {args.fps:g} fps "
          f"= {frames} frames ({int(ext_result.frame_valid.sum())} with a face); Denseface depth {args.depth} "
          f"({extractor.dim}-d); torch threads {args.threads}; detect_batch {args.detect_batch}, "
          f"embed_batch {args.embed_batch}; best of {args.repeats}")
    print("              wall frames/s   CPU frames/s")
    for name, label in (("loop", "loop"), ("extractor", "extractor"), ("bare", "bare (decoding excluded)")):
        print(f"  {label:24s} {frames / times[name]:7.2f}  {frames / cpu[name]:7.2f}")
    print(f"  ratio extractor/loop = {t_loop / t_ext:.2f} wall, {cpu['loop'] / cpu['extractor']:.2f} CPU"
          f"  (target >= 1.5)")
    print(f"  ratio extractor/bare = {t_bare / t_ext:.2f} wall, {cpu['bare'] / cpu['extractor']:.2f} CPU"
          f"  (target >= 0.8)")
    print(f"  largest feature difference between the three: {worst:.3g} (feature scale {scale:.3g})")


if __name__ == "__main__":
    main()
