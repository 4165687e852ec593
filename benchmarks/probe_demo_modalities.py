"""How much each modality of the demo tells about the emotion, measured on the data alone (no pipeline stage, no
trained face encoder): a leave-one-speaker-out logistic regression per modality, UA averaged over speakers.

- audio: openSMILE ComParE_2016 LLDs, mean and std over the utterance;
- text: TF-IDF of the transcript's words;
- visual: the face box of every second frame with a face, 24x24 grey, mean and std over frames, PCA to 40.

Not a timing benchmark and not the pipeline's check (that is the full-modality baseline's single-modality UA after
`dvc repro train@utt_fusion-demo`): a quick look, in minutes on a CPU, at whether a setting of
`corpora.demo.options` ranks the modalities as IEMOCAP's (text > audio > visual) before spending the training.

    python benchmarks/probe_demo_modalities.py                      # params.yaml's demo options
    python benchmarks/probe_demo_modalities.py '{"articulation": 0}'   # the same with options changed
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import opensmile
import soundfile as sf
import yaml
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.corpora import demo
from pipeline.corpora.demo_video import FACE_BOX

ROOT = Path(__file__).resolve().parents[1]


def leave_one_speaker_out(features: Any, labels: np.ndarray, speakers: np.ndarray,
                          model: Callable[[], Any]) -> float:
    """UA averaged over the held-out speakers."""
    scores = []
    for speaker in sorted(set(speakers)):
        train, test = np.flatnonzero(speakers != speaker), np.flatnonzero(speakers == speaker)
        pick = (lambda idx: [features[i] for i in idx]) if isinstance(features, list) else (lambda idx: features[idx])
        fitted = model().fit(pick(train), labels[train])
        scores.append(recall_score(labels[test], fitted.predict(pick(test)), average="macro"))
    return float(np.mean(scores))


def face_pixels(path: Path, visible: list[bool], size: int) -> np.ndarray:
    x0, y0, x1, y1 = (int(v * size) for v in FACE_BOX)
    capture, frames, index = cv2.VideoCapture(str(path)), [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index < len(visible) and visible[index] and index % 2 == 0:
            grey = cv2.cvtColor(frame[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
            frames.append(cv2.resize(grey, (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32).ravel())
        index += 1
    capture.release()
    stacked = np.array(frames) if frames else np.zeros((1, 24 * 24), np.float32)
    return np.concatenate([stacked.mean(0), stacked.std(0)])


def probe(options: dict[str, Any], root: Path) -> dict[str, float]:
    demo.generate(root, options, progress=False)
    resolved = demo.resolve_demo_options(options)
    classes, size = list(resolved["classes"]), int(resolved["video"]["size"])
    truth = {row["utt_id"]: row for row in map(json.loads, (root / "truth.jsonl").read_text().splitlines())}
    utts = [u for u in demo.read_transcripts(root, classes) if u.label is not None]
    labels = np.array([classes.index(u.label) for u in utts])
    speakers = np.array([u.speaker for u in utts])
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    audio = []
    for u in utts:
        wave, sr = sf.read(root / u.audio.path)
        lld = smile.process_signal(wave, sr).to_numpy()
        audio.append(np.concatenate([lld.mean(0), lld.std(0)]))
    visual = np.array([face_pixels(root / u.video.path, truth[u.utt_id]["face_visible"], size) for u in utts])

    def logistic(strength: float = 0.1) -> LogisticRegression:
        return LogisticRegression(max_iter=3000, C=strength)

    return {
        "text": leave_one_speaker_out([u.text for u in utts], labels, speakers,
                                      lambda: make_pipeline(TfidfVectorizer(), logistic(10.0))),
        "audio": leave_one_speaker_out(np.array(audio), labels, speakers,
                                       lambda: make_pipeline(StandardScaler(), logistic())),
        "visual": leave_one_speaker_out(visual, labels, speakers,
                                        lambda: make_pipeline(StandardScaler(), PCA(40, random_state=0), logistic())),
    }


def main() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    options = {**params["corpora"]["demo"]["options"], **(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ua = probe(options, Path(tmp) / "demo")
    print(f"leave-one-speaker-out UA: text {ua['text']:.3f}, audio {ua['audio']:.3f}, visual {ua['visual']:.3f} "
          f"({time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
