"""The helpers every adapter shares, the registry contract across all adapters, and the "Add a corpus" recipe."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.corpora import ADAPTERS, PreparedCorpus, adapter
from pipeline.corpora.common import (
    CorpusOptionError,
    decode_text,
    is_lfs_pointer,
    label_scheme,
    list_files,
    number_turns,
    resolve_options,
    walk_files,
)
from pipeline.manifest import ManifestError, Utterance, validate
from tests import corpus_fixtures as fx

# ------------------------------------------------------------------------------------------------------ helpers


def test_resolve_options_overlays_defaults_and_rejects_typos() -> None:
    defaults = {"a": 1, "b": {"x": 1}}
    merged = resolve_options("c", defaults, {"a": 2})
    assert merged == {"a": 2, "b": {"x": 1}}
    merged["b"]["x"] = 5
    assert defaults["b"]["x"] == 1  # defaults are copied, never shared
    assert resolve_options("c", defaults, None) == defaults
    with pytest.raises(CorpusOptionError, match=r"unknown option\(s\) \['aa'\]"):
        resolve_options("c", defaults, {"aa": 1})


def test_decode_text_utf8_cp1252_mixed_and_explicit() -> None:
    assert decode_text("\ufeffcaf\u00e9 \u2019".encode(), "f") == ("caf\u00e9 \u2019", "utf-8")
    assert decode_text("it\u2019s".encode("cp1252"), "f") == ("it\u2019s", "cp1252")
    mixed = "one \u2019\n".encode() + "two \u2019\n".encode("cp1252")
    assert decode_text(mixed, "f") == ("one \u2019\ntwo \u2019\n", "utf-8+cp1252")
    with pytest.raises(ManifestError, match=r"f:line 2: not valid utf-8"):
        decode_text(mixed, "f", "utf-8")
    with pytest.raises(ManifestError, match=r"f:line 1: neither UTF-8 nor cp1252"):
        decode_text(b"\x81\x8d", "f")


def test_appledouble_and_hidden_files_are_not_listed(tmp_path: Path) -> None:
    real = fx.put_text(tmp_path / "a" / "x.txt", "x")
    fx.put_appledouble(real)
    fx.put_text(tmp_path / "a" / ".DS_Store", "")
    fx.put_text(tmp_path / "__MACOSX" / "a" / "._x.txt", "")
    assert list_files(tmp_path / "a", ".txt") == [real]
    assert list(walk_files(tmp_path, (".txt",))) == [real]
    assert list_files(tmp_path / "absent") == []


def test_lfs_pointer_detection(tmp_path: Path) -> None:
    pointer = fx.put_text(tmp_path / "p.wav", fx.LFS_POINTER)
    assert is_lfs_pointer(pointer)
    assert not is_lfs_pointer(fx.put_wav(tmp_path / "w.wav"))
    assert not is_lfs_pointer(tmp_path / "absent.wav")


def test_number_turns_orders_each_dialogue_and_leaves_isolated_ones() -> None:
    utts = [Utterance("b", "c", "s", "s", dialogue_id="d"), Utterance("a", "c", "s", "s", dialogue_id="d"),
            Utterance("z", "c", "s", "s")]
    start = {"a": 2.0, "b": 1.0, "z": 0.0}
    numbered = number_turns(utts, lambda u: start[u.utt_id])
    assert [(u.utt_id, u.turn) for u in numbered] == [("a", 1), ("b", 0), ("z", None)]


def test_label_scheme_presets_narrowing_and_unreachable_classes() -> None:
    presets = {"two": {"classes": ["pos", "neg"], "label_map": {"P": "pos", "N": "neg"}}}
    base = {"label_set": "two", "classes": None, "label_map": None, "outside_classes": "unlabelled"}
    scheme = label_scheme("c", base, presets, ["P", "N", "X"])
    assert (scheme.label("P"), scheme.label("X"), scheme.label(None)) == ("pos", None, None)
    narrowed = label_scheme("c", {**base, "classes": ["neg"]}, presets, ["P", "N", "X"])
    assert (narrowed.label("P"), narrowed.label("N")) == (None, "neg")
    assert not label_scheme("c", {**base, "outside_classes": "drop"}, presets, ["P", "N"]).keeps(None)
    with pytest.raises(CorpusOptionError, match="repeats"):
        label_scheme("c", {**base, "classes": ["pos", "pos"]}, presets, ["P", "N"])
    with pytest.raises(CorpusOptionError, match="must be one of"):
        label_scheme("c", {**base, "outside_classes": "yes"}, presets, ["P", "N"])


# -------------------------------------------------------------------------------------- the adapters together
TREES = {
    "iemocap": (fx.iemocap_tree, {"sessions": [1, 2]}),
    "meld": (fx.meld_tree, {}),
    "msp_improv": (fx.msp_tree, {}),
    "crema_d": (fx.crema_tree, {}),
    "ravdess": (fx.ravdess_tree, {}),
}


@pytest.mark.parametrize("name", sorted(TREES))
def test_every_adapter_honours_the_contract(name: str, tmp_path: Path) -> None:
    make, options = TREES[name]
    root = make(tmp_path)
    corpus = adapter(name).prepare(root, options)
    assert isinstance(corpus, PreparedCorpus)
    ids = [u.utt_id for u in corpus.utterances]
    assert ids == sorted(ids) and ids
    assert {u.corpus for u in corpus.utterances} == {name}
    validate(corpus.utterances, corpus.classes, root)
    json.dumps(corpus.stats)  # goes into corpus.json as is
    assert corpus.stats["utterances"] == len(ids)
    for utt in corpus.utterances:
        for segment in (utt.audio, utt.video):
            assert segment is None or (root / segment.path).is_file()
    again = adapter(name).prepare(root, options)
    assert [u.to_json() for u in again.utterances] == [u.to_json() for u in corpus.utterances]  # deterministic


def test_every_real_corpus_is_registered() -> None:
    assert {"iemocap", "meld", "msp_improv", "crema_d", "ravdess"} <= set(ADAPTERS)


# ------------------------------------------------------------------------------ the README's worked example
EMODB_ADAPTER = '''
"""EmoDB (Berlin Database of Emotional Speech): wav/<speaker><text><emotion><version>.wav, e.g. wav/03a01Fa.wav."""

from pathlib import Path
from typing import Any

from pipeline.corpora import PreparedCorpus
from pipeline.corpora.common import label_scheme, list_files, relative, require_root, resolve_options, summarise
from pipeline.manifest import ManifestError, Segment, Utterance

CODES = ("W", "L", "E", "A", "F", "T", "N")  # the German initials used in the file names
LABEL_SETS = {"7class": {"classes": ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"],
                         "label_map": {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
                                       "F": "happiness", "T": "sadness", "N": "neutral"}}}
DEFAULTS = {"label_set": "7class", "classes": None, "label_map": None, "outside_classes": "unlabelled"}


def prepare(root: Path, options: dict[str, Any]) -> PreparedCorpus:
    opts = resolve_options("emodb", DEFAULTS, options)          # unknown option names fail here
    scheme = label_scheme("emodb", opts, LABEL_SETS, CODES)     # classes in published order, code map
    root = require_root(root, "emodb", ["wav"])                 # clear error for a wrong or missing root
    utterances = []
    for path in list_files(root / "wav", ".wav"):               # sorted, without macOS ._ files
        name = path.stem
        if len(name) != 7 or name[5] not in CODES:
            raise ManifestError(f"{path.name!r} is not SSTTTEV (speaker, text, emotion, version)",
                                source=path, field="file name")
        label = scheme.label(name[5])
        if not scheme.keeps(label):
            continue
        utterances.append(Utterance(utt_id=name, corpus="emodb", speaker=name[:2], session=name[:2],
                                    audio=Segment(relative(path, root)), label=label,
                                    extra={"text_code": name[2:5]}))
    return PreparedCorpus(utterances, list(scheme.classes), summarise(utterances, scheme.classes))
'''


def test_add_a_corpus_recipe_runs_from_a_dotted_module_path(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "code" / "mylab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "emodb.py").write_text(textwrap.dedent(EMODB_ADAPTER))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    root = tmp_path / "emodb"
    for name in ("03a01Fa", "03a02Wb", "10b09Nc"):
        fx.put_wav(root / "wav" / f"{name}.wav")
    module = adapter("mylab.emodb")
    corpus = module.prepare(root, {"classes": ["anger", "happiness"]})
    assert [(u.utt_id, u.speaker, u.label) for u in corpus.utterances] == [
        ("03a01Fa", "03", "happiness"), ("03a02Wb", "03", "anger"), ("10b09Nc", "10", None)]
    validate(corpus.utterances, corpus.classes, root)
    sys.modules.pop("mylab.emodb", None)
    sys.modules.pop("mylab", None)
