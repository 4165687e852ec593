"""The one base class of the project's errors: bad input or configuration, reported in one line.

The CLI prints `affectflow: error: <what> (<where>) - <how to fix>` for any `AffectflowError` and exits 2; a
traceback appears only under `--debug`. Every error of the project derives from this class.
"""

from __future__ import annotations


class AffectflowError(Exception):
    """What went wrong, where (a file and line, or a params key), and how to fix it."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.fix = fix

    def __str__(self) -> str:
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.fix:
            text += f" - {self.fix}"
        return text
