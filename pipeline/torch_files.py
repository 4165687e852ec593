"""Checkpoint files read back by a stage (a Denseface checkpoint, the weights a finetune starts from): one check for
every `torch.load`, so an empty, truncated or Git-LFS-pointer file is one line naming it, not a traceback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.missing import is_lfs_pointer

log = logging.getLogger(__name__)
RESTORE = "re-run the stage that writes it (dvc repro) or restore it with `dvc checkout`"


class CheckpointError(AffectflowError, ValueError):
    """A checkpoint that cannot be used as configured; the message names the file and what differs."""


def read_torch_file(path: str | Path, kind: str) -> Any:
    """`torch.load(weights_only=True)` of a checkpoint, failing in one line naming the file when it is empty, a
    Git LFS pointer, truncated or not a torch file at all."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} not found", str(path), RESTORE)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{kind} is empty (0 bytes)", str(path), RESTORE)
    if is_lfs_pointer(path):
        raise CheckpointError(f"{kind} is a Git LFS pointer, not weights", str(path), "run `git lfs pull`, or "
                              + RESTORE)
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a foreign, truncated or corrupt file
        log.debug("%s: torch.load failed: %s: %s", path, type(err).__name__, err)
        raise CheckpointError(f"{kind} cannot be loaded ({size} bytes; truncated or not a torch file)", str(path),
                              RESTORE) from None
