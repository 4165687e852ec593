"""The toy extractor with a fault: its worker process kills itself, or it raises, at a chosen utterance.

The fault is set on the instance, not in `config`, so the store's attributes (and bytes) stay those of the plain
toy extractor with the same config. `once` faults claim a marker file first (atomically), so across worker
processes and restarts the fault happens exactly once and the rerun succeeds.
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

FAULTS = ("sigkill_once", "raise_once", "raise_always", "setup_raises")


class FaultyToyExtractor(ToyExtractor):
    """ToyExtractor that SIGKILLs its own process or raises when a unit holds `victim`."""

    def __init__(self, config: dict[str, Any], corpus_root: Path, *, fault: str, victim: str = "",
                 marker: Path | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        super().__init__(config, corpus_root)
        self.fault, self.victim, self.marker = fault, victim, marker

    def _claim(self) -> bool:
        """True for the first process to get here (it records its pid in the marker), False afterwards."""
        assert self.marker is not None
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    def setup(self) -> None:
        if self.fault == "setup_raises":
            raise RuntimeError("model files not found on this node")

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        if any(u.utt_id == self.victim for u in utts):
            if self.fault == "raise_always" or (self.fault == "raise_once" and self._claim()):
                raise ValueError(f"cannot decode {self.victim}")
            if self.fault == "sigkill_once" and self._claim():
                os.kill(os.getpid(), signal.SIGKILL)
        return super().process(utts)
