"""The toy extractor with faults: its worker process kills itself, or it raises, at chosen utterances.

The faults are set on the instance, not in `config`, so the store's attributes (and bytes) stay those of the plain
toy extractor with the same config. `*_once` faults first claim a marker file in `markers` (atomically), so across
worker processes and restarts each happens exactly once and the rerun succeeds; the marker holds the pid.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures
from tests.toy_extractor import ToyExtractor

FAULTS = ("sigkill_once", "raise_once", "raise_always")


class FaultyToyExtractor(ToyExtractor):
    """ToyExtractor that SIGKILLs its own process or raises when a unit holds one of the `faults` utterances."""

    def __init__(self, config: dict[str, Any], corpus_root: Path, *, faults: dict[str, str] | None = None,
                 markers: Path | None = None) -> None:
        unknown = sorted(set((faults or {}).values()) - set(FAULTS))
        if unknown:
            raise ValueError(f"faults must be among {FAULTS}, got {unknown}")
        super().__init__(config, corpus_root)
        self.faults, self.markers = dict(faults or {}), markers

    def marker(self, utt_id: str) -> Path:
        assert self.markers is not None, "once-faults need a markers directory"
        return self.markers / f"{utt_id}.pid"

    def _claim(self, utt_id: str) -> bool:
        """True for the first process to get here (it writes its pid to the marker), False afterwards."""
        try:
            fd = os.open(self.marker(utt_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        for utt in utts:
            fault = self.faults.get(utt.utt_id)
            if fault == "raise_always" or (fault == "raise_once" and self._claim(utt.utt_id)):
                raise ValueError(f"cannot decode {utt.utt_id}")
            if fault == "sigkill_once" and self._claim(utt.utt_id):
                os.kill(os.getpid(), signal.SIGKILL)
        return super().process(utts)
