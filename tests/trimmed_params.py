"""For tests that trim the project's params.yaml to corpora of their own: the cross-corpus protocols name the
demo's corpora (demo -> demo_b), so they go with them, and so does the report's cross-corpus section."""

from __future__ import annotations

from typing import Any


def without_cross_corpus(params: dict[str, Any]) -> dict[str, Any]:
    """`params` without `cross_corpus` and `report.cross` (in place, and returned)."""
    params.pop("cross_corpus", None)
    if isinstance(params.get("report"), dict):
        params["report"].pop("cross", None)
    return params
