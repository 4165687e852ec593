"""`affectflow`: one subcommand per pipeline stage; every stage's `cmd` in dvc.yaml calls it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.params import ConfigError, load_params

log = logging.getLogger("affectflow")


def _prepare(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.prepare import prepare_corpus

    prepare_corpus(params, args.corpus)


def _split(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.splits import split_corpus

    split_corpus(params, args.corpus)


def _extract(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.extract.run import extract_corpus

    extract_corpus(params, args.corpus, args.extractor)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, dict[str, Any]], None], list[tuple[str, str]]]] = {
    "prepare": ("read a corpus (or generate the demo) into data/<corpus>/manifest.jsonl and corpus.json",
                _prepare, [("corpus", "a key under `corpora` in params.yaml")]),
    "extract": ("extract one modality's features of a corpus into features/<corpus>/<extractor>.h5",
                _extract, [("corpus", "a key under `corpora` in params.yaml"),
                           ("extractor", "a key under `extractors` in params.yaml")]),
    "split": ("build the corpus's folds, condition table and unlabelled pools into splits/<corpus>.json",
              _split, [("corpus", "a key under `corpora` in params.yaml")]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectflow", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _, arguments) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        for arg, arg_help in arguments:
            cmd.add_argument(arg, help=arg_help)
    return parser


KNOWN_ERRORS: tuple[type[BaseException], ...] = (ConfigError, FileNotFoundError)


def _known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.corpora.common import CorpusOptionError
    from pipeline.extract import ExtractorConfigError
    from pipeline.extract.stage import ExtractionFailed
    from pipeline.manifest import ManifestError
    from pipeline.splits import SplitError
    from pipeline.store import StoreError

    return (*KNOWN_ERRORS, ManifestError, StoreError, ExtractorConfigError, ExtractionFailed, CorpusOptionError,
            SplitError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        params = load_params(Path(args.params))
        COMMANDS[args.command][1](args, params)
    except _known_errors() as err:
        print(f"affectflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
