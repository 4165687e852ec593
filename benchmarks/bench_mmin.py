"""Epoch cost of the five MMIN-family variants on synthetic data of the demo's size, against bare torch.

For each variant (utt_fusion, utt_fusion_aug, mmin, mmin_ae, mmin_nocycle) it runs `train_and_evaluate` with the
paper's network sizes for a few epochs and reports CPU seconds and wall seconds per epoch (training plus the
per-epoch validation). The reference ("bare torch") trains the same networks on the same number of items per epoch
with a plain `DataLoader(TensorDataset)` loop and masks drawn per batch, without our batching, per-condition
validation or model selection; the ratio is our epoch over that one. Everything is measured in this run, for
1 and 2 torch threads.

    PYTHONPATH=. python benchmarks/bench_mmin.py [--utterances 340] [--epochs 3] [--threads 1 2] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mmin_fixtures import DEMO_SHAPES, synthetic_set  # noqa: E402

from models import mmin, utt_fusion  # noqa: E402
from models.batches import prepare_fold  # noqa: E402
from models.conditions import complement, mask_inputs  # noqa: E402
from models.data import MISSING_CONDITIONS, MODALITIES, condition_mask  # noqa: E402

ENCODER = {"audio_hidden": 128, "visual_hidden": 128, "text_embedding": 128, "text_filters": 128,
           "text_kernel_heights": [3, 4, 5], "text_dropout": 0.5, "pool_over_padding": True}
RECIPE = {"n_classes": 4, "encoder": ENCODER, "frames": {"audio": None, "visual": None, "text": None},
          "normalise": ["audio"], "classifier_hidden": [128, 128], "dropout": 0.3, "lr": 2e-4,
          "betas": [0.9, 0.999], "weight_decay": 0.0, "batch_size": 128, "eval_batch_size": 512,
          "clip_norm": 0.5, "clip_scope": "per_network", "train_conditions": ["avl"], "train_sampling": "expand",
          "select_on": "avl"}
MMIN = {**RECIPE, "dropout": 0.5, "betas": [0.5, 0.999], "clip_norm": 1.0, "train_conditions": list(MISSING_CONDITIONS),
        "train_sampling": "random", "select_on": "average", "imagination": "cra", "ae_layers": [256, 128, 64],
        "n_blocks": 5, "transition": True, "cycle": True, "loss_weights": {"ce": 1.0, "forward": 4.0, "backward": 2.0},
        "init": "kaiming", "tsne_max_items": 1000}
VARIANTS = {
    "utt_fusion": RECIPE,
    "utt_fusion_aug": {**RECIPE, "train_conditions": list(MISSING_CONDITIONS), "select_on": "average"},
    "mmin": MMIN,
    "mmin_ae": {**MMIN, "imagination": "ae"},
    "mmin_nocycle": {**MMIN, "cycle": False},
}


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    """CPU seconds (this process, all threads) and wall seconds of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn(*args, **kwargs)
    return time.process_time() - cpu, time.perf_counter() - wall


def bare_epochs(name: str, cfg: dict, train, pretrained_state: dict, epochs: int) -> None:
    """The same networks and item counts in a plain DataLoader loop (no per-epoch validation)."""
    fold = prepare_fold({"train": train}, 4, cfg["frames"], cfg["normalise"], torch.device("cpu"))["train"]
    is_mmin = name.startswith("mmin")
    model = mmin.MMIN(fold.dims, 4, cfg) if is_mmin else utt_fusion.UttFusion(fold.dims, 4, cfg)
    target = mmin.load_pretrained_encoders(model, pretrained_state) if is_mmin else None
    table = condition_mask(cfg["train_conditions"])
    repeat = len(table) if cfg["train_sampling"] == "expand" else 1
    tensors = [fold.values[m] for m in MODALITIES] + [fold.lengths[m] for m in MODALITIES] + [fold.labels]
    dataset = TensorDataset(*[t.repeat_interleave(repeat, 0) for t in tensors])
    loader = DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
    model.train()
    for _ in range(epochs):
        for a, v, t, la, lv, lt, y in loader:
            presence = table[torch.randint(len(table), (len(y),))]
            inputs = {"audio": (a, la), "visual": (v, lv), "text": (t, lt)}
            if is_mmin:
                out = model(mask_inputs(inputs, presence))
                loss = F.cross_entropy(out.logits, y) + 4 * F.mse_loss(out.imagined, target(
                    mask_inputs(inputs, complement(presence))))
                if model.backward_imagination is not None:
                    loss = loss + 2 * F.mse_loss(model.backward_imagination(out.imagined)[0], out.fused.detach())
            else:
                loss = F.cross_entropy(model(mask_inputs(inputs, presence)), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_norm"])
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=340, help="demo size: ~340 utterances, 8 speakers")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=128, help="the paper's 128; the demo may use less")
    args = parser.parse_args()
    n = args.utterances
    n_test = n // 8  # one speaker's worth each for test and validation
    train = synthetic_set(n - 2 * n_test, prefix="tr", signal=0.1)
    val, test = synthetic_set(n_test, prefix="va", signal=0.1), synthetic_set(n_test, prefix="te", signal=0.1)
    print(f"synthetic demo fold: train {len(train)}, val {len(val)}, test {len(test)} utterances; shapes "
          f"{DEMO_SHAPES}; batch {args.batch_size}; {args.epochs} epochs each; CPU s and wall s per epoch")
    device = torch.device("cpu")
    for threads in args.threads:
        torch.set_num_threads(threads)
        pretrained = utt_fusion.train_and_evaluate(train, val, test, {**RECIPE, "epochs_constant": 1,
                                                                      "epochs_decay": 0}, seed=0, device=device)
        print(f"\n-- torch threads {threads}")
        print(f"{'variant':16s} {'cpu/epoch':>10s} {'wall/epoch':>11s} {'bare cpu/ep':>12s} {'ratio cpu':>10s}")
        total_cpu = 0.0
        for name, base in VARIANTS.items():
            cfg = {**base, "epochs_constant": args.epochs, "epochs_decay": 0, "batch_size": args.batch_size}
            init = pretrained.state if name.startswith("mmin") else None
            family = mmin if name.startswith("mmin") else utt_fusion
            cpu, wall = timed(family.train_and_evaluate, train, val, test, cfg, seed=0, device=device,
                              init_state=init)
            bare_cpu, _ = timed(bare_epochs, name, cfg, train, pretrained.state, args.epochs)
            total_cpu += cpu / args.epochs
            print(f"{name:16s} {cpu / args.epochs:10.2f} {wall / args.epochs:11.2f} {bare_cpu / args.epochs:12.2f} "
                  f"{cpu / max(bare_cpu, 1e-9):10.2f}", flush=True)
        print(f"{'all five':16s} {total_cpu:10.2f}  (CPU s for one epoch of each)")


if __name__ == "__main__":
    main()
