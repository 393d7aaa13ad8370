"""Read line-aligned parallel text: two plain or gzipped files, or one TSV file.

Every reading error is a :class:`CorpusError` naming the file and, where there is one, the line,
because a bad line in a 30k-line corpus is otherwise a needle in a haystack.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

Pair = tuple[str, str]


class CorpusError(ValueError):
    """A corpus file cannot be read as line-aligned UTF-8 text."""


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield the lines of a plain or gzipped (``.gz`` suffix) UTF-8 file.

    Only the line terminator (``\\n`` or ``\\r\\n``) is removed: other whitespace may be
    meaningful to the tokenizer and is the cleaning step's business.

    Args:
        path: the file to read.

    Yields:
        One string per line, in order.

    Raises:
        CorpusError: the file is missing or unreadable, is not valid gzip, or a line is not
            valid UTF-8.
    """
    path = Path(path)
    lineno = 0
    try:
        # Binary mode splits on b"\n" only; text mode would also split on \r and other
        # separators and silently break the line alignment between the two sides.
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                yield _decode(raw, path, lineno)
    # BadGzipFile is an OSError, so it has to come first.
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise CorpusError(f"{path}:{lineno + 1}: not valid gzip data ({err})") from err
    except OSError as err:
        raise CorpusError(f"{path}: cannot read ({err.strerror or err})") from err


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path}:{lineno}: invalid UTF-8 ({err.reason} at byte {err.start} of the line)"
        ) from err
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def read_lines(path: str | Path) -> list[str]:
    """All lines of ``path`` (see :func:`iter_lines`)."""
    return list(iter_lines(path))


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Read two line-aligned files into ``(source, target)`` pairs.

    Args:
        src_path: source-language file, plain or ``.gz``.
        tgt_path: target-language file, plain or ``.gz``; line i translates line i of the source.

    Returns:
        The pairs, in file order.

    Raises:
        CorpusError: unreadable file or line, different line counts, or no lines at all.
    """
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        longer = src_path if len(src) > len(tgt) else tgt_path
        raise CorpusError(
            f"line counts differ: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            f"{longer}:{min(len(src), len(tgt)) + 1} is the first line without a partner"
        )
    if not src:
        raise CorpusError(f"empty corpus: {src_path} and {tgt_path} have no lines")
    logger.debug("read %d pairs from %s and %s", len(src), src_path, tgt_path)
    return list(zip(src, tgt, strict=True))


def read_tsv(path: str | Path) -> list[Pair]:
    """Read ``source<TAB>target`` lines from one plain or gzipped file.

    Raises:
        CorpusError: unreadable file or line, a line without exactly one tab, or no lines.
    """
    pairs = []
    for lineno, line in enumerate(iter_lines(path), start=1):
        n_tabs = line.count("\t")
        if n_tabs != 1:
            raise CorpusError(
                f"{path}:{lineno}: expected exactly one tab (source<TAB>target), found {n_tabs}"
            )
        src, tgt = line.split("\t")
        pairs.append((src, tgt))
    if not pairs:
        raise CorpusError(f"empty corpus: {path} has no lines")
    return pairs


def read_pairs(
    src: str | Path | None = None, tgt: str | Path | None = None, tsv: str | Path | None = None
) -> list[Pair]:
    """Read a split given either as two aligned files or as one TSV file (as in the config).

    Raises:
        ValueError: not exactly one of ``(src, tgt)`` and ``tsv`` is given.
        CorpusError: as :func:`read_parallel` and :func:`read_tsv`.
    """
    if tsv is not None and src is None and tgt is None:
        return read_tsv(tsv)
    if tsv is None and src is not None and tgt is not None:
        return read_parallel(src, tgt)
    raise ValueError("give both src and tgt files, or one tsv file")
