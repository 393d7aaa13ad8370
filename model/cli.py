"""The ``nmt`` command: ``translate`` lives here; other packages add their subcommands.

model/ may not import training/ or service/, so they register ``add_commands(subparsers)``
under the ``lstm_nmt.commands`` entry-point group and this module discovers them.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import logging
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, cast

from model.allocator import keep_freed_memory

log = logging.getLogger("nmt")

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "en-de-multi30k"


def positive_int(text: str) -> int:
    """An argparse type: a count of something (cores, lanes, tokens) is at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; give 1 or more")
    return value


def add_translate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("translate", help="translate lines from stdin or a file")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle directory")
    p.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    p.add_argument(
        "--n-best", type=int, default=1, help="write up to K best, tab-separated, each text once"
    )
    p.add_argument(
        "--quantize", choices=["auto", "none", "int8"], default="auto", help="auto: int8 on CPU"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--batch-tokens", type=positive_int, default=4096, help="source tokens per batch"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="CPU cores to use (default: all allowed)"
    )
    p.add_argument(
        "--lanes",
        type=positive_int,
        default=None,
        help="parts each batch is computed in at once, a core each (default: --threads)",
    )
    p.add_argument("-i", "--input", type=Path, default=None, help="input file (default stdin)")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default stdout)")
    p.set_defaults(func=run_translate)


def _chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        chunk.append(line.rstrip("\n"))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_translate(args: argparse.Namespace) -> int:
    """Translate line by line; output stays line-aligned even where a line fails."""
    from tqdm import tqdm

    from model.placement import resolve_device
    from model.search import DecodeOptions
    from model.translator import load_on_cores

    resolve_device(args.device, "--device")  # before minutes of loading, and naming the flag
    translator = load_on_cores(
        args.model,
        cores=args.threads,
        lanes=args.lanes,
        device=args.device,
        quantize=args.quantize,
        batch_tokens=args.batch_tokens,
    )
    options = DecodeOptions(beam_size=args.beam, n_best=args.n_best)
    # undecodable bytes become U+FFFD, so a bad line is translated as best it can be, in place
    if args.input is None and isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(encoding="utf-8", errors="replace", newline="\n")
    unreadable: list[Exception] = []
    with contextlib.ExitStack() as opened:  # closes the files it opened, never stdin/stdout
        source = opened.enter_context(open_text(args.input)) if args.input else sys.stdin
        sink = opened.enter_context(open_text(args.output, "w")) if args.output else sys.stdout
        progress = opened.enter_context(
            tqdm(unit="sent", disable=args.input is None, file=sys.stderr)
        )
        try:
            for chunk in _chunks(_readable_lines(source, unreadable), 1024):
                for n, result in enumerate(translator.translate(chunk, options)):
                    if result.error is not None:
                        log.warning("line %d: %s", progress.n + n + 1, result.error)
                    sink.write("\t".join(c.text for c in result.candidates) + "\n")
                progress.update(len(chunk))
            sink.flush()
        except BrokenPipeError:
            raise
        except OSError as err:  # reading errors stop _readable_lines, so this is the output
            where = args.output or "stdout"
            raise ValueError(f"cannot write {where}: {err.strerror or err}") from err
    if unreadable:
        raise ValueError(
            f"{args.input}: unreadable after line {progress.n} ({unreadable[0]}); "
            "the lines before it are translated"
        )
    return 0


def _readable_lines(source: IO[str], errors: list[Exception]) -> Iterator[str]:
    """``source``'s lines up to the first that cannot be read (a gzip cut short), which goes
    into ``errors``: the lines before it are still translated."""
    try:
        yield from source
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        errors.append(err)


@contextlib.contextmanager
def open_text(path: Path, mode: str = "r") -> Iterator[IO[str]]:
    """``path`` as UTF-8 text, gzipped where it is (read: by its magic bytes; write: a ``.gz``
    name), as the corpora are: a gzipped file read as text would translate its bytes. The file
    is opened once, so a pipe (``-i /dev/stdin``, ``<(...)``) loses nothing to the check."""
    if mode == "r":
        raw: IO[bytes] = path.open("rb")
        zipped = cast(io.BufferedReader, raw).peek(2)[:2] == b"\x1f\x8b"
    else:
        raw = path.open("wb")
        zipped = path.suffix == ".gz"
    with raw:
        binary = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode=mode + "b")) if zipped else raw
        # newline="\n": a line ends at "\n" only, as for wc -l and paste; a lone "\r" inside a
        # line stays in it, and a CRLF line's "\r" comes back as trailing whitespace.
        newline = "\n" if mode == "r" else None
        with io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=newline) as text:
            yield text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nmt", description="LSTM machine translation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_translate(subparsers)
    for ep in entry_points(group="lstm_nmt.commands"):
        try:
            ep.load()(subparsers)
        except ImportError as err:  # e.g. the serve extra is not installed
            log.debug("subcommands from %s unavailable: %s", ep.name, err)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    keep_freed_memory()  # every subcommand allocates the same large tensors again and again
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`nmt translate | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 1
    except Exception as err:  # a clear one-line error for expected failures
        from model.errors import ModelError

        unreadable = (
            FileNotFoundError
            | FileExistsError
            | IsADirectoryError
            | NotADirectoryError
            | PermissionError
        )
        if isinstance(err, ModelError | ValueError | unreadable):
            log.error("%s", err)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
