"""A small deterministic extractor for testing stores, executors and resume (no media needed)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.extract import Extractor
from pipeline.manifest import Segment, Utterance
from pipeline.store import UtteranceFeatures


class ToyExtractor(Extractor):
    """Features derived from the utterance id; `sleep` seconds per unit; ids in `fail_ids` come back missing."""

    name = "toy"
    version = "1"
    modality = "text"
    has_frame_valid = True

    @property
    def dim(self) -> int:
        return int(self.config.get("dim", 4))

    def describe(self) -> dict[str, Any]:
        return {"feature_names": [f"f{i}" for i in range(self.dim)], "frame_hop_s": 0.01}

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        time.sleep(float(self.config.get("sleep", 0.0)))
        out = []
        for utt in utts:
            if utt.utt_id in self.config.get("fail_ids", []):
                out.append(UtteranceFeatures.missing("toy failure", self.dim))
                continue
            seed = int.from_bytes(hashlib.sha256(utt.utt_id.encode()).digest()[:4], "little")
            rng = np.random.default_rng(seed)
            n = int(rng.integers(0, 7))
            feats = rng.standard_normal((n, self.dim)).astype(np.float32)
            out.append(UtteranceFeatures(feats, n > 0, rng.random(n) > 0.2, "" if n else "empty"))
        return out


def toy_utterances(n: int) -> list[Utterance]:
    return [Utterance(utt_id=f"u{i:04d}", corpus="toy", speaker=f"s{i % 3}", session="s",
                      audio=Segment(f"a{i}.wav"), text=f"text {i}") for i in range(n)]


class BrokenSetupExtractor(ToyExtractor):
    """Fails to load its model, as an extractor whose weights vanished after the stage checked them."""

    def setup(self) -> None:
        raise FileNotFoundError("weights.pt vanished")
