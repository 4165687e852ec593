"""SSMM on generated data: (1) `claim`: UA of SSMM against the supervised-only network across labelled fractions on
a task whose unlabelled utterances carry the class structure (class clusters shared by all three modalities);
(2) `epoch`: seconds per training epoch at the lead's demo shape, against a bare torch loop doing the same steps
(same network, same batches, the same loss written inline) in the same run.

    PYTHONPATH=$PWD python benchmarks/bench_ssmm.py claim --fractions 0.1 0.3 1.0 --seeds 0 1 2
    PYTHONPATH=$PWD python benchmarks/bench_ssmm.py epoch

Timings on a shared machine are disturbed by other load; compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from models.data import UNLABELLED, Sequences, UtteranceSet
from models.ssmm import (
    FUSION_ORDER,
    PooledInputs,
    SSMMNet,
    pool_utterances,
    train_and_evaluate,
)
from models.trainer import kaiming_init
from pipeline.params import load_params, section
from pipeline.train import PIPELINE_KEYS
from tests.label_hiding import with_hidden_labels

DEMO_DIMS = {"audio": 130, "visual": 342, "text": 384}


def model_defaults() -> dict:
    """params.yaml's models.ssmm (the papers' defaults and ours), as the train stage hands it to the model."""
    entry = section(load_params(), "models.ssmm")
    return {**{k: v for k, v in entry.items() if k not in PIPELINE_KEYS}, "n_classes": 4}


CONFIG = model_defaults()


def shared_cluster_corpus(n: int, seed: int, *, dims: dict[str, int] = DEMO_DIMS, n_classes: int = 4,
                          separation: float = 1.5, noise: float = 1.0, frames: tuple[int, int] = (2, 6),
                          missing: float = 0.0, structure_seed: int = 1234) -> UtteranceSet:
    """Utterances whose class is a cluster centre in every modality (centres fixed by `structure_seed`, so every
    split shares them), frames = centre + Gaussian noise, a random number of frames per utterance, and a modality
    missing (length 0) with probability `missing`. Centres have norm ~`separation`; per-frame noise `noise` per
    feature, so the class signal is weak per feature and strong along the few centre directions: the structure
    unlabelled utterances reveal and a handful of labels cannot."""
    rng = np.random.default_rng(seed)
    structure = np.random.default_rng(structure_seed)
    labels = rng.integers(0, n_classes, n)
    lengths_all = rng.integers(frames[0], frames[1] + 1, n)
    mods = {}
    for m in FUSION_ORDER:
        d = dims[m]
        centres = structure.normal(0.0, 1.0, (n_classes, d)) * separation / math.sqrt(d)
        values = np.zeros((n, frames[1], d), dtype=np.float32)
        lengths = lengths_all.copy()
        lengths[rng.random(n) < missing] = 0
        for i in range(n):
            values[i, :lengths[i]] = centres[labels[i]] + noise * rng.normal(0.0, 1.0, (lengths[i], d))
        mods[m] = Sequences(torch.from_numpy(values), torch.from_numpy(lengths.astype(np.int64)))
    return UtteranceSet([f"s{seed}_{i:05d}" for i in range(n)], mods["audio"], mods["visual"], mods["text"],
                        torch.from_numpy(labels.astype(np.int64)))


def linear_references(train: UtteranceSet, test: UtteranceSet, components: int) -> tuple[float, float]:
    """How much class structure the unlabelled utterances carry, seen by bare scikit-learn: test UA of logistic
    regression on the labelled rows' pooled features, and on their projection onto `components` principal axes
    fitted on every training row (labels not used)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    def features(data: UtteranceSet) -> np.ndarray:
        pooled = pool_utterances(data, "mean")
        return torch.cat([pooled.vectors[m] for m in FUSION_ORDER], 1).numpy()

    x_all, x_test = features(train), features(test)
    lab = train.labelled().numpy()
    y_lab, y_test = train.labels.numpy()[lab], test.labels.numpy()
    scaler = StandardScaler().fit(x_all)
    raw = LogisticRegression(max_iter=5000).fit(scaler.transform(x_all[lab]), y_lab)
    pca = PCA(components, random_state=0).fit(scaler.transform(x_all))
    projected = LogisticRegression(max_iter=5000).fit(pca.transform(scaler.transform(x_all[lab])), y_lab)
    return (float(balanced_accuracy_score(y_test, raw.predict(scaler.transform(x_test)))),
            float(balanced_accuracy_score(y_test, projected.predict(pca.transform(scaler.transform(x_test))))))


def claim(args: argparse.Namespace) -> None:
    print(f"shared-cluster task: train {args.train} ({args.absent:.0%} never labelled, then labels hidden per "
          f"class down to the fraction), val {args.val}, test {args.test}, "
          f"separation {args.separation}, noise {args.noise}, dims {DEMO_DIMS}, epochs {args.epochs}, "
          f"mismatched-pairs MMD {'on' if args.mismatch else 'off'}, pseudo-label weight {args.pseudo_label_weight}")
    cfg = {**CONFIG, "epochs": args.epochs, "mismatch_mmd": args.mismatch,
           "pseudo_label_weight": args.pseudo_label_weight}
    rows = []
    for fraction in args.fractions:
        ua: dict[str, list[float]] = {"supervised": [], "ssmm": [], "logreg": [], "pca_logreg": []}
        for seed in args.seeds:
            data = {part: shared_cluster_corpus(size, 100 * k + seed, separation=args.separation, noise=args.noise)
                    for k, (part, size) in enumerate((("train", args.train), ("val", args.val),
                                                       ("test", args.test)), start=1)}
            absent = torch.rand(args.train, generator=torch.Generator().manual_seed(seed)) < args.absent
            data["train"].labels[absent] = UNLABELLED  # utterances the corpus never labelled
            data["train"].labels = with_hidden_labels(data["train"].utt_ids, data["train"].labels, fraction, seed)
            logreg, pca_logreg = linear_references(data["train"], data["test"], args.pca)
            ua["logreg"].append(logreg)
            ua["pca_logreg"].append(pca_logreg)
            for variant in ("supervised", "ssmm"):
                out = train_and_evaluate(data["train"], data["val"], data["test"], {**cfg, "variant": variant},
                                         seed=seed, device=torch.device("cpu"))
                ua[variant].append(out.metrics["avl"]["ua"])
                print(f"  fraction {fraction:.2f} seed {seed} {variant:10s} test UA {ua[variant][-1]:.4f} "
                      f"(best epoch {out.extras['best_epoch']}, {out.extras['n_labelled']} labelled, "
                      f"{out.extras['n_unlabelled']} unlabelled)", flush=True)
        diff = np.array(ua["ssmm"]) - np.array(ua["supervised"])
        rows.append((fraction, np.mean(ua["supervised"]), np.std(ua["supervised"]), np.mean(ua["ssmm"]),
                     np.std(ua["ssmm"]), diff.mean(), int((diff > 0).sum()), len(diff), np.mean(ua["logreg"]),
                     np.mean(ua["pca_logreg"])))
    print(f"\nfraction  supervised UA      SSMM UA           SSMM - supervised (seeds better)   "
          f"| reference: logreg  PCA({args.pca})+logreg")
    for f, sm, ss, mm, ms, d, wins, k, lr, plr in rows:
        print(f"{f:8.2f}  {sm:.4f} +- {ss:.4f}  {mm:.4f} +- {ms:.4f}  {d:+.4f} ({wins}/{k})"
              f"{'':20s}|            {lr:.4f}  {plr:.4f}")


def bare_epoch(net: SSMMNet, lab: PooledInputs, labels: torch.Tensor, unl: PooledInputs, steps: int, batch: int,
               cfg: dict, semi: bool, gen: torch.Generator) -> float:
    """The same steps written as a plain torch loop: encode, CE, MSE, MMD inline, Adam."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    scales = cfg["mmd_kernel_scales"]

    def mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, y])
        d2 = torch.cdist(z, z).pow(2)
        b = d2.detach().sum() / (len(z) ** 2 - len(z))
        k = sum(torch.exp(-d2 / (b * s)) for s in scales)
        n = len(x)
        return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()

    def aux(inputs: PooledInputs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        x = {m: (inputs.vectors[m] - getattr(net, f"{m}_mean")) / getattr(net, f"{m}_std") for m in FUSION_ORDER}
        z = {m: net.autoencoders[m].encoder(x[m]) for m in FUSION_ORDER}
        rec = sum(F.mse_loss(net.autoencoders[m].decoder(z[m]), x[m]) for m in FUSION_ORDER)
        pairs = mmd(z["audio"], z["text"]) + mmd(z["audio"], z["visual"]) + mmd(z["text"], z["visual"])
        return z, cfg["recon_weight"] * rec + cfg["mmd_weight"] * pairs

    def unlabelled_loss(inputs: PooledInputs) -> torch.Tensor:
        z, loss = aux(inputs)
        if cfg["pseudo_label_weight"] > 0:
            logits = net.classify(z)
            confidence, target = logits.detach().softmax(1).max(1)
            confident = (confidence >= cfg["pseudo_label_threshold"]).float()
            loss = loss + cfg["pseudo_label_weight"] * (F.cross_entropy(logits, target, reduction="none")
                                                        * confident).mean()
        return loss

    start = time.perf_counter()
    for _ in range(steps):
        li = torch.randint(len(lab), (batch,), generator=gen)
        z, loss = aux(lab.index(li))
        loss = loss + F.cross_entropy(net.classify(z), labels[li])
        if semi:
            loss = loss + unlabelled_loss(unl.index(torch.randint(len(unl), (batch,), generator=gen)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def epoch(args: argparse.Namespace) -> None:
    """The demo: ~340 utterances, ~20% without labels; here train 240 / val 50 / test 50."""
    torch.set_num_threads(args.threads)
    full = shared_cluster_corpus(340, 0, frames=(10, 60), missing=0.05)
    train, val, test = full.subset(range(240)), full.subset(range(240, 290)), full.subset(range(290, 340))
    train.labels[torch.rand(240, generator=torch.Generator().manual_seed(0)) < 0.2] = UNLABELLED
    print(f"demo shape: train 240 ({int((train.labels == UNLABELLED).sum())} without label), val 50, test 50, "
          f"dims {DEMO_DIMS}, {args.threads} torch thread(s); {args.epochs} epochs, warm-up {args.warmup}")
    print("fraction  variant     labelled unlabelled steps/epoch  s/epoch (after warm-up)  bare torch  ratio")
    for fraction in (0.1, 0.3, 1.0):
        part = full.subset(range(240))
        part.labels = with_hidden_labels(train.utt_ids, train.labels, fraction, 0)
        for variant in ("supervised", "ssmm"):
            cfg = {**CONFIG, "variant": variant, "epochs": args.epochs, "warmup_epochs": args.warmup}
            out = train_and_evaluate(part, val, test, cfg, seed=0, device=torch.device("cpu"))
            ours = float(np.mean([r["seconds"] for r in out.history[args.warmup:]]))
            lab_idx = part.labelled()
            lab = pool_utterances(part.subset(lab_idx), "mean")
            unl = pool_utterances(part.subset((part.labels == UNLABELLED).nonzero().flatten()), "mean")
            net = SSMMNet(DEMO_DIMS, 4, CONFIG["hidden"], CONFIG["latent"], CONFIG["classifier_hidden"], 0.0)
            kaiming_init(net)
            net.set_normalisation(PooledInputs.concat([lab, unl]))
            steps = out.extras["steps_per_epoch"]
            bare = float(np.median([bare_epoch(net, lab, part.labels[lab_idx], unl, steps, CONFIG["batch_size"],
                                               cfg, variant == "ssmm", torch.Generator().manual_seed(r))
                                    for r in range(args.epochs - args.warmup)]))
            print(f"{fraction:8.1f}  {variant:10s}  {out.extras['n_labelled']:8d} {out.extras['n_unlabelled']:10d} "
                  f"{steps:11d}  {ours:23.4f}  {bare:10.4f}  {ours / bare:5.2f}", flush=True)
    print("s/epoch includes the per-epoch validation pass; bare torch is the training steps alone.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    c = sub.add_parser("claim", help="SSMM vs supervised-only UA over labelled fractions")
    c.add_argument("--fractions", type=float, nargs="+", default=[0.1])
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--train", type=int, default=400)
    c.add_argument("--val", type=int, default=100)
    c.add_argument("--test", type=int, default=400)
    c.add_argument("--absent", type=float, default=0.2, help="share of training utterances with no label at all")
    c.add_argument("--separation", type=float, default=1.5)
    c.add_argument("--noise", type=float, default=1.0)
    c.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    c.add_argument("--mismatch", action="store_true", help="switch on the mismatched-pairs MMD option")
    c.add_argument("--pseudo-label-weight", type=float, default=CONFIG["pseudo_label_weight"],
                   help="0 = docs/models.md's loss without our pseudo-label term")
    c.add_argument("--pca", type=int, default=8, help="principal axes of the linear reference")
    e = sub.add_parser("epoch", help="seconds per epoch at the demo shape")
    e.add_argument("--epochs", type=int, default=14)
    e.add_argument("--warmup", type=int, default=4)
    e.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", 1))
    {"claim": claim, "epoch": epoch}[args.part](args)


if __name__ == "__main__":
    main()
