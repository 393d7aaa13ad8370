"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the model, optimizer, scheduler, the run's counters (TrainState), the batch
iterator's position and every RNG state. It is written to a temporary file, fsynced and renamed,
so a crash mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

log = logging.getLogger(__name__)

STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
# What export reads (best.pt holds no more), and what a resume reads besides.
EXPORT_KEYS = frozenset({"model", "model_config"})
RESUME_KEYS = EXPORT_KEYS | {"train_config", "optimizer", "schedule", "state", "batches", "rng"}


class CheckpointError(ValueError):
    """A checkpoint that a run cannot resume from."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # a run saved on more GPUs than this machine has resumes with the GPUs it has
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to ``path`` via a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A failed write (full disk, a signal, an unpicklable object) leaves no partial file,
        # and ``path`` keeps whatever complete checkpoint it held before.
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path, needs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Load a checkpoint this project wrote (it holds RNG states, so it is unpickled), holding
    at least the keys ``needs``.

    Raises:
        CheckpointError: the file is damaged (cut short, overwritten) or not a checkpoint.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError):
        raise  # not the file's fault: setting it aside would lose a good checkpoint
    except Exception as err:  # a damaged file fails in the zip reader, the unpickler or the OS
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is damaged or not a checkpoint ({reason})") from err
    if not isinstance(data, dict) or not data.keys() >= needs:
        raise CheckpointError(
            f"{path} is not a checkpoint of this project (it needs {sorted(needs)})"
        )
    return data


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """``step_N.pt`` files, oldest first."""
    found = [
        (int(m.group(1)), p) for p in ckpt_dir.glob("step_*.pt") if (m := STEP_FILE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def prune(ckpt_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (best.pt is kept apart)."""
    for old in step_checkpoints(ckpt_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)


def latest(ckpt_dir: Path) -> Path | None:
    """The newest step checkpoint (every save writes one), damaged or not."""
    steps = step_checkpoints(ckpt_dir)
    return steps[-1] if steps else None


class Intact(NamedTuple):
    """The newest step checkpoint that loads, its contents, and the newer ones that did not."""

    path: Path
    saved: dict[str, Any]
    damaged: list[Path]


def newest_intact(ckpt_dir: Path) -> Intact | None:
    """The checkpoint to resume from: the newest step checkpoint that loads, so that a damaged
    file (a disk error, a copy cut short) costs the steps since the one before, not the run.

    Raises:
        CheckpointError: there are step checkpoints, but none of them loads.
    """
    damaged: list[tuple[Path, CheckpointError]] = []
    for path in reversed(step_checkpoints(ckpt_dir)):
        try:
            saved = load(path, RESUME_KEYS)
        except CheckpointError as err:
            damaged.append((path, err))
            continue
        for _, why in damaged:
            log.warning("%s; resuming from the older %s", why, path.name)
        return Intact(path, saved, [bad for bad, _ in damaged])
    if not damaged:
        return None
    older = ", ".join(bad.name for bad, _ in damaged[1:])
    also = f", and so {'is' if len(damaged) == 2 else 'are'} {older}" if older else ""
    raise CheckpointError(
        f"{damaged[0][1]}{also}; no intact checkpoint in {ckpt_dir} to resume from"
    )


def set_aside(paths: list[Path]) -> None:
    """Rename damaged checkpoints to ``*.damaged``: as ``step_N.pt`` they would count among the
    newest, and pruning would delete the good checkpoints written after them."""
    for path in paths:
        aside = path.with_name(path.name + ".damaged")
        n = 1
        while aside.exists():  # an earlier damaged copy of the same step is kept too
            aside, n = path.with_name(f"{path.name}.damaged.{n}"), n + 1
        path.rename(aside)
        log.warning("renamed the damaged %s to %s", path, aside.name)


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints."""
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = load(path, EXPORT_KEYS)["model"]
        for name, tensor in weights.items():
            total[name] = total.get(name, 0) + tensor.float()
    return {name: tensor / len(paths) for name, tensor in total.items()}
