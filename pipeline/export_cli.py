"""`affectflow export mmin|mmgcn|mmsa|mertools`: the subcommand's arguments, kept apart from pipeline/export.py so
that building the CLI's parser (`affectflow --help`, `prepare`, `split`) never imports torch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

LAYOUT_HELP = {
    "mmin": ("MMIN's h5 features, per-fold audio mean/std and one-hot targets (AIM3-RUC/MMIN)",
             "split protocol (default: export.mmin.protocol)", "one fold, by index or name (default: all folds)"),
    "mmgcn": ("MMGCN's dialogue pickle of one fold (hujingwen6666/MMGCN)",
              "split protocol (default: export.mmgcn.protocol)", "fold index or name (default: export.mmgcn.fold)"),
    "mmsa": ("MMSA's unaligned train/valid/test pickle of one fold (thuiar/MMSA)",
             "split protocol (default: export.mmsa.protocol)", "fold index or name (default: export.mmsa.fold)"),
    "mertools": ("MERTools' per-clip .npy feature folders and label.npz of one fold (zeroQiaoba/MERTools)",
                 "split protocol (default: export.mertools.protocol)",
                 "fold index or name (default: export.mertools.fold)"),
}


def _fold_arg(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def run_export(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """The `affectflow export <layout>` handler; paths are relative to the working directory (the project)."""
    from pipeline.export import EXPORTERS

    EXPORTERS[args.layout](Path("."), params, args.corpus, Path(args.out), fold=_fold_arg(args.fold),
                           protocol=args.protocol)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `export mmin|mmgcn|mmsa|mertools <corpus> --out DIR [--protocol P] [--fold F]`; the handler is
    `args.handler`."""
    parser = subparsers.add_parser("export", help="write features and splits in the layout of the authors' code",
                                   description="write a corpus's features and splits in the layout the original "
                                               "MMIN, MMGCN, MMSA or MERTools code reads")
    layouts = parser.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    for name, (help_text, protocol_help, fold_help) in LAYOUT_HELP.items():
        sub = layouts.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("corpus", help="a key under `corpora` in params.yaml")
        sub.add_argument("--out", required=True, help="output directory (new, empty, or an earlier export)")
        sub.add_argument("--protocol", default=None, help=protocol_help)
        sub.add_argument("--fold", default=None, help=fold_help)
    parser.set_defaults(handler=run_export)
    return parser
