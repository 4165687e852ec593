"""How much each modality's feature store tells about the emotion: the pipeline's own stores, probed linearly.

`probe_demo_modalities.py` probes the demo's raw media (ComParE LLDs, TF-IDF, face pixels); the models never see
those. This probe reads what training reads: the stores that `train.features` names for each modality
(compare.h5, denseface.h5, bert.h5 on the demo), pools each utterance's valid frames (mean and std), and fits a
leave-one-speaker-out logistic regression per modality on the labelled utterances where the modality is present.
UA is averaged over the held-out speakers; chance is 1 / classes.

It is the instrument for setting `corpora.demo.options` before training: the options are chosen so that the
stores rank the modalities as the MMIN paper's IEMOCAP table does (text > audio > visual, each trained alone),
never against the trained models' results.

    dvc repro extract-face@demo-denseface extract@demo-compare extract@demo-bert   # the stores
    python benchmarks/probe_demo_stores.py [--corpus demo] [--pca 64]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.manifest import read_manifest  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.store import FeatureStore  # noqa: E402


def pooled(store: FeatureStore, utt_id: str) -> np.ndarray | None:
    """Mean and std over the utterance's valid frames; None where the modality is absent."""
    if not store.present[store.index[utt_id]]:
        return None
    frames = store.get(utt_id, valid_only=True).astype(np.float64)
    if len(frames) == 0:
        return None
    return np.concatenate([frames.mean(0), frames.std(0)])


def probe(store_path: Path, utts: list, classes: list[str], pca: int) -> tuple[float, int]:
    store = FeatureStore(store_path)
    rows, labels, speakers = [], [], []
    for u in utts:
        x = pooled(store, u.utt_id) if u.utt_id in store else None
        if x is not None:
            rows.append(x)
            labels.append(classes.index(u.label))
            speakers.append(u.speaker)
    x, y, s = np.stack(rows), np.array(labels), np.array(speakers)
    scores = []
    for speaker in sorted(set(s)):
        train, test = s != speaker, s == speaker
        steps = [StandardScaler()] + ([PCA(min(pca, x.shape[1], int(train.sum())), random_state=0)] if pca else [])
        model = make_pipeline(*steps, StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(x[train], y[train])
        scores.append(recall_score(y[test], model.predict(x[test]), average="macro",
                                   labels=np.unique(y[test])))
    return float(np.mean(scores)), len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="demo")
    parser.add_argument("--pca", type=int, default=64, help="components after standardising (0: none)")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    corpus = params["corpora"][args.corpus]
    classes = list(corpus["options"]["classes"])
    features = {**params["train"]["features"], **corpus.get("train", {}).get("features", {})}
    utts = [u for u in read_manifest(ROOT / "data" / args.corpus / "manifest.jsonl") if u.label in classes]
    print(f"{args.corpus}: {len(utts)} labelled utterances, {len(set(u.speaker for u in utts))} speakers, "
          f"chance {1 / len(classes):.2f}; load average {os.getloadavg()[0]:.2f}")
    for modality in ("text", "audio", "visual"):
        path = ROOT / "features" / args.corpus / f"{features[modality]}.h5"
        ua, n = probe(path, utts, classes, args.pca)
        print(f"  {modality:6s} {path.name:16s} UA {ua:.3f}  ({n} utterances with the modality)")


if __name__ == "__main__":
    main()
