"""The learning proof: ``configs/tiny_copy.yaml`` learns to copy (sockeye's seq-copy test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import REPO

from training import checkpoint, synthetic
from training.config import load_config
from training.loop import train


def test_synthetic_module_writes_the_copy_task(tmp_path: Path) -> None:
    """``python -m training.synthetic DIR`` is what ``make train-tiny`` runs for its data."""
    assert synthetic.main([str(tmp_path / "tiny_copy")]) == 0
    names = sorted(p.name for p in (tmp_path / "tiny_copy").iterdir())
    assert names == [
        f"{split}.{side}" for split in ("test", "train", "valid") for side in ("src", "tgt")
    ]
    assert len((tmp_path / "tiny_copy" / "train.src").read_text().splitlines()) == 500


@pytest.mark.slow
def test_tiny_copy_config_learns_to_copy(tmp_path: Path) -> None:
    """The committed config, on the data ``make train-tiny`` generates, reaches BLEU >= 90."""
    data = tmp_path / "data"
    synthetic.write_copy_task(data)  # the defaults: what `python -m training.synthetic` writes
    files = [
        f"data.{split}_{side}={data / f'{split}.{side}'}"
        for split in ("train", "valid", "test")
        for side in ("src", "tgt")
    ]
    cfg = load_config(REPO / "configs" / "tiny_copy.yaml", [*files, f"run_dir={tmp_path / 'run'}"])

    train(cfg)

    valid = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if '"valid"' in line
    ]
    assert valid[-1]["step"] == cfg.loop.max_steps
    assert max(v["bleu"] for v in valid) >= 90, valid
    assert valid[-1]["bleu"] >= 85, valid  # and it stays there
    best = checkpoint.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["valid"]["bleu"] >= 90
