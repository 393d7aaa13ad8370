"""Checkpoints and resume: exact continuation, refusal to overwrite, atomic writes, SIGTERM."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from run_helpers import nmt_command, subprocess_env, write_yaml

from model.cli import main as nmt
from training import checkpoint
from training.config import TrainConfig
from training.loop import train

MakeConfig = Callable[..., TrainConfig]


def final_checkpoint(cfg: TrainConfig) -> dict[str, Any]:
    latest = checkpoint.latest(Path(cfg.run_dir) / "checkpoints")
    assert latest is not None
    return checkpoint.load(latest)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"parameters differ: {different}"


def whole_and_resumed(
    make_config: MakeConfig, **sections: Any
) -> tuple[dict[str, Any], dict[str, Any], TrainConfig]:
    """The final checkpoints of 12 steps in one go and of 6 steps, stop, resume to 12, whose
    counters must agree (all but the time taken), and the resumed run's config."""

    def config(run: str, steps: int) -> TrainConfig:
        return make_config(run, **{**sections, "loop": {**sections["loop"], "max_steps": steps}})

    full = config("full", 12)
    train(full)
    first = config("split", 6)
    train(first)
    assert final_checkpoint(first)["state"]["step"] == 6
    second = config("split", 12)
    train(second, resume=True)
    want, got = final_checkpoint(full), final_checkpoint(second)
    assert got["state"] == want["state"] | {"elapsed": got["state"]["elapsed"]}
    return want, got, second


def test_resume_continues_exactly_with_dropout(make_config: MakeConfig) -> None:
    """2N steps in one go == N steps, stop, resume to 2N: bit-identical weights (dropout on).

    Validation runs at step N in both, and the run crosses an epoch boundary (8 batches per
    epoch), so RNG, optimizer, schedule, batch position and counters must all be restored.
    """
    want, got, second = whole_and_resumed(
        make_config, model={"dropout": 0.3}, loop={"save_every": 100, "valid_every": 6}
    )
    assert got["state"]["step"] == 12 and got["batches"]["epoch"] >= 1
    assert_same_weights(want["model"], got["model"])
    assert_same_weights(want["optimizer"]["state"][0], got["optimizer"]["state"][0])

    # Resuming a run that already reached max_steps takes no further step.
    train(second, resume=True)
    assert final_checkpoint(second)["state"]["step"] == 12
    assert not (Path(second.run_dir) / "checkpoints" / "step_13.pt").exists()


def test_run_with_checkpoints_refuses_to_start_without_resume(
    make_config: MakeConfig,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = make_config(loop={"max_steps": 2})
    train(cfg)
    before = sorted(p.name for p in (Path(cfg.run_dir) / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="already has checkpoints: pass --resume"):
        train(cfg)
    config_file = write_yaml(make_raw(loop={"max_steps": 2}), tmp_path / "run.yaml")
    assert nmt(["train", str(config_file)]) == 2
    assert "pass --resume" in caplog.text
    assert sorted(p.name for p in (Path(cfg.run_dir) / "checkpoints").iterdir()) == before


def test_atomic_save_leaves_old_checkpoint_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.atomic_save({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def save_half_then_fail(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.atomic_save({"step": 2, "w": torch.zeros(1000)}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    saved = checkpoint.load(path)
    assert saved["step"] == 1 and torch.equal(saved["w"], torch.ones(3))


def test_failed_save_during_training_keeps_the_previous_checkpoint(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(loop={"max_steps": 10, "save_every": 5})
    real_save, calls = torch.save, []

    def fail_on_second(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fail_on_second)
    with pytest.raises(OSError):
        train(cfg)
    ckpt_dir = Path(cfg.run_dir) / "checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == ["step_5.pt"]
    assert checkpoint.load(ckpt_dir / "step_5.pt")["state"]["step"] == 5

    monkeypatch.setattr(torch, "save", real_save)
    train(cfg, resume=True)  # continues from step 5
    assert final_checkpoint(cfg)["state"]["step"] == 10


def wait_for(
    predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"nmt train exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("nmt train made no progress in time")
        time.sleep(0.2)


def train_lines(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [line for line in lines if line["type"] == "train"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_zero_and_resume_continues(
    make_raw: Callable[..., dict[str, Any]], make_config: MakeConfig, tmp_path: Path
) -> None:
    endless = {"max_steps": 1_000_000, "save_every": 1_000_000, "log_every": 1}
    config_file = write_yaml(make_raw(loop=endless), tmp_path / "run.yaml")
    run_dir, log_file = tmp_path / "run", tmp_path / "train.log"
    with log_file.open("w") as log:  # a file, not a pipe: tqdm would fill a pipe and block
        proc = subprocess.Popen(
            nmt_command("train", config_file),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=subprocess_env(),
        )
        try:
            wait_for(lambda: len(train_lines(run_dir)) >= 3, 240, proc, log_file)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    err = log_file.read_text()
    assert proc.returncode == 0, err[-3000:]
    assert "received SIGTERM" in err

    saved = checkpoint.step_checkpoints(run_dir / "checkpoints")
    assert len(saved) == 1
    stopped = checkpoint.load(saved[0])["state"]["step"]
    assert stopped >= 3 and saved[0].name == f"step_{stopped}.pt"

    cfg = make_config(loop={**endless, "max_steps": stopped + 3})
    train(cfg, resume=True)
    assert final_checkpoint(cfg)["state"]["step"] == stopped + 3
    steps = [line["step"] for line in train_lines(run_dir)]
    assert steps == list(range(1, stopped + 4))  # no step lost, none repeated


def test_early_stopping_stops_after_patience_validations_without_gain_and_stays_stopped(
    make_config: MakeConfig,
) -> None:
    """patience=2: the run stops at the second validation in a row without a BLEU gain, before
    max_steps, and resuming it takes no further step."""
    loop = {"max_steps": 60, "valid_every": 2, "save_every": 100, "patience": 2}
    cfg = make_config("early", loop=loop)
    train(cfg)
    state = final_checkpoint(cfg)["state"]
    metrics = Path(cfg.run_dir) / "metrics.jsonl"
    valid = [r for r in map(json.loads, metrics.read_text().splitlines()) if r["type"] == "valid"]
    assert state["step"] < 60, "early stopping never fired"
    assert state["bad_validations"] == 2
    assert [r["step"] for r in valid if r["step"] > state["best_step"]] == [
        state["step"] - 2,
        state["step"],
    ]
    assert all(r["bleu"] <= state["best_bleu"] for r in valid)
    train(cfg, resume=True)
    assert final_checkpoint(cfg)["state"]["step"] == state["step"]


def damage(path: Path, how: str) -> None:
    """Cut ``path`` to half its size, overwrite it with text, or with a dict of other keys."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "foreign":
        torch.save({"weights": torch.ones(2)}, path)
    else:
        path.write_text("garbage\n")


@pytest.mark.parametrize("how", ["truncated", "garbage", "foreign"])
def test_resume_skips_a_damaged_newest_checkpoint_and_sets_it_aside(
    how: str,
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A damaged step_10.pt was a traceback; the run resumes from step_5.pt instead. The damaged
    file is renamed, or pruning (keep_last=1) would keep it and delete the new step_8.pt."""
    loop = {"max_steps": 10, "save_every": 5, "keep_last": 2}
    config = write_yaml(make_raw(loop=loop), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    ckpt_dir = tmp_path / "run" / "checkpoints"
    damage(ckpt_dir / "step_10.pt", how)

    shorter = ["--set", "loop.max_steps=8", "--set", "loop.keep_last=1"]
    assert nmt(["train", str(config), "--resume", *shorter]) == 0

    assert f"{ckpt_dir / 'step_10.pt'} is " in caplog.text and "not a checkpoint" in caplog.text
    assert "resuming from the older step_5.pt" in caplog.text
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_10.pt.damaged", "step_8.pt"]
    assert checkpoint.load(ckpt_dir / "step_8.pt")["state"]["step"] == 8


def test_resume_without_an_intact_checkpoint_is_one_line_and_changes_nothing(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_yaml(make_raw(loop={"max_steps": 10, "save_every": 5}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    ckpt_dir = tmp_path / "run" / "checkpoints"
    damage(ckpt_dir / "step_10.pt", "truncated")
    damage(ckpt_dir / "step_5.pt", "garbage")
    before = {p.name: p.read_bytes() for p in ckpt_dir.iterdir()}
    caplog.clear()

    assert nmt(["train", str(config), "--resume"]) == 2

    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith(f"{ckpt_dir / 'step_10.pt'} is damaged or not a checkpoint")
    assert line.endswith(f"and so is step_5.pt; no intact checkpoint in {ckpt_dir} to resume from")
    assert {p.name: p.read_bytes() for p in ckpt_dir.iterdir()} == before


def test_a_checkpoint_that_cannot_be_read_now_is_not_set_aside(
    make_raw: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Permission denied is not the file's fault: renaming it would lose a good checkpoint."""
    config = write_yaml(make_raw(loop={"max_steps": 10, "save_every": 5}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    ckpt_dir = tmp_path / "run" / "checkpoints"
    real_load = torch.load

    def refuse_the_newest(f: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(f).name == "step_10.pt":
            raise PermissionError(13, "Permission denied", str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", refuse_the_newest)
    assert nmt(["train", str(config), "--resume"]) == 2
    assert "Permission denied" in caplog.text
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step_10.pt", "step_5.pt"]


def test_setting_aside_keeps_an_earlier_damaged_copy(tmp_path: Path) -> None:
    (tmp_path / "step_4.pt.damaged").write_text("first\n")
    (tmp_path / "step_4.pt").write_text("second\n")
    checkpoint.set_aside([tmp_path / "step_4.pt"])
    assert (tmp_path / "step_4.pt.damaged").read_text() == "first\n"
    assert (tmp_path / "step_4.pt.damaged.1").read_text() == "second\n"


def test_resume_with_another_tokenizer_is_refused_before_anything_is_written(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another vocabulary would be trained into the run, and the weights would not fit it."""
    config = write_yaml(make_raw(loop={"max_steps": 2}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    vocab = yaml.safe_load((run / "config.yaml").read_text())["tokenizer"]["vocab_size"]
    bigger = ["--set", f"tokenizer.vocab_size={vocab + 8}"]
    assert nmt(["train", str(config), "--resume", *bigger]) == 2
    assert f"tokenizer.vocab_size: checkpoint {vocab}, config {vocab + 8}" in caplog.text
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_fresh_start_clears_what_a_start_without_checkpoints_left(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Killed before its first checkpoint, a run left its tokenizer and metrics; a new start
    with another tokenizer config reused the tokenizer and repeated the metrics' steps."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "spm.model").write_bytes(b"a tokenizer of another config")
    (run / "metrics.jsonl").write_text('{"type": "train", "step": 1, "loss": 99.0}\n')
    config = write_yaml(make_raw(loop={"max_steps": 2, "log_every": 1}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    assert (run / "spm.model").read_bytes() != b"a tokenizer of another config"
    assert [line["step"] for line in train_lines(run)] == [1, 2]
    assert all(line["loss"] != 99.0 for line in train_lines(run))


def test_resume_writes_each_step_of_the_metrics_once(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Steps after the checkpoint that a killed run had logged are taken, and logged, again."""
    loop = {"max_steps": 4, "save_every": 2, "log_every": 1}
    config = write_yaml(make_raw(loop=loop), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    run = tmp_path / "run"
    (run / "checkpoints" / "step_4.pt").unlink()  # as if killed after logging steps 3 and 4
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"type": "train", "st')  # and cut off mid-line
    assert nmt(["train", str(config), "--resume", "--set", "loop.max_steps=5"]) == 0
    assert [line["step"] for line in train_lines(run)] == [1, 2, 3, 4, 5]


def test_a_refused_resume_leaves_the_runs_config_as_it_was(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    config = write_yaml(make_raw(loop={"max_steps": 2}), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    saved = (tmp_path / "run" / "config.yaml").read_text()
    other_batches = ["--set", "loop.batch_tokens=64", "--set", "loop.max_steps=3"]
    assert nmt(["train", str(config), "--resume", *other_batches]) == 2
    assert (tmp_path / "run" / "config.yaml").read_text() == saved
