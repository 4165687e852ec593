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


# ---- which modalities (and so which stores) a model trains on -----------------------------------------------

MODALITY_LETTERS: dict[str, str] = {"a": "audio", "v": "visual", "t": "text"}  # MMGCN's `modalities: avt`
# families that cannot train on fewer modalities than this, and why
FAMILY_MIN_MODALITIES: dict[str, tuple[int, str]] = {
    "mmin": (2, "MMIN imagines missing modalities from the present ones; over one modality nothing is missing"),
}


def _model_entry(params: dict[str, Any], model: str, corpus: str, key: str) -> Any:
    """`corpora.<corpus>.train.models.<model>.<key>`, else `models.<model>.<key>`, else None."""
    from pipeline.params import lookup

    override = lookup(params, f"corpora.{corpus}.train.models.{model}.{key}", None)
    return override if override is not None else lookup(params, f"models.{model}.{key}", None)


def model_features(params: dict[str, Any], model: str, corpus: str) -> dict[str, str]:
    """modality -> extractor whose store the model reads, for every modality named.

    `train.features` (deep-merged with `corpora.<corpus>.train.features`) unless the model has its own `features`
    (`models.<model>.features`, merged with `corpora.<corpus>.train.models.<model>.features`): those replace it
    whole, so a model can name a subset of the modalities (it then trains on that subset).
    """
    from pipeline.params import ConfigError, lookup, merged

    where = params.get("_path", "params.yaml")
    own = lookup(params, f"models.{model}.features", None)
    own_override = lookup(params, f"corpora.{corpus}.train.models.{model}.features", None)
    if own is not None or own_override is not None:
        features, key = merged(own or {}, own_override), f"models.{model}.features"
    else:
        features = merged(lookup(params, "train.features", {}) or {},
                          lookup(params, f"corpora.{corpus}.train.features", None))
        key = "train.features"
    if (not isinstance(features, dict) or not features or any(m not in MODALITIES for m in features)
            or not all(isinstance(x, str) and x for x in features.values())):
        raise ConfigError(f"{where}: key '{key}' must map modalities ({', '.join(MODALITIES)}) to extractor names, "
                          f"got {features!r}")
    return {m: features[m] for m in MODALITIES if m in features}


def _own_modalities(params: dict[str, Any], model: str, corpus: str) -> tuple[str, ...] | None:
    """A model's own `modalities` setting (MMGCN's letters `avt`, or a list of modality names), or None."""
    from pipeline.params import ConfigError

    value = _model_entry(params, model, corpus, "modalities")
    if value is None:
        return None
    names = [MODALITY_LETTERS.get(c) for c in value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or any(m not in MODALITIES for m in names):
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: key 'models.{model}.modalities' must be letters of "
                          f"'avt' or a non-empty list of {', '.join(MODALITIES)}, got {value!r}")
    return tuple(m for m in MODALITIES if m in names)


def _trainable(params: dict[str, Any], model: str, corpus: str) -> tuple[tuple[str, ...], str | None]:
    """(the modalities `model` trains on for `corpus`, None) or ((), why it cannot train there)."""
    have = corpus_modalities(params, corpus)
    features = model_features(params, model, corpus)
    chosen = [m for m in have if m in features]
    own = _own_modalities(params, model, corpus)
    if own is not None:
        chosen = [m for m in chosen if m in own]
    if not chosen:
        return (), (f"model {model!r} has no modality to train on for corpus {corpus!r}: the corpus has {list(have)} "
                    f"(corpora.{corpus}.modalities), the model reads {list(own or features)} "
                    f"(models.{model}.modalities / features)")
    family = _model_entry(params, model, corpus, "family")
    needed, why = FAMILY_MIN_MODALITIES.get(family, (1, ""))
    if len(chosen) < needed:
        return (), (f"model {model!r} ({family}) needs at least {needed} modalities, corpus {corpus!r} gives it "
                    f"{chosen} ({why}); leave it out for this corpus or use utt_fusion")
    return tuple(chosen), None


def model_modalities(params: dict[str, Any], model: str, corpus: str) -> tuple[str, ...]:
    """The modalities `model` trains on for `corpus`: the corpus's, intersected with the model's own `modalities`
    and with the modalities its features name; canonical order. An empty intersection, or fewer than a family
    needs (MMIN: two), is a ConfigError naming the keys."""
    from pipeline.params import ConfigError

    chosen, why = _trainable(params, model, corpus)
    if why is not None:
        raise ConfigError(f"{params.get('_path', 'params.yaml')}: {why}")
    return chosen


def model_fits_corpus(params: dict[str, Any], model: str, corpus: str) -> bool:
    """Whether `model` can train on `corpus` at all (no shared modality, or MMIN over one modality, cannot): the
    stage list leaves those pairs out. A malformed setting still raises ConfigError."""
    return _trainable(params, model, corpus)[1] is None


def model_extractors(params: dict[str, Any], model: str, corpus: str) -> dict[str, str]:
    """modality -> extractor of the stores `model` reads on `corpus` (only the modalities it trains on): the
    train stage opens exactly these, and they are its stage's store dependencies."""
    features = model_features(params, model, corpus)
    return {m: features[m] for m in model_modalities(params, model, corpus)}
