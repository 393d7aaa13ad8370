"""Training run -> inference bundle, with validation and test metrics in its metadata."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

import torch

from model import ModelConfig, Seq2Seq, Tokenizer, save_bundle
from model.bundle import DTYPES, check_destination
from model.shortlist import Shortlist
from training import checkpoint, hardware
from training.config import TrainConfig, load_config
from training.corpus import read_pairs
from training.evaluate import evaluate_pairs, translator_for
from training.prepare import spm_files
from training.shortlist import DEFAULT_SHORTLIST, ShortlistSize, shortlist_from_pairs

log = logging.getLogger(__name__)


def pick_weights(
    ckpt_dir: Path, average_last: int | None, name: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(weights, saved checkpoint, description): the checkpoint ``name`` if given, else the
    mean of the last N step checkpoints, else the best one."""
    if name:
        saved = checkpoint.load(ckpt_dir / name, checkpoint.EXPORT_KEYS)
        return saved["model"], saved, name
    if average_last:
        found = checkpoint.step_checkpoints(ckpt_dir)
        if len(found) < average_last:
            raise ValueError(
                f"--average-last {average_last}, but {ckpt_dir} has {len(found)} step "
                f"checkpoints (keep_last keeps that many): give at most {len(found)}"
            )
        paths = found[-average_last:]
        saved = checkpoint.load(paths[-1], checkpoint.EXPORT_KEYS)
        return (
            checkpoint.average_weights(paths),
            saved,
            "average of " + ", ".join(p.name for p in paths),
        )
    path = ckpt_dir / "best.pt"
    if not path.is_file():
        path = checkpoint.latest(ckpt_dir) or path
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}; train first")
    saved = checkpoint.load(path, checkpoint.EXPORT_KEYS)
    return saved["model"], saved, path.name


def recorded_now() -> dict[str, Any]:
    """For checkpoints written before training recorded its hardware: this machine, marked."""
    info = hardware.describe(torch.device("cpu"))
    del info["torch_threads"]  # the exporting process's, not the training run's
    return {**info, "recorded": "at export, not by the training run"}


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def data_description(cfg: TrainConfig) -> dict[str, Any]:
    """The training files and their SHA-256, so a bundle says exactly what it learned from."""
    files = {}
    for value in cfg.data.split("train").values():
        if value:
            files[Path(value).name] = hashlib.sha256(Path(value).read_bytes()).hexdigest()
    return {
        "train_files": files,
        "source_lang": cfg.data.source_lang,
        "target_lang": cfg.data.target_lang,
    }


def evaluate_splits(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    cfg: TrainConfig,
    beams: tuple[int, ...],
    shortlist: Shortlist | None,
) -> dict[str, Any]:
    """BLEU/chrF of the valid and test splits for each beam size, decoded as the bundle will be."""
    translator = translator_for(
        model, tokenizer, shortlist, batch_tokens=8192, max_input_tokens=10_000
    )
    splits = {
        split: read_pairs(**cfg.data.split(split))
        for split in ("valid", "test")
        if cfg.data.has_split(split)
    }
    return evaluate_pairs(translator, splits, beams, cfg.eval.length_penalty)


def export(
    run_dir: str | Path,
    out: str | Path,
    average_last: int | None = None,
    dtype: str = "fp32",
    evaluate: bool = True,
    model_id: str | None = None,
    checkpoint_name: str | None = None,
    shortlist: ShortlistSize | None = DEFAULT_SHORTLIST,
) -> Path:
    """Write the bundle for ``run_dir`` to ``out``; returns ``out``.

    With ``shortlist`` (the default) the bundle gets a vocabulary shortlist built from the
    training data, and its metrics are measured with it, as the bundle will decode.
    """
    run = Path(run_dir)
    check_destination(Path(out).resolve())  # before minutes of evaluation, not after
    cfg = load_config(run / "config.yaml")
    weights, saved, source = pick_weights(run / "checkpoints", average_last, checkpoint_name)
    model = Seq2Seq(ModelConfig.from_dict(saved["model_config"]))
    model.load_state_dict(weights)
    # Evaluate the weights as the bundle will hold them (fp16/bf16 rounding included).
    model = model.to(DTYPES[dtype]).float().eval()
    tokenizer = Tokenizer(*spm_files(run, cfg.tokenizer.joint))
    lists = None
    if shortlist is not None:
        lists = shortlist_from_pairs(read_pairs(**cfg.data.split("train")), tokenizer, shortlist)
    state = saved.get("state", {})
    metadata: dict[str, Any] = {
        "model_id": model_id or Path(out).name,
        "source_lang": cfg.data.source_lang,
        "target_lang": cfg.data.target_lang,
        "checkpoint": source,
        "data": data_description(cfg),
        "training": {
            "steps": state.get("step"),
            "target_tokens": state.get("tokens"),
            "wall_clock_s": round(state.get("elapsed", 0.0), 1),
            "best_step": state.get("best_step"),
            "hardware": saved.get("hardware") or recorded_now(),
            "git_sha": git_sha(),
        },
        "decoding": {"beam_size": cfg.eval.beam_size, "length_penalty": cfg.eval.length_penalty},
        "metrics": evaluate_splits(model, tokenizer, cfg, (1, 5), lists) if evaluate else {},
    }
    if shortlist is not None:
        metadata["shortlist"] = shortlist.describe("training data")
    path = save_bundle(out, model, tokenizer, metadata, dtype, lists)
    log.info("wrote %s (%s, %s)", path, source, dtype)
    return path
