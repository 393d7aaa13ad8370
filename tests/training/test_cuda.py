"""Training on CUDA: exact resume under each precision, fp16's loss scale carried across a resume,
and a GPU-trained run that exports to a bundle the CPU serves (skipped without a GPU)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from run_helpers import write_yaml
from test_resume import assert_same_weights, final_checkpoint, whole_and_resumed

from model import Translator
from model.cli import main as nmt
from training import checkpoint
from training.config import TrainConfig
from training.loop import train

pytestmark = pytest.mark.gpu

MakeConfig = Callable[..., TrainConfig]


def cuda_loop(**loop: Any) -> dict[str, Any]:
    return {"device": "cuda", "save_every": 100, "valid_every": 6, **loop}


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_resume_on_cuda_continues_exactly(make_config: MakeConfig, amp: str) -> None:
    """12 steps in one go == 6 steps, stop, resume to 12, with dropout, validation and autocast."""
    want, got, _ = whole_and_resumed(make_config, model={"dropout": 0.3}, loop=cuda_loop(amp=amp))
    assert_same_weights(want["model"], got["model"])
    assert all(math.isfinite(float(p.abs().sum())) for p in got["model"].values())
    assert got["hardware"]["device"] == "cuda" and got["hardware"]["gpu"]
    assert (got["scaler"] is not None) == (amp == "fp16")


def test_fp16_loss_scale_survives_a_resume(make_config: MakeConfig) -> None:
    """A run that had backed its loss scale off to 1024 must not resume at the default 65536."""
    first = make_config("run", loop=cuda_loop(amp="fp16", max_steps=6))
    train(first)
    path = checkpoint.latest(Path(first.run_dir) / "checkpoints")
    assert path is not None
    saved = checkpoint.load(path)
    assert saved["scaler"]["scale"] > 1024.0  # starts at 65536, halves on each overflow
    saved["scaler"]["scale"] = 1024.0
    checkpoint.atomic_save(saved, path)

    train(make_config("run", loop=cuda_loop(amp="fp16", max_steps=12)), resume=True)
    # The scale only halves on overflow and grows after 2000 clean steps: 1024 or below.
    assert final_checkpoint(first)["scaler"]["scale"] <= 1024.0


def test_a_gpu_trained_run_exports_a_bundle_the_cpu_serves(
    make_raw: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    loop = cuda_loop(amp="bf16", max_steps=12, save_every=6)
    config = write_yaml(make_raw(loop=loop), tmp_path / "run.yaml")
    assert nmt(["train", str(config)]) == 0
    bundle = tmp_path / "bundle"
    assert nmt(["export", str(tmp_path / "run"), "--out", str(bundle)]) == 0
    machine = json.loads((bundle / "metadata.json").read_text())["training"]["hardware"]
    assert machine["device"] == "cuda" and machine["gpu"]
    cpu = Translator.from_dir(bundle, device="cpu", quantize="none")
    gpu = Translator.from_dir(bundle, device="cuda")
    texts = ["ba de gi ko", "lu ma ne", "ko"]
    assert [r.text for r in cpu.translate(texts)] == [r.text for r in gpu.translate(texts)]
