"""Data parallelism: 2 gloo processes under torchrun == 1 process accumulating 2 batches.

Rank r takes batches r, r + 2, ... of each epoch's plan, and the loss of an update is divided by
its target tokens summed over ranks, so the averaged gradient of 2 ranks equals the accumulated
gradient of 1 process that takes the same 2 batches per update.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from run_helpers import subprocess_env, write_yaml

from training import checkpoint
from training.batching import BatchIterator, epoch_batches
from training.config import config_from_dict
from training.loop import train

WORKER = Path(__file__).with_name("ddp_worker.py")

# Lengths whose plans have an odd number of batches (7 here), so that an update of 2 batches
# would straddle two epochs unless every epoch is cut to a multiple of 2.
LENGTHS = [(n % 5 + 1, (n * 7) % 5 + 1) for n in range(40)]
BUDGET = 32


def updates(world_size: int, accumulate: int, count: int) -> list[list[tuple[int, int]]]:
    """The (epoch, batch-plan position) of every batch in each of ``count`` updates, all ranks."""
    ranks = [
        BatchIterator(LENGTHS, BUDGET, seed=3, rank=r, world_size=world_size, accumulate=accumulate)
        for r in range(world_size)
    ]
    out = []
    for _ in range(count):
        taken = [[next(it) for _ in range(accumulate)] for it in ranks]
        out.append(
            sorted(
                (b.epoch, b.index * world_size + rank)
                for rank, batches in enumerate(taken)
                for b in batches
            )
        )
    return out


def test_ranks_times_accumulation_is_what_matters_across_epochs() -> None:
    plans = [len(epoch_batches(LENGTHS, BUDGET, 8, 3, e)) for e in range(3)]
    assert all(n % 2 == 1 for n in plans), plans  # the case where it could go wrong
    one_process = updates(world_size=1, accumulate=2, count=10)
    assert updates(world_size=2, accumulate=1, count=10) == one_process
    for batches in one_process:
        assert len({epoch for epoch, _ in batches}) == 1  # no update straddles two epochs
    assert {epoch for epoch, _ in one_process[-1]} == {3}  # 3 updates per epoch of 7 batches
    assert updates(world_size=2, accumulate=2, count=5) == updates(1, 4, 5)


def test_each_rank_sees_its_own_batches_and_the_same_count() -> None:
    iterators = [BatchIterator(LENGTHS, BUDGET, seed=3, rank=r, world_size=2) for r in range(2)]
    first_epoch = [it.batches(0) for it in iterators]
    assert len(first_epoch[0]) == len(first_epoch[1])
    seen = [tuple(b) for b in itertools.chain(*first_epoch)]
    assert len(seen) == len(set(seen))


def run_torchrun(config: Path, out_dir: Path, log: Path) -> None:
    done = torchrun([str(WORKER), str(config), str(out_dir)], log)
    assert done.returncode == 0, log.read_text()[-4000:]


def torchrun(program: list[str], log: Path) -> subprocess.CompletedProcess[bytes]:
    """``program`` on 2 gloo ranks of this machine, its output (all ranks) in ``log``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    with log.open("w") as sink:
        return subprocess.run(
            [*command, *program],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            timeout=480,
        )


@pytest.mark.slow
def test_a_data_error_on_rank_0_stops_every_rank_in_one_line(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Rank 0 prepares the data while the others wait; when it fails they learn so and stop
    with a line each, where they used to wait until gloo failed them with a traceback."""
    raw = make_raw("ddp")
    short = tmp_path / "short.tgt"
    lines = Path(raw["data"]["train_tgt"]).read_text().splitlines(keepends=True)
    short.write_text("".join(lines[:-3]))
    raw["data"]["train_tgt"] = str(short)
    log = tmp_path / "torchrun.log"
    done = torchrun(["-m", "model.cli", "train", str(write_yaml(raw, tmp_path / "c.yaml"))], log)
    out = log.read_text()
    assert done.returncode != 0
    assert out.count("line counts differ") == 1, out  # rank 0 says what is wrong
    assert out.count("rank 0 could not prepare the data; rank 0's error says why") == 1, out
    assert "[rank1]" not in out and "Connection closed" not in out, out
    # the group was left before exiting: gloo's teardown at exit used to abort a rank now and then
    assert "terminate called" not in out and "exitcode  : -6" not in out, out


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_accumulating_their_batches(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    # 5 batches per epoch (odd): 2 updates per epoch, so 5 steps cross two epoch boundaries.
    loop = {"max_steps": 5, "batch_tokens": 256, "save_every": 1000}
    ddp_raw = make_raw("ddp", loop=loop)
    run_torchrun(write_yaml(ddp_raw, tmp_path / "ddp.yaml"), tmp_path, tmp_path / "torchrun.log")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert rank0["step"] == rank1["step"] == 5
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), name

    # The single process reuses the DDP run's SentencePiece model, so only the training differs.
    (tmp_path / "single").mkdir()
    shutil.copy(tmp_path / "ddp" / "spm.model", tmp_path / "single" / "spm.model")
    train(config_from_dict(make_raw("single", loop=loop, optim={"accumulate": 2})))

    ddp_ckpt = checkpoint.load(tmp_path / "ddp" / "checkpoints" / "step_5.pt")
    one_ckpt = checkpoint.load(tmp_path / "single" / "checkpoints" / "step_5.pt")
    assert ddp_ckpt["batches"]["epoch"] == one_ckpt["batches"]["epoch"] == 2
    assert ddp_ckpt["state"]["tokens"] == one_ckpt["state"]["tokens"]
    for name, tensor in one_ckpt["model"].items():
        assert torch.equal(ddp_ckpt["model"][name], rank0["model"][name])  # rank 0 saved it
        torch.testing.assert_close(rank0["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
