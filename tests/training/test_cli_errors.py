"""Errors a user meets through the ``nmt`` command: one clear line and a non-zero exit."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from run_helpers import run_nmt, write_yaml

from model.cli import main as nmt
from training import download
from training.prepare import hold_run_dir


def writable_copy(corpus: Path, dest: Path) -> Path:
    """The shared test corpus copied to ``dest``, for a test that damages or removes a file."""
    dest.mkdir()
    for f in corpus.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_train_with_a_mistyped_key_names_its_path_and_a_suggestion(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    raw = make_raw()
    raw["loop"]["max_step"] = raw["loop"].pop("max_steps")
    bad = write_yaml(raw, tmp_path / "bad.yaml")
    result = run_nmt("train", bad)
    assert result.returncode != 0
    assert "loop.max_step is not a field; did you mean loop.max_steps?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing is written before the config is valid


def test_train_with_a_bad_override_value_names_its_path(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_yaml(make_raw(), tmp_path / "ok.yaml")
    assert nmt(["train", str(config), "--set", "optim.lr=fast"]) == 2
    assert "optim.lr: expected float" in caplog.text


@pytest.mark.parametrize("damage", ["short_target", "bad_utf8"])
def test_train_reports_corpus_errors_with_file_and_line(
    damage: str,
    copy_data: Path,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = writable_copy(copy_data, tmp_path / "data")
    if damage == "short_target":
        lines = (data / "train.tgt").read_text().splitlines(keepends=True)
        (data / "train.tgt").write_text("".join(lines[:-1]))
        expected = [
            f"{data / 'train.src'} has 120 lines but {data / 'train.tgt'} has 119",
            f"{data / 'train.src'}:120 is the first line without a partner",
        ]
    else:
        (data / "valid.src").write_bytes((data / "valid.src").read_bytes() + b"caf\xe9\n")
        expected = [f"{data / 'valid.src'}:11: invalid UTF-8"]
    raw = make_raw()
    raw["data"] |= {
        k: str(data / Path(v).name) for k, v in raw["data"].items() if k.endswith(("_src", "_tgt"))
    }
    config = write_yaml(raw, tmp_path / "run.yaml")

    assert nmt(["train", str(config)]) == 2
    for text in expected:
        assert text in caplog.text
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_data_command_rejects_a_wrong_checksum_and_leaves_no_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file:// mirror whose files differ from the real Multi30k ones is refused."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in download.MULTI30K_SHA256:
        (mirror / name).write_bytes(gzip.compress(b"not the real corpus\n", mtime=0))
    dest = tmp_path / "dest"

    code = nmt(["data", "multi30k", "--dest", str(dest), "--base-url", mirror.as_uri()])

    assert code == 2
    assert "checksum mismatch for train.en.gz" in caplog.text
    assert list(dest.iterdir()) == []  # neither the file nor its temporary copy


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_train_on_cuda_without_cuda_says_so_before_writing_anything(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_yaml(make_raw(), tmp_path / "ok.yaml")

    assert nmt(["train", str(config), "--set", "loop.device=cuda"]) == 2

    assert "device 'cuda' requested but CUDA is not available (loop.device)" in caplog.text
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("below", ["", "sub"])
def test_train_with_a_run_dir_that_is_a_file_says_so(
    below: str,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file as run_dir (or as its parent) was a bare ``[Errno 17] File exists``."""
    config = write_yaml(make_raw(), tmp_path / "ok.yaml")
    blocker = tmp_path / "f"
    blocker.write_text("not a directory\n")
    run_dir = blocker / below if below else blocker

    assert nmt(["train", str(config), "--set", f"run_dir={run_dir}"]) == 2

    assert f"run_dir {run_dir}" in caplog.text
    assert f"{blocker} is a file; run_dir must be a directory" in caplog.text
    assert blocker.read_text() == "not a directory\n"


@pytest.mark.parametrize("key", ["test_src", "valid_tgt"])
def test_train_with_a_missing_data_file_fails_before_writing_anything(
    key: str,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A missing test file trained every step and failed only at export."""
    raw = make_raw()
    missing = tmp_path / "missing.txt"
    raw["data"][key] = str(missing)
    config = write_yaml(raw, tmp_path / "run.yaml")

    assert nmt(["train", str(config)]) == 2

    assert f"data.{key}: cannot read {missing} (No such file or directory)" in caplog.text
    assert not (tmp_path / "run").exists()


def test_export_reports_a_test_file_gone_since_training_once(
    make_raw: Callable[..., dict[str, Any]],
    copy_data: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = writable_copy(copy_data, tmp_path / "data")
    raw = make_raw(loop={"max_steps": 2})
    raw["data"] |= {k: str(data / Path(v).name) for k, v in raw["data"].items() if "_" in k and v}
    assert nmt(["train", str(write_yaml(raw, tmp_path / "run.yaml"))]) == 0
    (data / "test.src").unlink()
    caplog.clear()

    assert nmt(["export", str(tmp_path / "run"), "--out", str(tmp_path / "bundle")]) == 2

    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{data / 'test.src'}: cannot read (No such file or directory)"]


def test_resume_with_another_architecture_names_the_fields_and_changes_nothing(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A different hidden size was a 44-line traceback of state_dict size mismatches."""
    config = write_yaml(make_raw(loop={"max_steps": 2}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in [*run.glob("*.yaml"), *run.glob("checkpoints/*")]}

    changed = ["--set", "model.hidden_size=32", "--set", "model.attention=dot"]
    assert nmt(["train", str(config), "--resume", *changed]) == 2

    assert "model.hidden_size: checkpoint 16, config 32" in caplog.text
    assert "model.attention: checkpoint general, config dot" in caplog.text
    assert "resume needs the model and tokenizer config the checkpoint was" in caplog.text
    after = {p.name: p.read_bytes() for p in [*run.glob("*.yaml"), *run.glob("checkpoints/*")]}
    assert after == before
    assert nmt(["train", str(config), "--resume", "--set", "loop.max_steps=3"]) == 0


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (["--set", "optim.lr=.inf"], "lr must be positive and finite, got inf"),
        (["--set", "loop.max_minutes=-1"], "max_minutes must be positive and finite or null"),
        (["--set", "loop.max_steps=[1"], "value is not valid YAML (expected ',' or ']'"),
        (["--set", "tokenizer.vocab_size=8"], "spm"),  # smaller than the corpus's characters
    ],
)
def test_bad_settings_are_one_line_before_any_step(
    change: list[str],
    said: str,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = write_yaml(make_raw(), tmp_path / "run.yaml")
    assert nmt(["train", str(config), *change]) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert said in line and "\n" not in line


@pytest.mark.parametrize(
    "content", [b"data: [\n", b"\xff\xfe data: {}\n", b"loop:\n  max_steps: 10\n  max_steps: 20\n"]
)
def test_a_config_file_that_cannot_be_read_is_one_line_naming_it(
    content: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(content)
    assert nmt(["train", str(config)]) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith(f"{config}: cannot load config (") and "\n" not in line


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "RUN", "--out", "X", "--average-last", "0"],
        ["export", "RUN", "--out", "X", "--checkpoint", "../other/step_9.pt"],
        ["export", "RUN", "--out", "X", "--checkpoint", "best.pt", "--average-last", "2"],
        ["evaluate", "--model", "M", "--src", "S", "--ref", "R", "--batch-tokens", "0"],
        ["shortlist", "--model", "M", "--train-src", "S", "--train-tgt", "T", "--per-source", "0"],
        ["shortlist", "--model", "M", "--train-src", "S", "--train-tgt", "T", "--frequent", "-5"],
    ],
)
def test_flags_out_of_range_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        nmt(argv)
    assert exited.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_evaluating_empty_files_is_one_line(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    argv = ["evaluate", "--model", str(tiny_bundle), "--src", str(empty), "--ref", str(empty)]
    assert nmt(argv) == 2
    assert f"{empty} has no lines: BLEU needs at least one sentence" in caplog.text


def test_export_averaging_more_checkpoints_than_kept_says_how_many_there_are(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = {"max_steps": 4, "save_every": 2, "keep_last": 2}
    assert nmt(["train", str(write_yaml(make_raw(loop=loop), tmp_path / "run.yaml"))]) == 0
    argv = ["export", str(tmp_path / "run"), "--out", str(tmp_path / "b"), "--average-last", "5"]
    assert nmt([*argv, "--no-eval"]) == 2
    assert "has 2 step checkpoints (keep_last keeps that many): give at most 2" in caplog.text
    assert not (tmp_path / "b").exists()


def test_a_download_destination_that_is_a_file_is_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "afile"
    dest.write_text("")
    assert nmt(["data", "multi30k", "--dest", str(dest), "--from", str(tmp_path)]) == 2
    assert str(dest) in caplog.text


def test_a_run_dir_in_use_by_another_training_is_refused(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two trainings in one directory interleaved their checkpoints and metrics."""
    config = write_yaml(make_raw(loop={"max_steps": 2}), tmp_path / "run.yaml")
    with hold_run_dir(tmp_path / "run"):  # as another process training there would
        assert nmt(["train", str(config)]) == 2
    assert f"run_dir {tmp_path / 'run'} is in use by another nmt train" in caplog.text
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert nmt(["train", str(config)]) == 0  # free again once the other is done
