"""A stage's declared outputs written all or nothing, and a stage that stops cleanly on SIGINT/SIGTERM.

`StagedOutputs` checks, before any work, that every output's folder can be written; the stage then writes into
temporaries beside the outputs (a staging folder for a directory output, `.<name>.partial` for a file) and
`commit` renames them into place at the end. A failure or a signal discards the temporaries, so the declared
paths hold either the previous run's complete outputs or this run's, never a mix, and a full disk or an
unwritable folder is one line, not a traceback.

`SignalGuard` turns SIGINT and SIGTERM into `Stopped` (a BaseException, so no `except Exception` swallows it),
except inside `critical()` sections (starting a worker pool, renaming the outputs), where the signal is held
until the section ends, and `shielded()` ones (the cleanup after a stop), where a second signal is dropped.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError


class OutputError(AffectflowError):
    """An output that cannot be written: an unwritable folder, a full disk."""


class Interrupted(AffectflowError):
    """The stage was stopped by a signal; nothing was written at its outputs."""


class Stopped(BaseException):
    """Raised by SignalGuard's handler in the main thread."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def os_reason(err: OSError) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if err.errno == errno.EROFS:
        return "the file system is read-only"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or str(err)


class SignalGuard:
    """SIGINT and SIGTERM raise `Stopped` in the main thread while installed; held during `critical()`."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._depth = 0
        self._held: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self._depth:
            self._held = signum
            return
        raise Stopped(signum)

    @contextmanager
    def installed(self) -> Iterator[SignalGuard]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals are only delivered to the main thread; KeyboardInterrupt still applies
            return
        self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, previous in self._previous.items():
                signal.signal(s, previous)

    @contextmanager
    def critical(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._held is not None:
                held, self._held = self._held, None
                raise Stopped(held)


    @contextmanager
    def shielded(self) -> Iterator[None]:
        """For cleanup after a stop: a second Ctrl-C is dropped, so the cleanup always finishes."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth:
                self._held = None


def ignore_interrupts_in_worker() -> None:
    """For pool workers: Ctrl-C reaches the whole process group, but only the parent decides to stop (it
    terminates the pool); a worker that died of SIGINT would be replaced by the pool and training would go on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class StagedOutputs:
    """One directory output, any number of file outputs and further directory outputs (`directories`), written
    through temporaries beside them."""

    def __init__(self, directory: Path, files: list[Path], directories: list[Path] | None = None) -> None:
        self.directory = Path(directory)
        self.files = [Path(f) for f in files]
        self.directories = [Path(d) for d in directories or []]
        self.staging = self.directory.with_name(f".{self.directory.name}.partial")
        self._started = False

    def staged(self, directory: Path) -> Path:
        """The staging folder of a directory output (the main one or one of `directories`)."""
        return self.staging if Path(directory) == self.directory else self.partial(Path(directory))

    def partial(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.partial")

    def check_writable(self) -> None:
        """Create every output's folder and write a probe file in it, before any work starts."""
        for target in (self.directory, *self.directories, *self.files):
            folder = target.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".{target.name}.probe-{os.getpid()}"
                with open(probe, "wb") as fh:
                    fh.write(b"probe")
                    fh.flush()
                    os.fsync(fh.fileno())
                probe.unlink()
            except OSError as err:
                raise OutputError(f"cannot write the outputs: {os_reason(err)}", str(folder),
                                  "make the folder writable (or free space) and run again") from None
            if target.exists() and target.is_dir() != (target == self.directory or target in self.directories):
                kind = "a folder" if target.is_dir() else "a file"
                raise OutputError(f"the output is {kind} where the stage writes the other", str(target),
                                  "remove it and run again")

    def begin(self) -> Path:
        """A fresh, empty staging folder for the directory output (a stale one of a killed run is removed)."""
        self.discard()
        self.staging.mkdir(parents=True)
        for directory in self.directories:
            self.partial(directory).mkdir(parents=True)
        self._started = True
        return self.staging

    def declared(self, path: str | Path | None) -> Path:
        """The declared output a temporary stands for (the directory output when unknown)."""
        if path is not None:
            path = Path(path)
            for output in self.files:
                if path in (output, self.partial(output)):
                    return output
        return self.directory

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write `data` to the temporary of the file output `path`, or to `path` inside the staging folder."""
        target = self.partial(path) if path in self.files else path
        with open(target, "wb") as fh:
            fh.write(data)

    def write_text(self, path: Path, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def commit(self) -> None:
        """Rename every temporary onto its output; the previous directory output goes only once the new is in."""
        old = self.directory.with_name(f".{self.directory.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.directory.exists() or self.directory.is_symlink():
            os.replace(self.directory, old)
        os.replace(self.staging, self.directory)
        for path in self.files:
            os.replace(self.partial(path), path)
        shutil.rmtree(old, ignore_errors=True)
        for directory in self.directories:  # these hold no weights: the old one goes first
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(self.partial(directory), directory)
        self._started = False

    def discard(self) -> None:
        """Remove every temporary; the outputs themselves are left as they were."""
        shutil.rmtree(self.staging, ignore_errors=True)
        for directory in self.directories:
            shutil.rmtree(self.partial(directory), ignore_errors=True)
        for path in self.files:
            self.partial(path).unlink(missing_ok=True)
        self._started = False


def torch_bytes(obj: Any) -> bytes:
    """`torch.save` into memory, so that writing the file fails with a plain OSError (a full disk)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
