"""What every corpus adapter needs: option merging, label schemes, root checks, text decoding, file listings.

The adapters read licensed releases exactly as they ship, so the traps they share live here once: macOS
AppleDouble (`._*`) files and `__MACOSX` folders in tarballs, text files re-encoded as cp1252 by some mirrors, and
Git LFS pointer files left by a clone without git-lfs.
"""

from __future__ import annotations

import codecs
import copy
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.manifest import ManifestError, Utterance

log = logging.getLogger(__name__)

# What a Git LFS pointer file starts with (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER_PREFIX = b"version https://git-lfs"
# Names that archives made on macOS add next to the real files.
MACOS_JUNK_DIRS = frozenset({"__MACOSX"})
MACOS_JUNK_FILES = frozenset({".DS_Store"})


class CorpusLayoutError(AffectflowError, FileNotFoundError):
    """The corpus tree is not what the release ships: missing root, missing required file, unfetched media."""


class CorpusOptionError(AffectflowError, ValueError):
    """An adapter option that is unknown or has a bad value; raised before any file is read."""


def resolve_options(corpus: str, defaults: Mapping[str, Any], options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The adapter's defaults overlaid with the given options; an unknown option name is an error (a typo)."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CorpusOptionError(f"{corpus}: unknown option(s) {unknown}; known options: {sorted(defaults)}")
    merged = copy.deepcopy(dict(defaults))
    merged.update(copy.deepcopy(given))
    return merged


def option_choice(corpus: str, options: Mapping[str, Any], name: str, choices: Sequence[Any]) -> Any:
    value = options[name]
    if value not in choices:
        raise CorpusOptionError(f"{corpus}: option {name!r} must be one of {list(choices)}, got {value!r}")
    return value


def option_bool(corpus: str, options: Mapping[str, Any], name: str) -> bool:
    value = options[name]
    if not isinstance(value, bool):
        raise CorpusOptionError(f"{corpus}: option {name!r} must be true or false, got {value!r}")
    return value


def option_mapping(corpus: str, options: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = options[name]
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CorpusOptionError(f"{corpus}: option {name!r} must be a mapping, got {value!r}")
    return dict(value)


def option_list(corpus: str, options: Mapping[str, Any], name: str, allowed: Iterable[Any] | None = None) -> list:
    value = options[name]
    if not isinstance(value, (list, tuple)) or not value:
        raise CorpusOptionError(f"{corpus}: option {name!r} must be a non-empty list, got {value!r}")
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in value if v not in allowed]
        if bad:
            raise CorpusOptionError(f"{corpus}: option {name!r} has {bad}, allowed: {allowed}")
    return list(value)


def option_encoding(corpus: str, options: Mapping[str, Any], name: str = "encoding") -> str:
    """`auto` or a text encoding Python knows (utf-8, cp1252, latin-1, ...)."""
    value = options[name]
    if value == "auto":
        return value
    try:
        codecs.lookup(value)
    except (LookupError, TypeError):
        raise CorpusOptionError(f"{corpus}: option {name!r} must be 'auto' or a text encoding, got {value!r}") \
            from None
    return value


OUTSIDE_CLASSES = ("unlabelled", "drop")


@dataclass(frozen=True)
class LabelScheme:
    """Raw corpus label codes -> the class list of one protocol; what happens to codes outside it is `outside`.

    `outside` is the option `outside_classes`: `unlabelled` (the default: the utterance stays, label null, in the
    unlabelled pool SSMM trains on) or `drop` (the utterance is left out of the manifest). `assign` counts every
    raw code it sees (`codes`) and the utterances it drops, for stats.json.
    """

    classes: tuple[str, ...]
    label_map: dict[str, str]
    outside: str = "unlabelled"
    codes: Counter = field(default_factory=Counter, compare=False)
    dropped: Counter = field(default_factory=Counter, compare=False)

    def label(self, raw: str | None) -> str | None:
        """The class a raw code maps to, or None (unlabelled) when it falls outside the class list."""
        if raw is None:
            return None
        mapped = self.label_map.get(raw, raw)
        return mapped if mapped in self.classes else None

    def keeps(self, label: str | None) -> bool:
        return label is not None or self.outside == "unlabelled"

    def assign(self, raw: str | None) -> tuple[str | None, bool]:
        """(label, keep) for one utterance's raw code, counting the code (None counts as `none`)."""
        code = "none" if raw is None else str(raw)
        self.codes[code] += 1
        label = self.label(raw)
        keep = self.keeps(label)
        if not keep:
            self.dropped[code] += 1
        return label, keep

    def stats(self) -> dict[str, Any]:
        """`codes`: every raw code seen with its count; `dropped_outside_classes`: those left out (`drop`)."""
        return {"codes": dict(sorted(self.codes.items())), "outside_classes": self.outside,
                "dropped_outside_classes": dict(sorted(self.dropped.items()))}


def label_defaults(label_set: str) -> dict[str, Any]:
    """The label options every adapter reads through `label_scheme`, with the adapter's default preset."""
    return {"label_set": label_set, "classes": None, "label_map": None,
            "outside_classes": "unlabelled"}  # or drop: codes outside the class list leave the manifest


def label_scheme(corpus: str, options: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]],
                 raw_codes: Iterable[str]) -> LabelScheme:
    """Resolve the options `label_set` (a preset name), `classes`, `label_map` and `outside_classes`.

    A preset gives the published class list and code map; `classes` / `label_map`, when set, replace the
    preset's (so `classes` alone narrows a preset: codes mapped outside it become unlabelled). Map keys must be
    raw codes of the corpus, a given map's targets must be classes, and every class must be reachable from some
    code, so a typo fails here rather than silently emptying a class.
    """
    name = option_choice(corpus, options, "label_set", sorted(presets))
    preset = presets[name]
    classes = options.get("classes")
    if classes is None:
        classes = preset["classes"]
    if (not isinstance(classes, (list, tuple)) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise CorpusOptionError(f"{corpus}: option 'classes' must be a non-empty list of names, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise CorpusOptionError(f"{corpus}: option 'classes' repeats a name: {list(classes)}")
    label_map = options.get("label_map")
    given = label_map is not None
    if not given:
        label_map = preset.get("label_map", {})
    if not isinstance(label_map, Mapping):
        raise CorpusOptionError(f"{corpus}: option 'label_map' must be a mapping, got {label_map!r}")
    codes = set(raw_codes)
    for raw, target in label_map.items():
        if raw not in codes:
            raise CorpusOptionError(f"{corpus}: label_map key {raw!r} is not a label code of the corpus "
                                    f"({sorted(codes)})")
        # a preset's map may point outside a narrower class list (those codes become unlabelled); a map the
        # user wrote may not: a target outside the classes is a typo
        if given and target not in classes:
            raise CorpusOptionError(f"{corpus}: label_map maps {raw!r} to {target!r}, which is not in "
                                    f"classes {list(classes)}")
    reachable = {label_map.get(code, code) for code in codes}
    unreachable = [c for c in classes if c not in reachable]
    if unreachable:
        raise CorpusOptionError(f"{corpus}: classes {unreachable} match no label code of the corpus "
                                f"({sorted(codes)}); add them to label_map")
    return LabelScheme(tuple(classes), dict(label_map),
                       option_choice(corpus, options, "outside_classes", OUTSIDE_CLASSES))


def require_root(root: str | Path, corpus: str, must_contain: Sequence[str] = (), hint: str = "") -> Path:
    """The corpus root as a Path, after checking it exists and holds the entries the release always has."""
    path = Path(root)
    if not path.is_dir():
        raise CorpusLayoutError(f"{corpus}: corpus root {path} does not exist or is not a directory"
                                + (f"; {hint}" if hint else ""))
    missing = [name for name in must_contain if not (path / name).exists()]
    if missing:
        raise CorpusLayoutError(f"{corpus}: corpus root {path} lacks {missing}" + (f"; {hint}" if hint else ""))
    return path


def is_visible(name: str) -> bool:
    """False for macOS tar/zip debris (`._x` AppleDouble twins, `.DS_Store`) and other hidden files."""
    return not name.startswith(".") and name not in MACOS_JUNK_FILES


def list_names(directory: Path, suffix: str | None = None) -> list[str]:
    """Names of the real files of one directory, sorted, without AppleDouble twins; suffix compared lower-case."""
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(directory)
                  if is_visible(entry.name) and (suffix is None or entry.name.lower().endswith(suffix))
                  and entry.is_file())


def list_files(directory: Path, suffix: str | None = None) -> list[Path]:
    """The real files of one directory as paths, sorted by name (see `list_names`)."""
    return [directory / name for name in list_names(directory, suffix)]


def stem_index(directory: Path, suffix: str, corpus: str) -> dict[str, str]:
    """stem -> file name of the real files of one directory whose suffix matches in any case (`.wav`, `.WAV`).

    Two files that differ only in the case of the extension (`x.wav` and `x.WAV`) are an error naming both: which
    one is the utterance is not something to guess.
    """
    index: dict[str, str] = {}
    for name in list_names(directory, suffix):
        stem = name[: -len(suffix)]
        if stem in index:
            raise CorpusLayoutError(f"{corpus}: {directory / index[stem]} and {directory / name} differ only in the "
                                    "case of the extension; keep one of them")
        index[stem] = name
    return index


def walk_files(root: Path, suffixes: Sequence[str]) -> Iterator[Path]:
    """Every real file under `root` with one of the suffixes (lower-case), in a deterministic order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in MACOS_JUNK_DIRS and is_visible(d))
        for name in sorted(filenames):
            if is_visible(name) and name.lower().endswith(tuple(suffixes)):
                yield Path(dirpath) / name


def relative(path: Path, root: Path) -> str:
    """A media path as the manifest stores it: relative to the corpus root, with forward slashes."""
    return path.relative_to(root).as_posix()


def decode_text(data: bytes, source: str | Path, encoding: str = "auto") -> tuple[str, str]:
    """Text of a corpus file and the encoding found; `auto` = UTF-8 (BOM dropped), else cp1252 line by line.

    Some mirrors of MELD re-encoded the CSVs as cp1252, and hand-edited copies mix the two: a UTF-8 decode of
    those fails on the first cp1252 curly quote. Decoding line by line keeps the UTF-8 lines intact and reads the
    others as cp1252; the encoding reported is `utf-8`, `cp1252` or `utf-8+cp1252`. A file saved as UTF-16 (what
    Windows editors call "Unicode") is decoded when it starts with its byte-order mark (reported `utf-16`); without
    one (NUL bytes between the characters) it is an error naming UTF-16 and the option that reads it.
    """
    if encoding == "auto":
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            try:
                return data.decode("utf-16"), "utf-16"
            except UnicodeDecodeError as err:
                raise ManifestError(f"starts with a UTF-16 byte-order mark but is not valid UTF-16 ({err.reason})",
                                    source=source) from None
        if b"\x00" in data[:4096]:
            guess = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
            raise ManifestError(f"holds NUL bytes: UTF-16 text without a byte-order mark? Re-save it as UTF-8 or set "
                                f"the corpus option encoding: {guess}", source=source, line=1)
        try:
            return data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            pass
        lines, found = [], set()
        for number, raw in enumerate(data.split(b"\n"), start=1):
            try:
                lines.append(raw.decode("utf-8"))
                if not raw.isascii():
                    found.add("utf-8")
            except UnicodeDecodeError:
                try:
                    lines.append(raw.decode("cp1252"))
                    found.add("cp1252")
                except UnicodeDecodeError as err:
                    raise ManifestError(f"neither UTF-8 nor cp1252 text (byte 0x{raw[err.start]:02x}); set the "
                                        "corpus option 'encoding'", source=source, line=number) from None
        return "\n".join(lines).removeprefix("\ufeff"), "+".join(sorted(found, reverse=True))
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ManifestError(f"not valid {encoding} (byte 0x{data[err.start]:02x}); try the corpus option "
                            "encoding: auto", source=source, line=line) from None
    return text.removeprefix("\ufeff"), encoding


def read_text(path: Path, encoding: str = "auto") -> tuple[str, str]:
    return decode_text(path.read_bytes(), path, encoding)


def is_lfs_pointer(path: Path) -> bool:
    """True when the file is a Git LFS pointer (a clone or zip download made without git-lfs)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX
    except OSError:
        return False


def number_turns(utterances: list[Utterance], order_key) -> list[Utterance]:  # noqa: ANN001 - a sort key
    """Give each dialogue's utterances turns 0..n-1 in `order_key` order (utt_id breaks ties)."""
    by_dialogue: dict[str, list[Utterance]] = {}
    isolated = []
    for utt in utterances:
        if utt.dialogue_id is None:
            isolated.append(utt)
        else:
            by_dialogue.setdefault(utt.dialogue_id, []).append(utt)
    out = list(isolated)
    for members in by_dialogue.values():
        members.sort(key=lambda u: (order_key(u), u.utt_id))
        out.extend(replace(u, turn=i) for i, u in enumerate(members))
    return sorted(out, key=lambda u: u.utt_id)


def summarise(utterances: Sequence[Utterance], classes: Sequence[str]) -> dict[str, Any]:
    """Counts every adapter reports: utterances, labels in class order, splits, speakers, media present."""
    labels = Counter(u.label for u in utterances if u.label is not None)
    splits = Counter(u.split for u in utterances if u.split is not None)
    return {
        "utterances": len(utterances),
        "labelled": sum(labels.values()),
        "unlabelled": sum(1 for u in utterances if u.label is None),
        "labels": {c: labels.get(c, 0) for c in classes},
        "splits": dict(sorted(splits.items())),
        "speakers": len({u.speaker for u in utterances}),
        "sessions": len({u.session for u in utterances}),
        "dialogues": len({u.dialogue_id for u in utterances if u.dialogue_id is not None}),
        "with_audio": sum(1 for u in utterances if u.audio is not None),
        "with_video": sum(1 for u in utterances if u.video is not None),
        "with_text": sum(1 for u in utterances if u.text),
    }
