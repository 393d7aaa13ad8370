"""Helpers for the training-run tests: tiny run configs and running ``nmt`` in a subprocess.

Every run here trains a model with embeddings 8 and hidden size 16 on about a hundred synthetic
sentences for a few dozen steps, so a whole training run takes a second or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SPLITS = ("train", "valid", "test")
REPO = Path(__file__).resolve().parents[2]


def tiny_run(data: Path, run_dir: Path) -> dict[str, Any]:
    """A raw config for a tiny run over ``data`` (the layout ``write_copy_task`` writes)."""
    files = {
        f"{split}_{side}": str(data / f"{split}.{side}")
        for split in SPLITS
        for side in ("src", "tgt")
    }
    return {
        "data": {
            **files,
            "source_lang": "xx",
            "target_lang": "xx",
            "clean": {"max_ratio": None, "dedup": False},
        },
        "tokenizer": {"vocab_size": 40, "byte_fallback": False, "input_sentence_size": 1000},
        "model": {
            "emb_size": 8,
            "hidden_size": 16,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "dropout": 0.0,
        },
        "optim": {"lr": 5e-3, "warmup_steps": 5, "label_smoothing": 0.1},
        "loop": {
            "max_steps": 10,
            "max_epochs": None,
            "batch_tokens": 128,
            "bucket_width": 4,
            "log_every": 5,
            "valid_every": 1000,  # no validation unless a test asks for it
            "save_every": 5,
            "keep_last": 5,
            "patience": None,
            "device": "cpu",
        },
        "eval": {"beam_size": 1, "max_valid_sentences": 10},
        "run_dir": str(run_dir),
        "seed": 1,
    }


def write_yaml(raw: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(raw), sort_keys=False), encoding="utf-8")
    return path


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment without torchrun's variables, single-threaded, plus ``extra``."""
    dist_vars = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in dist_vars}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def nmt_command(*args: str | Path) -> list[str]:
    """``nmt ARGS`` run by this interpreter (the one the package is installed in)."""
    return [sys.executable, "-m", "model.cli", *map(str, args)]


def run_nmt(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``nmt ARGS`` to completion, capturing its output."""
    return subprocess.run(
        nmt_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        check=False,
    )
