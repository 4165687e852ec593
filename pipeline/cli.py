"""`affectflow`: one subcommand per pipeline stage; every stage's `cmd` in dvc.yaml calls it."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
import resource
import sys
import time
import traceback
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
    from pipeline.extract.stage import extract_corpus

    extract_corpus(params, args.corpus, args.extractor)


def _faces(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.extract.stage import track_faces

    track_faces(params, args.corpus)


def _train(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.train import train_model

    train_model(params, args.model, args.corpus)  # a cross_corpus protocol's name: pipeline/cross_training.py


def _train_denseface(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.denseface.train import train_denseface
    from pipeline.layout import denseface_checkpoint, denseface_curves, denseface_metrics
    from pipeline.params import lookup, merged, section

    config = merged(section(params, "denseface.train"), lookup(params, f"denseface.sets.{args.set}"))
    train_denseface(config, denseface_checkpoint(args.set), denseface_metrics(args.set), denseface_curves(args.set))


def _report(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.report.stage import report_stage

    report_stage(params)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, dict[str, Any]], None], list[tuple[str, str]]]] = {
    "prepare": ("read a corpus (or generate the demo) into data/<corpus>/manifest.jsonl and corpus.json",
                _prepare, [("corpus", "a key under `corpora` in params.yaml")]),
    "extract": ("extract one modality's features of a corpus into features/<corpus>/<extractor>.h5",
                _extract, [("corpus", "a key under `corpora` in params.yaml"),
                           ("extractor", "a key under `extractors` in params.yaml")]),
    "faces": ("detect faces once (MTCNN) in a corpus's videos into the face track features/<corpus>/faces.h5 that "
              "every face embedder reads", _faces, [("corpus", "a key under `corpora` in params.yaml")]),
    "split": ("build the corpus's folds, condition table and unlabelled pools into splits/<corpus>.json",
              _split, [("corpus", "a key under `corpora` (or `cross_corpus`) in params.yaml")]),
    "train-denseface": ("train the Denseface network on a FER2013/FER+-format set into "
                        "checkpoints/denseface/<set>.pt", _train_denseface,
                        [("set", "a key under `denseface.sets` in params.yaml")]),
    "train": ("train and evaluate a model on a corpus over its folds and seeds into metrics/<model>/<corpus>.json",
              _train, [("model", "a key under `models` in params.yaml"),
                       ("corpus", "a key under `corpora` (or `cross_corpus`) in params.yaml")]),
    "report": ("render reports/results.md and reports/plots/ from every model's metrics, runs and curves",
               _report, []),
}


STAGES_HELP = "write dvc.yaml from params.yaml and the imports of each stage's code (pipeline/stages.py)"


def _stages(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from pipeline.stages import stages_command

    stages_command(args, params)


def version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("affectflow")
    except metadata.PackageNotFoundError:
        text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
        match = re.search(r'^version = "([^"]+)"', text, re.M)
        return match.group(1) if match else "unknown"


class _Version(argparse.Action):
    """`--version`, looked up only when asked for (reading the package metadata costs every other command time)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"affectflow {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    # --debug is accepted before or after the subcommand (`affectflow --debug train ...` or `train ... --debug`)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    parser = argparse.ArgumentParser(prog="affectflow", description=__doc__, parents=[debug])
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    parser.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _, arguments) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text, parents=[debug])
        for arg, arg_help in arguments:
            cmd.add_argument(arg, help=arg_help)
    from pipeline.export_cli import register  # not a stage: a hand-off to the authors' code (absolute paths inside)

    register(sub)
    stages = sub.add_parser("stages", help=STAGES_HELP, description=STAGES_HELP, parents=[debug])
    stages.add_argument("--check", action="store_true", help="only compare with dvc.yaml; exit 2 naming what differs")
    stages.set_defaults(handler=_stages)
    return parser


# the positional arguments that name params entries, and the section each names an entry of
NAMED_ENTRIES = {"corpus": "corpora", "model": "models", "extractor": "extractors", "set": "denseface.sets"}


def check_arguments(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """The names given on the command line: each a valid name ([A-Za-z0-9_-]+) of an entry in its section."""
    from pipeline.params import lookup
    from pipeline.typed_config import NAME_PATTERN

    source = str(params.get("_path", "params.yaml"))
    for arg, section in NAMED_ENTRIES.items():
        name = getattr(args, arg, None)
        if name is None:
            continue
        if not re.fullmatch(NAME_PATTERN, name):
            raise ConfigError(f"{arg} name {name!r} may hold only letters, digits, _ and -", f"command line: {arg}",
                              f"give the name of an entry under {section} in {source}")
        entries = dict(lookup(params, section, {}) or {})
        if arg == "corpus" and getattr(args, "command", None) in ("split", "train"):  # a cross-corpus protocol
            entries.update(lookup(params, "cross_corpus", {}) or {})
        if name not in entries:
            close = difflib.get_close_matches(name, [str(e) for e in entries], n=1)
            fix = (f"did you mean '{close[0]}'?" if close else
                   f"{section} has: {', '.join(map(str, entries))}" if entries else f"add an entry under {section}")
            raise ConfigError(f"key '{section}.{name}' is missing: no {arg} {name!r}", source, fix)


def error_line(err: BaseException) -> str:
    """The one line the CLI prints for a known error: `affectflow: error: <what> (<where>) - <how to fix>`."""
    if isinstance(err, AffectflowError):
        return f"affectflow: error: {err}"
    if isinstance(err, OSError):
        what = err.strerror or str(err)
        where = f" ({err.filename})" if err.filename else ""
        fix = {FileNotFoundError: "run the stage that writes it first (dvc repro), or check the path",
               PermissionError: "check the permissions of the file and its folder"}.get(type(err),
                                                                                        "check the file and the disk")
        return f"affectflow: error: {what}{where} - {fix}"
    return f"affectflow: error: {err}"


def _check_stages(params: dict[str, Any]) -> None:
    """Under `dvc repro`, stop at once when dvc.yaml is stale (pipeline/stages.py); not a dep of any stage, and
    not imported outside DVC."""
    if not os.environ.get("DVC_STAGE"):
        return
    from pipeline.stages import check_under_dvc

    check_under_dvc(params)


def log_cost(command: str, wall_s: float) -> None:
    """One line per stage command: wall seconds, CPU seconds of this process and of the workers it waited for,
    and peak RSS (tools/stage_times.py reads it out of `dvc repro`'s log)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    peak_gb = max(own.ru_maxrss, workers.ru_maxrss) / 2**20
    log.info("stage cost: %s %.1f s wall, %.1f s CPU, peak RSS %.2f GB", command, wall_s, cpu, peak_gb)


def main(argv: Sequence[str] | None = None) -> int:
    put_project_root_on_path()
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        params = load_params(Path(args.params))
        check_arguments(args, params)
        from pipeline.schema import check_params

        check_params(params)  # every section, before any stage runs
        if args.command in COMMANDS:
            _check_stages(params)
        handler = COMMANDS[args.command][1] if args.command in COMMANDS else args.handler
        started = time.perf_counter()
        handler(args, params)
        if args.command in COMMANDS:
            log_cost(args.command, time.perf_counter() - started)
    except (AffectflowError, OSError) as err:
        if debug:
            traceback.print_exc()
        print(error_line(err), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
