"""`affectflow`: one subcommand per pipeline stage; every stage's `cmd` in dvc.yaml calls it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import AffectflowError
from pipeline.params import ConfigError, load_params

log = logging.getLogger("affectflow")


def put_project_root_on_path(start: Path | None = None) -> Path:
    """Put the project root on sys.path, so a lab's adapter module (`adapter: mylab.emodb` -> mylab/emodb.py beside
    dvc.yaml) imports from `affectflow` and from `dvc repro` without PYTHONPATH. The root is the nearest folder
    holding dvc.yaml from the working directory upwards, else the working directory. It goes last on sys.path, so it
    never shadows an installed package. Returns it."""
    here = (start or Path.cwd()).resolve()
    root = next((folder for folder in (here, *here.parents) if (folder / "dvc.yaml").is_file()), here)
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return root


def _prepare(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.prepare import prepare_corpus

    prepare_corpus(params, args.corpus)


def _split(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.splits import split_corpus

    split_corpus(params, args.corpus)


def _extract(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.extract.run import extract_corpus

    extract_corpus(params, args.corpus, args.extractor)


def _train(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.train import train_model

    train_model(params, args.model, args.corpus)


def _train_denseface(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.denseface_train import train_denseface
    from pipeline.params import lookup, merged, section

    config = merged(section(params, "denseface.train"), lookup(params, f"denseface.sets.{args.set}"))
    out = Path("checkpoints") / "denseface"
    train_denseface(config, out / f"{args.set}.pt", Path("metrics") / "denseface" / f"{args.set}.json",
                    Path("plots") / "denseface" / f"{args.set}.json")


def _report(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.report import report_stage

    report_stage(params)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, dict[str, Any]], None], list[tuple[str, str]]]] = {
    "prepare": ("read a corpus (or generate the demo) into data/<corpus>/manifest.jsonl and corpus.json",
                _prepare, [("corpus", "a key under `corpora` in params.yaml")]),
    "extract": ("extract one modality's features of a corpus into features/<corpus>/<extractor>.h5",
                _extract, [("corpus", "a key under `corpora` in params.yaml"),
                           ("extractor", "a key under `extractors` in params.yaml")]),
    "split": ("build the corpus's folds, condition table and unlabelled pools into splits/<corpus>.json",
              _split, [("corpus", "a key under `corpora` in params.yaml")]),
    "train-denseface": ("train the Denseface network on a FER2013/FER+-format set into "
                        "checkpoints/denseface/<set>.pt", _train_denseface,
                        [("set", "a key under `denseface.sets` in params.yaml")]),
    "train": ("train and evaluate a model on a corpus over its folds and seeds into metrics/<model>/<corpus>.json",
              _train, [("model", "a key under `models` in params.yaml"),
                       ("corpus", "a key under `corpora` in params.yaml")]),
    "report": ("render reports/results.md and reports/plots/ from every model's metrics, runs and curves",
               _report, []),
}


STAGES_HELP = "write dvc.yaml from params.yaml and the imports of each stage's code (pipeline/stages.py)"


def _stages(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.stages import stages_command

    stages_command(args, params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectflow", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _, arguments) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        for arg, arg_help in arguments:
            cmd.add_argument(arg, help=arg_help)
    from pipeline.export import register  # not a stage: a hand-off to the authors' code (absolute paths inside)

    register(sub)
    stages = sub.add_parser("stages", help=STAGES_HELP, description=STAGES_HELP)
    stages.add_argument("--check", action="store_true", help="only compare with dvc.yaml; exit 2 naming what differs")
    stages.set_defaults(handler=_stages)
    return parser


KNOWN_ERRORS: tuple[type[BaseException], ...] = (AffectflowError, ConfigError, FileNotFoundError)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or configuration: one clear line, no traceback."""
    from pipeline.corpora.common import CorpusOptionError
    from pipeline.denseface_checkpoint import CheckpointError
    from pipeline.denseface_train import TrainConfigError
    from pipeline.extract import ExtractorConfigError
    from pipeline.extract.executor import WorkerSetupError
    from pipeline.extract.stage import ExtractionFailed
    from pipeline.fer import FerFormatError
    from pipeline.manifest import ManifestError
    from pipeline.report_inputs import ReportInputError
    from pipeline.splits import SplitError
    from pipeline.store import StoreError

    return (*KNOWN_ERRORS, ManifestError, StoreError, ExtractorConfigError, ExtractionFailed, CorpusOptionError,
            SplitError, CheckpointError, TrainConfigError, WorkerSetupError, FerFormatError, ReportInputError)


def _check_stages(params: dict[str, Any]) -> None:
    """Under `dvc repro`, stop at once when dvc.yaml is stale (pipeline/stages.py); not a dep of any stage, and
    not imported outside DVC."""
    if not os.environ.get("DVC_STAGE"):
        return
    from pipeline.stages import check_under_dvc

    check_under_dvc(params)


def main(argv: Sequence[str] | None = None) -> int:
    put_project_root_on_path()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        params = load_params(Path(args.params))
        if args.command in COMMANDS:
            _check_stages(params)
        handler = COMMANDS[args.command][1] if args.command in COMMANDS else args.handler
        handler(args, params)
    except _known_errors() as err:
        print(f"affectflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
