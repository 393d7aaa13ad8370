"""`nmt translate` end to end on the tiny bundle: files in, line-aligned translations out."""

from __future__ import annotations

import contextlib
import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model import DecodeOptions, Translator
from model.cli import main

LINES = ["ba be ki", "", "mo na pa ta sa de do", "", "", "ku", "  sa le "]


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """`nmt translate` sets torch's threads for its process (model.load_on_cores)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_translate_file_is_line_aligned(tiny_bundle: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    argv = ["translate", "--model", str(tiny_bundle), "--beam", "3", "-i", str(src), "-o", str(out)]
    assert main([*argv, "--threads", "2"]) == 0
    assert torch.get_num_threads() == 1  # two lanes, one thread each

    got = out.read_text(encoding="utf-8").split("\n")
    assert got[-1] == ""  # every line ends with a newline
    got = got[:-1]
    assert len(got) == len(LINES)
    assert [i for i, line in enumerate(got) if not line] == [1, 3, 4]
    want = Translator.from_dir(tiny_bundle, quantize="auto", lanes=2).translate(
        LINES, DecodeOptions(beam_size=3)
    )  # the CLI default: int8 on CPU, in as many lanes as cores
    assert got == [r.text for r in want]


def test_undecodable_input_bytes_are_translated_in_place(tiny_bundle: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.bin", tmp_path / "out.txt"
    src.write_bytes(b"ba be\n\xff\xfe ki \xc3\n\x00\x01 ku\n")
    assert main(["translate", "--model", str(tiny_bundle), "-i", str(src), "-o", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3


def test_n_best_is_tab_separated(tiny_bundle: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("ba be ki\nku\n", encoding="utf-8")
    argv = ["translate", "--model", str(tiny_bundle), "--beam", "3", "--n-best", "3"]
    assert main([*argv, "-i", str(src), "-o", str(out)]) == 0
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and all(len(row.split("\t")) == 3 for row in rows)


def test_missing_model_directory_exits_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("ku\n", encoding="utf-8")
    missing = tmp_path / "no-such-bundle"
    assert main(["translate", "--model", str(missing), "-i", str(src)]) == 2
    assert str(missing) in caplog.text


def test_gzipped_files_are_read_and_written_as_text(tiny_bundle: Path, tmp_path: Path) -> None:
    """Like the corpora: a gzipped input read as plain text would translate its bytes."""
    plain, zipped = tmp_path / "in.txt", tmp_path / "in.gz"
    plain.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    model = ["translate", "--model", str(tiny_bundle)]
    assert main([*model, "-i", str(plain), "-o", str(tmp_path / "want.txt")]) == 0
    assert main([*model, "-i", str(zipped), "-o", str(tmp_path / "got.txt.gz")]) == 0
    got = gzip.decompress((tmp_path / "got.txt.gz").read_bytes()).decode("utf-8")
    assert got == (tmp_path / "want.txt").read_text(encoding="utf-8")
    assert len(got.splitlines()) == len(LINES)


def test_a_truncated_gzip_input_translates_what_it_can_then_says_so(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, out = tmp_path / "in.gz", tmp_path / "out.txt"
    src.write_bytes(gzip.compress(("ba be ki\n" * 3000).encode())[:-20])
    readable = 0
    with gzip.open(src, "rt") as lines, contextlib.suppress(EOFError):
        for _ in lines:
            readable += 1
    assert 1024 < readable < 3000  # a partial chunk is left when it breaks off
    assert main(["translate", "--model", str(tiny_bundle), "-i", str(src), "-o", str(out)]) == 2
    assert len(out.read_text(encoding="utf-8").splitlines()) == readable
    assert f"{src}: unreadable after line {readable}" in caplog.text
    assert "the lines before it are translated" in caplog.text


def test_a_pipe_is_read_once_and_whole(tiny_bundle: Path, tmp_path: Path) -> None:
    """The gzip check must not eat the start of a pipe (``-i /dev/stdin``, ``-i <(...)``)."""
    fifo, out = tmp_path / "in.fifo", tmp_path / "out.txt"
    os.mkfifo(fifo)
    text = "\n".join(LINES * 400) + "\n"  # more than one read buffer
    writer = threading.Thread(target=fifo.write_text, args=(text,), kwargs={"encoding": "utf-8"})
    writer.start()
    assert main(["translate", "--model", str(tiny_bundle), "-i", str(fifo), "-o", str(out)]) == 0
    writer.join()
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(LINES) * 400


def test_lines_end_at_newline_only(tiny_bundle: Path, tmp_path: Path) -> None:
    """As wc -l and paste count them: a lone CR stays inside its line, CRLF comes back."""
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_bytes(b"ba be\rki\nku\r\nsa le\n")
    assert main(["translate", "--model", str(tiny_bundle), "-i", str(src), "-o", str(out)]) == 0
    got = out.read_bytes().split(b"\n")
    assert len(got) == 4 and got[-1] == b""
    assert got[1].endswith(b"\r") and not got[2].endswith(b"\r")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_that_cannot_be_written_is_one_clear_error(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("ku\n" * 3000, encoding="utf-8")
    argv = ["translate", "--model", str(tiny_bundle), "-i", str(src), "-o", "/dev/full"]
    assert main(argv) == 2
    assert "cannot write /dev/full: No space left on device" in caplog.text


def test_an_input_that_is_a_directory_is_one_clear_error(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    assert main(["translate", "--model", str(tiny_bundle), "-i", str(src)]) == 2
    assert "Is a directory" in caplog.text and str(src) in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_cuda_without_cuda_names_the_flag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    argv = ["translate", "--model", str(tmp_path / "never-read"), "--device", "cuda"]
    assert main(argv) == 2
    assert "CUDA is not available (--device)" in caplog.text


@pytest.mark.parametrize("flag", ["--threads", "--lanes", "--batch-tokens"])
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_counts_below_one_are_refused_by_the_parser(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["translate", flag, value])
    assert exited.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_translation_quietly(tiny_bundle: Path) -> None:
    """`nmt translate | head -1`: no BrokenPipeError traceback."""
    command = [sys.executable, "-m", "model.cli", "translate", "--model", str(tiny_bundle)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b"ba be ki\n" * 5000)
        proc.stdin.close()
        assert proc.stdout.readline()  # the first translation, then the reader leaves
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
    assert proc.returncode == 1
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
