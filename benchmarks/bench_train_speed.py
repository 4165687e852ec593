"""Training speed and memory of utt_fusion, utt_fusion_aug and mmin on a set of IEMOCAP's shape, against bare torch.

The set is generated here and written as feature stores (no corpus, no authors' code): 5,531 utterances, one fold
of 4,431 train / 550 val / 550 test, audio (T ~ U[20, 80], 130), visual (50, 342) with no face for one utterance
in 20, text (22, 1024), four classes whose means differ under unit noise. The networks are params.yaml's (the
papers' sizes: LSTMs of 128, TextCNN of 128 filters, batch 128, eval batch 512).

Every measurement runs in a fresh process (multiprocessing spawn), so its peak RSS (`ru_maxrss`) is its own:
  ours   the train stage's path: `pipeline.train.load_utterances` from the stores, `run_job` (the fold's parts,
         `train_and_evaluate`: the per-epoch validation, model selection and the test evaluation on every
         condition); seconds per training epoch = epoch time minus its validation;
  bare   the floor: the stores read with h5py into padded arrays, audio normalised in place, and the same nn
         modules (models.utt_fusion.UttFusion, models.mmin.MMIN) called directly on batches gathered from those
         tensors, Adam and per-network clipping; its evaluation encodes every masked copy of the test set.
`ratio` is bare seconds over ours (throughput of ours relative to the floor; >= 0.8 is the target). The load
average is printed with each row: on a busy machine compare ratios, not seconds.

    PYTHONPATH=. python benchmarks/bench_train_speed.py            # full: 1 and 2 threads (about 15-25 min)
    PYTHONPATH=. python benchmarks/bench_train_speed.py --quick    # 160 utterances, 1 thread (about a minute)
    ... [--models mmin] [--threads 2] [--epochs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.store import StoreWriter, UtteranceFeatures  # noqa: E402

CLASSES = ["ang", "hap", "neu", "sad"]
FULL = {"utterances": 5531, "val": 550, "test": 550}
QUICK = {"utterances": 160, "val": 16, "test": 16}
# modality -> (store name, shortest, longest frame count, width)
SHAPES = {"audio": ("compare", 20, 80, 130), "visual": ("denseface", 50, 50, 342), "text": ("bert", 22, 22, 1024)}
NO_FACE_EVERY = 20
FAMILY = {"utt_fusion": "utt_fusion", "utt_fusion_aug": "utt_fusion", "mmin": "mmin"}


def write_stores(folder: Path, n: int, seed: int = 0) -> list[int]:
    """The feature stores of `n` utterances; returns their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(CLASSES), size=n).tolist()
    ids = [f"utt{i:05d}" for i in range(n)]
    for k, (modality, (store, shortest, longest, width)) in enumerate(SHAPES.items()):
        means = np.random.default_rng(seed + 100 + k).normal(0, 1, (len(CLASSES), width)).astype(np.float32)
        writer = StoreWriter(folder / f"{store}.h5", ids, width, {"extractor": store}, shard_size=512)
        for shard in writer.pending():
            results = []
            for utt in shard.utt_ids:
                i = int(utt[3:])
                if modality == "visual" and i % NO_FACE_EVERY == 0:
                    results.append(UtteranceFeatures.missing("no_face", width))
                    continue
                frames = int(rng.integers(shortest, longest + 1))
                values = means[labels[i]] + rng.standard_normal((frames, width), dtype=np.float32)
                results.append(UtteranceFeatures(values, True))
            writer.write_shard(shard, results)
        writer.finalize()
    return labels


def model_cfg(name: str, epochs: int) -> dict[str, Any]:
    """params.yaml's model entry (papers' sizes) as the family receives it, for `epochs` constant-lr epochs."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = {k: v for k, v in params["models"][name].items()
           if k not in ("family", "protocol", "init_from", "features", "folds", "seeds", "modalities")}
    return {**cfg, "n_classes": len(CLASSES), "epochs_constant": epochs, "epochs_decay": 0}


def parts(n: int, sizes: dict[str, int]) -> dict[str, list[int]]:
    order = np.random.default_rng(1).permutation(n).tolist()
    test, val = sorted(order[:sizes["test"]]), sorted(order[sizes["test"]:sizes["test"] + sizes["val"]])
    return {"train": sorted(order[sizes["test"] + sizes["val"]:]), "val": val, "test": test}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def ours(spec: dict[str, Any]) -> dict[str, float]:
    """The train stage's path in this (fresh) process."""
    import torch

    import models.recipe as recipe
    from pipeline.manifest import Utterance
    from pipeline.store import FeatureStore
    from pipeline.train import Job, load_utterances, run_job

    torch.set_num_threads(spec["threads"])
    folder = Path(spec["folder"])
    stores = {m: FeatureStore(folder / f"{store}.h5") for m, (store, *_) in SHAPES.items()}
    utts = [Utterance(f"utt{i:05d}", "bench", f"spk{i % 10}", f"s{i % 5}", label=CLASSES[label])
            for i, label in enumerate(spec["labels"])]
    cfg = spec["cfg"]
    started = time.perf_counter()
    data = load_utterances(utts, CLASSES, stores, {m: (cfg["frames"] or {}).get(m) for m in SHAPES})
    loaded = time.perf_counter() - started
    evaluations: list[float] = []
    evaluate = recipe.evaluate

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        out = evaluate(*args, **kwargs)
        evaluations.append(time.perf_counter() - begin)
        return out

    recipe.evaluate = timed_evaluate
    job = Job("fold1", 0, 1.0, spec["parts"], [], [], Path(spec["init_state"]) if spec["init_state"] else None)
    outcome = run_job(data, job, FAMILY[spec["model"]], cfg, "cpu", spec["threads"])
    epochs = len(outcome.history)
    epoch_s = (sum(r["seconds"] for r in outcome.history) - sum(evaluations[:epochs])) / epochs
    return {"load_s": loaded, "epoch_s": epoch_s, "eval_s": evaluations[epochs], "rss_mb": peak_rss_mb()}


def _bare_arrays(folder: Path, rows: list[int], torch: Any) -> dict[str, tuple[Any, Any]]:
    """Each store's rows as one zero-padded tensor and lengths (the whole /features read once, then scattered)."""
    import h5py

    out = {}
    for modality, (store, *_) in SHAPES.items():
        with h5py.File(folder / f"{store}.h5", "r") as f:
            offsets, present, features = f["offsets"][:], f["present"][:], f["features"][:]
        lengths = np.where(present[rows], offsets[np.array(rows) + 1] - offsets[rows], 0)
        values = np.zeros((len(rows), max(1, int(lengths.max())), features.shape[1]), np.float32)
        for k, (i, n) in enumerate(zip(rows, lengths, strict=True)):
            values[k, :n] = features[offsets[i]:offsets[i] + n]
        del features
        out[modality] = (torch.from_numpy(values), torch.from_numpy(lengths.astype(np.int64)))
    return out


def bare(spec: dict[str, Any]) -> dict[str, float]:
    """The floor: the same modules on pre-padded tensors, no pipeline."""
    import torch
    import torch.nn.functional as F

    from models import mmin, utt_fusion
    from models.data import CONDITIONS, MODALITIES

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cfg, model_name = spec["cfg"], spec["model"]
    started = time.perf_counter()
    order = sorted(i for idx in spec["parts"].values() for i in idx)
    position = {u: k for k, u in enumerate(order)}
    arrays = _bare_arrays(Path(spec["folder"]), order, torch)
    split = {p: torch.tensor([position[i] for i in idx]) for p, idx in spec["parts"].items()}
    labels = torch.tensor([spec["labels"][i] for i in order])
    audio, audio_len = arrays["audio"]
    real = torch.arange(audio.shape[1])[None, :] < audio_len[:, None]
    train_real = audio[split["train"]][real[split["train"]]]
    mean, std = train_real.mean(0), train_real.std(0, unbiased=False).clamp(min=1e-12)
    del train_real
    audio.sub_(mean).div_(std).mul_(real.unsqueeze(-1))
    loaded = time.perf_counter() - started
    dims = {m: int(v.shape[2]) for m, (v, _) in arrays.items()}
    is_mmin = model_name == "mmin"
    model = mmin.MMIN(dims, 4, cfg) if is_mmin else utt_fusion.UttFusion(dims, 4, cfg)
    target = mmin.load_pretrained_encoders(model, torch.load(spec["init_state"])) if is_mmin else None
    networks = model.networks() if is_mmin else [*model.encoders.parts(), model.classifier]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    table = torch.tensor([CONDITIONS[c] for c in cfg["train_conditions"]], dtype=torch.float32)
    train = split["train"]

    def gathered(rows: Any, presence: Any) -> dict[str, tuple[Any, Any]]:
        return {m: (arrays[m][0][rows] * presence[:, c].reshape(-1, 1, 1), arrays[m][1][rows])
                for c, m in enumerate(MODALITIES)}

    epoch_times = []
    for _ in range(cfg["epochs_constant"]):
        begin = time.perf_counter()
        model.train()
        if cfg["train_sampling"] == "expand":
            items = torch.randperm(len(train) * len(table))
            utterances, conditions = train[items // len(table)], items % len(table)
        else:
            utterances, conditions = train[torch.randperm(len(train))], torch.randint(len(table), (len(train),))
        for s in range(0, len(utterances), cfg["batch_size"]):
            rows, presence = utterances[s:s + cfg["batch_size"]], table[conditions[s:s + cfg["batch_size"]]]
            if is_mmin:
                out = model(gathered(rows, presence))
                loss = F.cross_entropy(out.logits, labels[rows]) + 4.0 * F.mse_loss(
                    out.imagined, target(gathered(rows, 1.0 - presence)))
                loss = loss + 2.0 * F.mse_loss(model.backward_imagination(out.imagined)[0], out.fused.detach())
            else:
                loss = F.cross_entropy(model(gathered(rows, presence)), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for network in networks:
                torch.nn.utils.clip_grad_norm_(network.parameters(), cfg["clip_norm"])
            optimizer.step()
        epoch_times.append(time.perf_counter() - begin)
    begin = time.perf_counter()
    model.eval()
    with torch.no_grad():
        test = split["test"]
        for condition in CONDITIONS:
            presence = torch.tensor([CONDITIONS[condition]], dtype=torch.float32)
            for s in range(0, len(test), cfg["eval_batch_size"]):
                rows = test[s:s + cfg["eval_batch_size"]]
                head = model.head if is_mmin else model.classifier
                head(model.encoders(gathered(rows, presence.expand(len(rows), 3)))).argmax(-1)
    return {"load_s": loaded, "epoch_s": sum(epoch_times) / len(epoch_times), "eval_s": time.perf_counter() - begin,
            "rss_mb": peak_rss_mb()}


def _child(kind: str, spec: dict[str, Any], queue: Any) -> None:
    queue.put((ours if kind == "ours" else bare)(spec))


def measure(kind: str, spec: dict[str, Any]) -> dict[str, float]:
    """One measurement in a fresh spawned process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kind, spec, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def init_state(folder: Path, epochs: int) -> Path:
    """A utt_fusion state of the paper's sizes for MMIN to start from (random weights: timing only)."""
    import torch

    from models.utt_fusion import UttFusion

    dims = {m: width for m, (*_, width) in SHAPES.items()}
    path = folder / "utt_fusion.pt"
    torch.save(UttFusion(dims, len(CLASSES), model_cfg("utt_fusion", epochs)).state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="160 utterances, 1 thread, under a minute")
    parser.add_argument("--models", nargs="+", default=list(FAMILY), choices=list(FAMILY))
    parser.add_argument("--threads", nargs="+", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the stores in this folder")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    threads = args.threads or ([1] if args.quick else [1, 2])
    with tempfile.TemporaryDirectory(prefix="bench_train_speed_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        begin = time.perf_counter()
        labels = (write_stores(folder, sizes["utterances"]) if not (folder / "bert.h5").exists()
                  else np.random.default_rng(0).integers(len(CLASSES), size=sizes["utterances"]).tolist())
        print(f"{sizes['utterances']} utterances (train {sizes['utterances'] - sizes['val'] - sizes['test']} / val "
              f"{sizes['val']} / test {sizes['test']}) in {folder} ({time.perf_counter() - begin:.1f} s); "
              f"{os.cpu_count()} CPUs", flush=True)
        state = init_state(folder, args.epochs)
        header = (f"{'model':<15}{'thr':>4}{'load s':>9}{'epoch s':>9}{'bare':>8}{'ratio':>7}{'eval s':>8}"
                  f"{'bare':>7}{'RSS MB':>8}{'bare':>7}  load avg")
        print(header, flush=True)
        for n_threads in threads:
            for name in args.models:
                spec = {"folder": str(folder), "labels": labels, "parts": parts(sizes["utterances"], sizes),
                        "cfg": model_cfg(name, args.epochs), "model": name, "threads": n_threads,
                        "init_state": str(state) if FAMILY[name] == "mmin" else None}
                ours_result, bare_result = measure("ours", spec), measure("bare", spec)
                print(f"{name:<15}{n_threads:>4}{ours_result['load_s']:>9.1f}{ours_result['epoch_s']:>9.2f}"
                      f"{bare_result['epoch_s']:>8.2f}{bare_result['epoch_s'] / ours_result['epoch_s']:>7.2f}"
                      f"{ours_result['eval_s']:>8.2f}{bare_result['eval_s']:>7.2f}{ours_result['rss_mb']:>8.0f}"
                      f"{bare_result['rss_mb']:>7.0f}  {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
