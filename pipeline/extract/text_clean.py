"""Cleaning transcripts before tokenisation: Unicode normalisation, mojibake repair, control characters.

Real transcripts carry bytes the tokenizer should never see: MELD mirrors re-encoded through cp1252 (`Iâ€™m` for
`I’m`), byte-order marks and zero-width characters pasted from subtitle files, NULs and other C0/C1 controls,
lone surrogates from files decoded with `surrogateescape`. The result is what the tokenizer reads; an empty
result means the transcript is missing.
"""

from __future__ import annotations

import re
import unicodedata

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD")
# Characters that only appear in UTF-8 text wrongly decoded as cp1252 / latin-1 (lead bytes 0xC2-0xF0).
_MOJIBAKE_MARKERS = re.compile("[\u00c2-\u00c3\u00e2\u00f0][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d"
                               "\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030"
                               "\u2039\u203a\u20ac\u2122]")
_SPACES = re.compile(r"\s+")


def repair_mojibake(text: str) -> str:
    """Undo one round of UTF-8 read as cp1252 (or latin-1); text without the telltale pairs is returned as is."""
    if not _MOJIBAKE_MARKERS.search(text):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return text


def strip_controls(text: str) -> str:
    """Control characters become spaces (tab, newline and C0/C1 controls); format characters (BOM, zero-width,
    bidi marks, soft hyphen) and lone surrogates are dropped."""
    if text.isprintable():  # no character of category C* or Z* other than the space: nothing to do (fast path)
        return text
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cc":
            out.append(" ")
        elif category in ("Cf", "Cs"):
            continue
        else:
            out.append(ch)
    return "".join(out)


def clean_transcript(text: str | None, normal_form: str | None = "NFC", fix_mojibake: bool = True) -> str:
    """The transcript as the tokenizer should read it: repaired, normalised, controls stripped, spaces collapsed."""
    if text is None:
        return ""
    if fix_mojibake:
        text = repair_mojibake(text)
    text = strip_controls(text)
    if normal_form:
        text = unicodedata.normalize(normal_form, text)
    return _SPACES.sub(" ", text).strip()
