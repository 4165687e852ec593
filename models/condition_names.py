"""The missing-modality conditions by name, over the three modalities or over any non-empty subset of them.

A condition names which modalities a model is fed, in MMIN's letters: position 1 audio (`a`), 2 visual (`v`),
3 lexical (`l`), `z` where that modality is zeroed ("azl": audio and text, no visual). Over the three modalities
there are the six missing conditions and the full one (`avl`). A corpus with fewer modalities has fewer: over
audio and text, the missing conditions `azz` and `zzl` and the full condition `azl`; over audio alone only the
full condition `azz`. Plain Python (no torch), so the split stage writes its condition table without torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MODALITIES: tuple[str, ...] = ("audio", "visual", "text")
LETTERS: dict[str, str] = {"audio": "a", "visual": "v", "text": "l"}
# condition name -> (audio, visual, text) presence, as MMIN writes them
CONDITIONS: dict[str, tuple[int, int, int]] = {
    "azz": (1, 0, 0), "zvz": (0, 1, 0), "zzl": (0, 0, 1),
    "avz": (1, 1, 0), "azl": (1, 0, 1), "zvl": (0, 1, 1),
    "avl": (1, 1, 1),
}
MISSING_CONDITIONS: tuple[str, ...] = ("azz", "zvz", "zzl", "avz", "azl", "zvl")
FULL_CONDITION = "avl"
AVERAGE = "average"  # the pooled missing conditions, as MMIN reports it


def ordered(modalities: Iterable[str]) -> tuple[str, ...]:
    """`modalities` in the canonical order audio, visual, text; an unknown name is a ValueError."""
    given = set(modalities)
    unknown = sorted(given - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; known: {list(MODALITIES)}")
    return tuple(m for m in MODALITIES if m in given)


def condition_name(present: Iterable[str]) -> str:
    """The condition feeding exactly the modalities `present` (non-empty): {audio, text} -> "azl"."""
    chosen = set(ordered(present))
    if not chosen:
        raise ValueError("a condition needs at least one present modality")
    return "".join(LETTERS[m] if m in chosen else "z" for m in MODALITIES)


def condition_modalities(name: str) -> tuple[str, ...]:
    """The modalities a condition feeds: "azl" -> (audio, text)."""
    if name not in CONDITIONS:
        raise ValueError(f"unknown condition {name!r}; known: {list(CONDITIONS)}")
    return tuple(m for m, flag in zip(MODALITIES, CONDITIONS[name], strict=True) if flag)


def full_condition(modalities: Iterable[str]) -> str:
    """The condition with every one of `modalities` present (the full input of a corpus that has only those)."""
    return condition_name(modalities)


def missing_conditions(modalities: Iterable[str]) -> tuple[str, ...]:
    """The conditions that drop some but not all of `modalities`, in MMIN's order; none for one modality."""
    have = set(ordered(modalities))
    return tuple(c for c in MISSING_CONDITIONS if set(condition_modalities(c)) < have)


def conditions_over(modalities: Iterable[str]) -> tuple[str, ...]:
    """Every condition over `modalities`: the missing ones, then the full one (the reported test conditions)."""
    mods = ordered(modalities)
    return (*missing_conditions(mods), full_condition(mods))


def training_conditions(names: Sequence[str], modalities: Iterable[str]) -> list[str]:
    """A configured list of training conditions (written over the three modalities) as conditions over
    `modalities`: the full condition `avl` becomes the full condition over them; a missing condition stays when it
    still drops some but not all of them (`avz` on an audio-and-text corpus does not: there is no visual to drop).
    The result may be empty (a missing-condition list over one modality); order kept, duplicates dropped."""
    mods = ordered(modalities)
    missing = set(missing_conditions(mods))
    out: list[str] = []
    for name in names:
        condition_modalities(name)  # unknown names fail here
        mapped = full_condition(mods) if name == FULL_CONDITION else name if name in missing else None
        if mapped is not None and mapped not in out:
            out.append(mapped)
    return out


def selection_condition(name: str, modalities: Iterable[str]) -> str:
    """A configured selection condition (`select_on`) over `modalities`: `avl` is their full condition, `average`
    stays when they have missing conditions and is the full condition over one modality; a named condition must
    feed only modalities among them."""
    mods = ordered(modalities)
    if name == AVERAGE:
        return AVERAGE if missing_conditions(mods) else full_condition(mods)
    if name == FULL_CONDITION:
        return full_condition(mods)
    if not set(condition_modalities(name)) <= set(mods):
        raise ValueError(f"condition {name!r} feeds {list(condition_modalities(name))}, not all among the "
                         f"modalities {list(mods)}")
    return name


def modalities_of(conditions: Iterable[str]) -> tuple[str, ...]:
    """The modalities a set of condition names covers (the union of what they feed; "average" ignored)."""
    return ordered({m for c in conditions if c in CONDITIONS for m in condition_modalities(c)})
