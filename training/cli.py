"""Subcommands ``nmt data|train|evaluate|export|shortlist``, registered with ``nmt`` by entry point.

Each handler parses its arguments and calls one function; the heavy imports happen inside the
handlers so that ``nmt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from model.cli import positive_int

if TYPE_CHECKING:  # subscriptable for type checkers only
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]  # noqa: SLF001


def run_data(args: argparse.Namespace) -> int:
    from training.download import DownloadError, fetch_multi30k

    try:
        paths = fetch_multi30k(args.dest, source_dir=args.source_dir, base_url=args.base_url)
    except DownloadError as err:  # unreachable source or a bad checksum: one line, no traceback
        logging.getLogger("nmt").error("%s", err)
        return 2
    for path in paths:
        print(path)  # noqa: T201 - the command's output is the list of files
    return 0


def run_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.loop import train

    train(load_config(args.config, args.overrides), resume=args.resume)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from model import DecodeOptions, Translator
    from training.evaluate import evaluate_files

    translator = Translator.from_dir(
        args.model, quantize=args.quantize, batch_tokens=args.batch_tokens
    )
    options = DecodeOptions(beam_size=args.beam)
    scores = evaluate_files(translator, args.src, args.ref, options, args.hyp)
    print(f"BLEU {scores.bleu:.2f}  {scores.bleu_signature}")  # noqa: T201
    print(f"chrF {scores.chrf:.2f}  {scores.chrf_signature}")  # noqa: T201
    return 0


def run_export(args: argparse.Namespace) -> int:
    from training.export import export
    from training.shortlist import DEFAULT_SHORTLIST

    export(
        args.run_dir,
        args.out,
        args.average_last,
        args.dtype,
        not args.no_eval,
        args.model_id,
        args.checkpoint,
        None if args.no_shortlist else DEFAULT_SHORTLIST,
    )
    return 0


def run_shortlist(args: argparse.Namespace) -> int:
    from training.shortlist import ShortlistSize, add_shortlist

    splits = {name: (src, ref) for name, src, ref in args.eval}
    size = ShortlistSize(args.frequent, args.per_source)
    add_shortlist(args.model, (args.train_src, args.train_tgt), size, splits)
    return 0


def checkpoint_name(text: str) -> str:
    """An argparse type: a file name in RUN_DIR/checkpoints, not a path to another run's."""
    if not text or Path(text).name != text:
        raise argparse.ArgumentTypeError(
            f"{text!r} is a path; give a file name in RUN_DIR/checkpoints"
        )
    return text


def add_data(subparsers: Subparsers) -> None:
    data = subparsers.add_parser("data", help="fetch a corpus")
    data.add_argument("corpus", choices=["multi30k"])
    data.add_argument("--dest", type=Path, required=True, help="directory for the files")
    data.add_argument("--from", dest="source_dir", type=Path, help="copy from a local folder")
    data.add_argument("--base-url", help="download from here (env NMT_MULTI30K_URL)")
    data.set_defaults(func=run_data)


def add_train(subparsers: Subparsers) -> None:
    train = subparsers.add_parser("train", help="train a model from a YAML config")
    train.add_argument("config", type=Path)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=5e-4",
    )
    train.set_defaults(func=run_train)


def add_evaluate(subparsers: Subparsers) -> None:
    evaluate = subparsers.add_parser("evaluate", help="BLEU and chrF of a bundle on a test set")
    evaluate.add_argument("--model", type=Path, required=True)
    evaluate.add_argument("--src", type=Path, required=True)
    evaluate.add_argument("--ref", type=Path, required=True)
    evaluate.add_argument("--beam", type=int, default=5)
    evaluate.add_argument("--hyp", type=Path, default=None, help="write the hypotheses here")
    evaluate.add_argument(
        "--quantize", choices=["auto", "none", "int8"], default="auto", help="auto: int8 on CPU"
    )
    evaluate.add_argument("--batch-tokens", type=positive_int, default=8192)
    evaluate.set_defaults(func=run_evaluate)


def add_export(subparsers: Subparsers) -> None:
    export = subparsers.add_parser("export", help="write the model bundle of a training run")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--out", type=Path, required=True)
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--average-last",
        type=positive_int,
        default=None,
        metavar="N",
        help="the mean of the last N step checkpoints",
    )
    which.add_argument(
        "--checkpoint",
        type=checkpoint_name,
        default=None,
        metavar="NAME",
        help="a file in RUN_DIR/checkpoints, e.g. step_2000.pt (default: best.pt)",
    )
    export.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    export.add_argument("--no-eval", action="store_true", help="skip valid/test evaluation")
    export.add_argument("--model-id", default=None)
    export.add_argument(
        "--no-shortlist", action="store_true", help="score the whole target vocabulary"
    )
    export.set_defaults(func=run_export)


def add_shortlist(subparsers: Subparsers) -> None:
    shortlist = subparsers.add_parser(
        "shortlist", help="add a vocabulary shortlist to a bundle and measure it again"
    )
    shortlist.add_argument("--model", type=Path, required=True, help="bundle, rewritten")
    shortlist.add_argument("--train-src", type=Path, required=True)
    shortlist.add_argument("--train-tgt", type=Path, required=True)
    shortlist.add_argument(
        "--eval",
        nargs=3,
        action="append",
        default=[],
        metavar=("SPLIT", "SRC", "REF"),
        help="measure BLEU/chrF on this split (repeatable); replaces the bundle's metrics",
    )
    shortlist.add_argument(
        "--frequent", type=positive_int, default=100, help="always-scored target ids"
    )
    shortlist.add_argument(
        "--per-source", type=positive_int, default=20, help="target ids per source id"
    )
    shortlist.set_defaults(func=run_shortlist)


def add_commands(subparsers: Subparsers) -> None:
    add_data(subparsers)
    add_train(subparsers)
    add_evaluate(subparsers)
    add_export(subparsers)
    add_shortlist(subparsers)
