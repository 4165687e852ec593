"""Where every stage's inputs and outputs live, relative to the project root: the one place that knows the tree.

    data/<corpus>/manifest.jsonl, corpus.json        prepare
    features/<corpus>/<extractor>.h5 (+ .failures.jsonl) faces, extract
    splits/<corpus or protocol>.json                  split
    checkpoints/<model>/<corpus>/ (runs.json, extras.pt, <fold>_seed<s>.pt)   train
    metrics/<model>/<corpus>.json                     train
    plots/curves/<model>/<corpus>.csv                 train (per-epoch means)
    dvclive/<model>/<corpus>/                         train (dvclive's summaries, TSVs, confusions)
    checkpoints|metrics|plots/denseface/<set>.*      train-denseface
    reports/results.md, reports/plots/                report

Every function returns a relative `Path`; stages.py passes DVC template names (`${item.corpus}`) through the same
functions to write dvc.yaml, so the generated stages and the code that writes the files cannot disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.params import ConfigError
from pipeline.typed_config import NAME_PATTERN

TEMPLATE = r"\$\{[a-z_.]+\}"  # a DVC foreach variable: stages.py writes dvc.yaml through these functions
DATA = Path("data")
FEATURES = Path("features")
SPLITS = Path("splits")
CHECKPOINTS = Path("checkpoints")
METRICS = Path("metrics")
CURVES_ROOT = Path("plots") / "curves"
LIVE = Path("dvclive")
LIVE_CURVES = Path("plots") / "metrics"  # dvclive's per-epoch TSVs, inside a run's directory
REPORTS = Path("reports")
MANIFEST = "manifest.jsonl"  # in a corpus's data folder
CORPUS_INFO = "corpus.json"
DENSEFACE = "denseface"  # the face model's own folder under checkpoints/, metrics/ and plots/


def corpus_dir(name: str) -> Path:
    """data/<corpus>/; a corpus name is checked here because it becomes a folder name."""
    if not re.fullmatch(NAME_PATTERN, name) and not re.fullmatch(TEMPLATE, name):  # an absolute or dotted name
        # would put outputs outside the project
        raise ConfigError(f"corpus name {name!r} may hold only letters, digits, _ and -", "corpora",
                          "rename the corpus entry")
    return DATA / name


def manifest_path(corpus: str) -> Path:
    return corpus_dir(corpus) / MANIFEST


def corpus_info_path(corpus: str) -> Path:
    return corpus_dir(corpus) / CORPUS_INFO


def store_path(corpus: str, extractor: str) -> Path:
    return FEATURES / corpus / f"{extractor}.h5"


def failures_path(corpus: str, extractor: str) -> Path:
    return FEATURES / corpus / f"{extractor}.failures.jsonl"


def split_path(name: str) -> Path:
    """splits/<name>.json: a corpus's split, or a cross-corpus protocol's."""
    return SPLITS / f"{name}.json"


def checkpoint_dir(model: str, corpus: str) -> Path:
    return CHECKPOINTS / model / corpus


def runs_path(model: str, corpus: str) -> Path:
    return checkpoint_dir(model, corpus) / "runs.json"


def extras_path(model: str, corpus: str) -> Path:
    return checkpoint_dir(model, corpus) / "extras.pt"


def metrics_path(model: str, corpus: str) -> Path:
    return METRICS / model / f"{corpus}.json"


def curves_path(model: str, corpus: str) -> Path:
    return CURVES_ROOT / model / f"{corpus}.csv"


def live_dir(model: str, corpus: str) -> Path:
    return LIVE / model / corpus


def denseface_checkpoint(face_set: str) -> Path:
    return CHECKPOINTS / DENSEFACE / f"{face_set}.pt"


def denseface_metrics(face_set: str) -> Path:
    return METRICS / DENSEFACE / f"{face_set}.json"


def denseface_curves(face_set: str) -> Path:
    return Path("plots") / DENSEFACE / f"{face_set}.json"


def report_markdown(out_dir: str | Path = REPORTS) -> Path:
    return Path(out_dir) / "results.md"


def report_plots(out_dir: str | Path = REPORTS) -> Path:
    return Path(out_dir) / "plots"
