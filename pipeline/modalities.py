"""The three modalities, which of them a corpus has, and which modality each extractor feeds.

A corpus entry may declare `modalities: [audio]` (any non-empty subset, default all three); each `extractors.<name>`
entry names its `modality`. Extraction, the train stages' dependencies and training use only a corpus's modalities.
"""

from __future__ import annotations

from typing import Any

MODALITIES: tuple[str, ...] = ("audio", "visual", "text")


def corpus_modalities(params: dict[str, Any], corpus: str) -> tuple[str, ...]:
    """The modalities of `corpora.<corpus>`, in the canonical order audio, visual, text."""
    from pipeline.params import ConfigError, lookup

    declared = lookup(params, f"corpora.{corpus}.modalities", list(MODALITIES))
    if not isinstance(declared, list) or not declared or any(m not in MODALITIES for m in declared):
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: key 'corpora.{corpus}.modalities' must be a "
                          f"non-empty list of {', '.join(MODALITIES)}, got {declared!r}")
    return tuple(m for m in MODALITIES if m in declared)


def extractor_modality(params: dict[str, Any], extractor: str) -> str:
    """The modality an extractor's store feeds (`extractors.<extractor>.modality`)."""
    from pipeline.params import ConfigError, lookup

    modality = lookup(params, f"extractors.{extractor}.modality")
    if modality not in MODALITIES:
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: key 'extractors.{extractor}.modality' must be one "
                          f"of {', '.join(MODALITIES)}, got {modality!r}")
    return modality
