"""Reading parallel text (plain, gzipped, TSV); every error names the file and the line."""

import gzip
from pathlib import Path

import pytest

from training.corpus import CorpusError, read_pairs, read_parallel, read_tsv


def write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_reads_plain_and_gzip_and_strips_only_the_newline(tmp_path: Path) -> None:
    src = write(tmp_path / "a.en", b"  hello world \nsecond\r\nthird")
    tgt = write(tmp_path / "a.de.gz", b"  hallo Welt \nzweite\r\ndritte\n")
    assert read_parallel(src, tgt) == [
        ("  hello world ", "  hallo Welt "),
        ("second", "zweite"),
        ("third", "dritte"),
    ]


def test_only_newline_splits_lines(tmp_path: Path) -> None:
    # \r, \x0b and U+2028 are line breaks for str.splitlines but not in a line-aligned corpus.
    src = write(tmp_path / "s", "a\rb\x0bc\u2028d\n".encode())
    tgt = write(tmp_path / "t", b"x\n")
    assert read_parallel(src, tgt) == [("a\rb\x0bc\u2028d", "x")]


def test_line_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", b"a\nb\nc\n")
    tgt = write(tmp_path / "train.de.gz", b"x\ny\n")
    with pytest.raises(CorpusError) as err:
        read_parallel(src, tgt)
    msg = str(err.value)
    assert f"{src} has 3 lines" in msg
    assert f"{tgt} has 2" in msg
    assert f"{src}:3" in msg


def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    src = write(tmp_path / "s.gz", b"ok\nalso ok\nbad \xff byte\n")
    tgt = write(tmp_path / "t", b"1\n2\n3\n")
    with pytest.raises(CorpusError, match="invalid UTF-8") as err:
        read_parallel(src, tgt)
    assert f"{src}:3:" in str(err.value)


def test_empty_corpus(tmp_path: Path) -> None:
    src = write(tmp_path / "s", b"")
    tgt = write(tmp_path / "t.gz", b"")
    with pytest.raises(CorpusError, match="empty corpus") as err:
        read_parallel(src, tgt)
    assert str(src) in str(err.value)


def test_missing_file_and_corrupt_gzip(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="nope"):
        read_parallel(tmp_path / "nope", tmp_path / "nope2")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"this is not gzip\n")
    with pytest.raises(CorpusError, match="not valid gzip") as err:
        read_tsv(bad)
    assert str(bad) in str(err.value)


def test_tsv_reads_pairs(tmp_path: Path) -> None:
    tsv = write(tmp_path / "d.tsv.gz", b"a b\tx y\n\tonly target\n")
    assert read_tsv(tsv) == [("a b", "x y"), ("", "only target")]
    assert read_pairs(tsv=tsv) == read_tsv(tsv)


@pytest.mark.parametrize("line, tabs", [(b"no tab here", 0), (b"a\tb\tc", 2)])
def test_tsv_needs_exactly_one_tab(tmp_path: Path, line: bytes, tabs: int) -> None:
    tsv = write(tmp_path / "d.tsv", b"fine\tgut\n" + line + b"\n")
    with pytest.raises(CorpusError, match=f"found {tabs}") as err:
        read_tsv(tsv)
    assert f"{tsv}:2:" in str(err.value)


def test_read_pairs_wants_files_or_tsv_not_both(tmp_path: Path) -> None:
    f = write(tmp_path / "f", b"a\tb\n")
    with pytest.raises(ValueError, match="src and tgt"):
        read_pairs(src=f, tsv=f)
    with pytest.raises(ValueError, match="src and tgt"):
        read_pairs(src=f)
