"""Kept for `pipeline/stages.py`, which names this module as the extract and faces stages' code: the stage entry
now lives in `pipeline.extract.stage` (and `extract_to_store` in `pipeline.extract.to_store`). Remove this file
once stages.py names `pipeline.extract.stage`."""

from pipeline.extract.stage import (  # noqa: F401 - re-exported
    STAGE_KEYS,
    check_corpus_has_modality,
    extract_corpus,
    extractor_settings,
    store_path,
    track_faces,
)
