"""Run under torchrun by test_ddp.py: train from a YAML config, then save this rank's weights.

Usage: ``torchrun --nproc_per_node=K ddp_worker.py CONFIG OUT_DIR``; rank r writes
``OUT_DIR/rank{r}.pt`` with its model's state_dict once training stops.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch

from model import Seq2Seq
from training.config import load_config
from training.loop import TrainState, train


def main(config: str, out_dir: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO, format=f"rank{rank} %(levelname)s %(message)s")

    def dump(model: Seq2Seq, state: TrainState) -> None:
        torch.save(
            {"model": model.state_dict(), "step": state.step}, Path(out_dir) / f"rank{rank}.pt"
        )

    train(load_config(config), on_finish=dump)


if __name__ == "__main__":
    main(*sys.argv[1:])
