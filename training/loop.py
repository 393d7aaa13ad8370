"""The training run: ``train(cfg)`` starts or resumes it, then steps, reports, validates and
saves until it stops; one update and one validation pass are in ``training.step``."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model import Seq2Seq
from model.placement import resolve_device
from training import checkpoint, distributed, hardware
from training.batching import BatchIterator, collate, example_lengths
from training.config import TrainConfig, config_to_dict, save_resolved
from training.monitor import MetricsLog, StopSignal
from training.optim import LRSchedule, build_optimizer
from training.prepare import PreparedData, check_data_files, check_run_dir, hold_run_dir, prepare
from training.step import StepStats, train_step, validate

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """The run's counters; saved in every checkpoint."""

    step: int = 0
    tokens: int = 0  # target tokens trained on, all ranks
    elapsed: float = 0.0  # seconds of training, summed over resumed sessions
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0  # validations since the last BLEU gain (early stopping)


@dataclass
class Run:
    """Everything a training run carries from step to step; ``save`` writes what resuming it
    needs, ``restore`` reads it back."""

    cfg: TrainConfig
    info: distributed.DistInfo
    device: torch.device
    data: PreparedData
    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    batches: BatchIterator
    scaler: torch.amp.GradScaler | None  # fp16 on CUDA only
    state: TrainState
    machine: dict[str, Any]  # hardware.describe, recorded in every checkpoint
    resumed: bool

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def save(self, path: Path) -> None:
        """Rank 0 writes the whole state to ``path`` and prunes the oldest step checkpoints."""
        if not self.info.is_main:
            return
        checkpoint.atomic_save(
            {
                "model": self.model.state_dict(),
                "model_config": self.model.config.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict(),
                "state": asdict(self.state),
                "batches": self.batches.state_dict(),
                "rng": checkpoint.rng_state(),
                "train_config": config_to_dict(self.cfg),
                "hardware": self.machine,
                # fp16's loss scale: a resumed run must not restart from 65536 and skip steps
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            },
            path,
        )
        checkpoint.prune(self.ckpt_dir, self.cfg.loop.keep_last)

    def restore(self, path: Path, saved: dict[str, Any]) -> None:
        """Continue from ``saved``, the checkpoint read from ``path``: weights, optimizer,
        schedule, batch position, loss scale, every RNG and the counters."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.batches.load_state_dict(saved["batches"])
        if self.scaler is not None and saved.get("scaler"):  # absent from runs not in fp16
            self.scaler.load_state_dict(saved["scaler"])
        checkpoint.set_rng_state(saved["rng"])
        self.state = TrainState(**saved["state"])
        self.resumed = True
        log.info("resumed from %s at step %d", path, self.state.step)


def start_run(cfg: TrainConfig, resume: bool, device: torch.device) -> Run:
    """Join the process group, prepare the data and build the model, optimizer, schedule and
    batches on ``device``, restored from the run's last checkpoint when ``resume``."""
    run_dir = Path(cfg.run_dir)
    info = distributed.init(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    resume_from = checkpoint_to_resume(cfg, resume)
    data = prepare_on_ranks(cfg, info, device, run_dir, fresh=resume_from is None)
    torch.manual_seed(cfg.seed)
    vocab = (data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size)
    model = Seq2Seq(cfg.model.to_model_config(*vocab)).to(device)
    log.info(
        "model: %.2fM parameters, %s",
        sum(p.numel() for p in model.parameters()) / 1e6,
        model.config,
    )
    optimizer = build_optimizer(model, cfg.optim)
    batches = BatchIterator(
        example_lengths(data.train),
        cfg.loop.batch_tokens,
        cfg.loop.bucket_width,
        cfg.seed,
        info.rank,
        info.world_size,
        accumulate=cfg.optim.accumulate,
    )
    fp16 = cfg.loop.amp == "fp16" and device.type == "cuda"
    run = Run(
        cfg=cfg,
        info=info,
        device=device,
        data=data,
        model=model,
        optimizer=optimizer,
        schedule=LRSchedule(optimizer, cfg.optim, cfg.loop.max_steps),
        batches=batches,
        scaler=torch.amp.GradScaler("cuda") if fp16 else None,
        state=TrainState(),
        machine=hardware.describe(device, info.world_size),
        resumed=False,
    )
    if resume_from is not None:
        if info.is_main:  # after prepare's barrier: every rank has read the checkpoints by now
            checkpoint.set_aside(resume_from.damaged)
        run.restore(resume_from.path, resume_from.saved)
    if info.is_main:  # only now: a resume refused above leaves the run's config as it was
        save_resolved(cfg, run_dir / "config.yaml")
    return run


def checkpoint_to_resume(cfg: TrainConfig, resume: bool) -> checkpoint.Intact | None:
    """The run's newest intact checkpoint and its contents, read and checked against ``cfg``
    before anything is written; None for a run without checkpoints."""
    ckpt_dir = Path(cfg.run_dir) / "checkpoints"
    if not resume:
        if checkpoint.latest(ckpt_dir) is not None:
            raise ValueError(
                f"{cfg.run_dir} already has checkpoints: pass --resume, or choose another run_dir"
            )
        return None
    found = checkpoint.newest_intact(ckpt_dir)
    if found is not None:
        check_same_model(found.saved["train_config"], config_to_dict(cfg), found.path)
    return found


# What may change on resume: dropout has no weights. The tokenizer section counts as the model's:
# another vocabulary would be trained into the run and the weights would not fit it.
RESUMABLE_CHANGES = {("model", "dropout")}


def check_same_model(saved: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse to resume with another architecture or tokenizer, before anything is written:
    torch would say so in a page of state_dict size mismatches, after prepare had rewritten
    the run's config. A key the checkpoint predates is not compared."""
    differ = [
        f"{section}.{key}: checkpoint {saved[section][key]}, config {value}"
        for section in ("tokenizer", "model")
        for key, value in config[section].items()
        if (section, key) not in RESUMABLE_CHANGES
        and key in saved.get(section, {})
        and saved[section][key] != value
    ]
    if differ:
        raise checkpoint.CheckpointError(
            f"cannot resume from {path}: {'; '.join(differ)}; resume needs the model and "
            "tokenizer config the checkpoint was trained with (dropout may change), or start "
            "another run_dir"
        )


class RankFailed(ValueError):
    """Another rank stopped with an error of its own (a ValueError: the CLI says it in a line)."""


def prepare_on_ranks(
    cfg: TrainConfig,
    info: distributed.DistInfo,
    device: torch.device,
    run_dir: Path,
    fresh: bool,
) -> PreparedData:
    """The run's data on every rank: rank 0 trains SentencePiece first, the others then load
    what it wrote. A ``fresh`` run (no checkpoint to resume) first clears what an earlier start
    left there before its first checkpoint."""
    if info.is_main:
        try:
            if fresh:
                clear_unfinished_start(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            data = prepare(cfg, run_dir)
        except Exception:
            distributed.any_rank(True, info, device)  # the others wait for word, then stop too
            raise
    # A barrier that says how rank 0 fared: had it just exited, the others would wait in the
    # barrier until gloo failed them with a page of traceback about a closed connection.
    if distributed.any_rank(False, info, device):
        raise RankFailed("rank 0 could not prepare the data; rank 0's error says why")
    if not info.is_main:
        data = prepare(cfg, run_dir)
    return data


def clear_unfinished_start(run_dir: Path) -> None:
    """Remove the tokenizer and metrics of a start that never wrote a checkpoint: reused, the
    tokenizer would ignore this run's tokenizer config, and the metrics would repeat steps."""
    leftovers = [*run_dir.glob("spm*.model"), *run_dir.glob("spm*.vocab")]
    leftovers += [run_dir / "metrics.jsonl"]
    for path in leftovers:
        if path.is_file():
            log.info("removing %s, left by a start that wrote no checkpoint", path)
            path.unlink()


def epochs_done(batches: BatchIterator) -> int:
    return batches.epoch + int(batches.index >= len(batches.batches(batches.epoch)))


def stop_reason(
    state: TrainState, cfg: TrainConfig, batches: BatchIterator, signalled: bool
) -> str | None:
    loop = cfg.loop
    if signalled:
        return "signal"
    if loop.patience is not None and state.bad_validations >= loop.patience:
        return f"no BLEU gain in {loop.patience} validations"
    if loop.max_steps is not None and state.step >= loop.max_steps:
        return f"max_steps={loop.max_steps}"
    if loop.max_epochs is not None and epochs_done(batches) >= loop.max_epochs:
        return f"max_epochs={loop.max_epochs}"
    if loop.max_minutes is not None and state.elapsed >= 60 * loop.max_minutes:
        return f"max_minutes={loop.max_minutes}"
    return None


def train(
    cfg: TrainConfig,
    resume: bool = False,
    on_finish: Callable[[Seq2Seq, TrainState], None] | None = None,
) -> Path:
    """Train (or resume) the run in ``cfg.run_dir``; returns the run directory.

    Args:
        cfg: the run's configuration.
        resume: continue from the run's last checkpoint; without it a run directory that
            already has checkpoints is an error.
        on_finish: called on every rank with the trained model and the final state once the
            loop stops (tests use it to compare the parameters of DDP ranks).
    """
    # What can be checked before anything is written: the device, the run directory, the data.
    device = resolve_device(cfg.loop.device, "loop.device")
    check_run_dir(Path(cfg.run_dir))
    check_data_files(cfg.data)
    main_rank = os.environ.get("RANK", "0") == "0"  # torchrun's rank, before the group is joined
    with hold_run_dir(Path(cfg.run_dir)) if main_rank else contextlib.nullcontext():
        return train_held(cfg, resume, device, on_finish)


def train_held(
    cfg: TrainConfig,
    resume: bool,
    device: torch.device,
    on_finish: Callable[[Seq2Seq, TrainState], None] | None,
) -> Path:
    """``train``, once the run directory is held."""
    try:
        run = start_run(cfg, resume, device)
    except BaseException:
        # The group may be joined already: leaving it undone, gloo's teardown at exit could
        # abort the process (SIGABRT) instead of letting the error end it with its own line.
        distributed.leave()
        raise
    info, state = run.info, run.state
    wrapped: nn.Module = DistributedDataParallel(run.model) if info.enabled else run.model
    signals, metrics = StopSignal(), MetricsLog(run.run_dir, info.is_main)
    if run.resumed:
        metrics.forget_after(state.step)
    progress = tqdm(
        total=cfg.loop.max_steps, initial=state.step, disable=not info.is_main, unit="step"
    )
    # A resumed run that already reached a limit stops before taking another step.
    reason = stop_reason(state, cfg, run.batches, False) if run.resumed else None
    try:
        while reason is None:
            report_step(run, take_step(run, wrapped), progress, metrics)
            if state.step % cfg.loop.valid_every == 0:
                run_validation(run, metrics)
            signalled = distributed.any_rank(signals.requested, info, run.device)
            reason = stop_reason(state, cfg, run.batches, signalled)
            if state.step % cfg.loop.save_every == 0 or reason is not None:
                run.save(run.ckpt_dir / f"step_{state.step}.pt")
        log.info("stopped at step %d: %s", state.step, reason)
        if on_finish is not None:
            on_finish(run.model, state)
    finally:
        signals.restore()
        progress.close()
        distributed.leave()
    return run.run_dir


def take_step(run: Run, wrapped: nn.Module) -> tuple[StepStats, float]:
    """The next update's batches, trained on by ``wrapped``; the counters move on. Returns the
    step's figures and its seconds."""
    started = time.perf_counter()
    scheduled = [next(run.batches) for _ in range(run.cfg.optim.accumulate)]
    micro = [collate([run.data.train[i] for i in b.indices]).to(run.device) for b in scheduled]
    state = run.state
    stats = train_step(
        wrapped, micro, run.optimizer, run.schedule, state.step + 1, run.cfg, run.info, run.scaler
    )
    seconds = time.perf_counter() - started
    state.step, state.tokens, state.elapsed = (
        state.step + 1,
        state.tokens + stats.tokens,
        state.elapsed + seconds,
    )
    return stats, seconds


def report_step(
    run: Run, step: tuple[StepStats, float], progress: tqdm[Any], metrics: MetricsLog
) -> None:
    """The step's loss, perplexity, speed and learning rate on the progress bar, and every
    ``log_every`` steps in the log and metrics.jsonl."""
    stats, seconds = step
    values = {
        "loss": round(stats.loss, 4),
        "ppl": round(math.exp(min(stats.nll, 50)), 2),
        "tok_s": round(stats.tokens / seconds),
        "lr": stats.lr,
    }
    progress.update(1)
    progress.set_postfix(values, refresh=False)
    state = run.state
    if state.step % run.cfg.loop.log_every == 0 and run.info.is_main:
        log.info("step=%d %s", state.step, " ".join(f"{k}={v}" for k, v in values.items()))
        extra = {"epoch": run.batches.epoch, "elapsed": round(state.elapsed, 1)}
        metrics.write("train", state.step, {**values, **extra})


def run_validation(run: Run, metrics: MetricsLog) -> None:
    """Validate on rank 0, share the BLEU with every rank, keep the best and count the
    validations without a gain (``stop_reason`` stops early on them)."""
    info, state, device = run.info, run.state, run.device
    result = validate(run.model, run.data, run.cfg, device) if info.is_main else {"bleu": 0.0}
    bleu = distributed.sum_all(result["bleu"], info, device)  # every rank takes the same decisions
    run.schedule.on_validation(bleu)
    if bleu > state.best_bleu:
        state.best_bleu, state.best_step, state.bad_validations = bleu, state.step, 0
        if info.is_main:
            checkpoint.atomic_save(
                {
                    "model": run.model.state_dict(),
                    "model_config": run.model.config.to_dict(),
                    "state": asdict(state),
                    "valid": result,
                    "hardware": run.machine,
                },
                run.ckpt_dir / "best.pt",
            )
    else:
        state.bad_validations += 1
    if info.is_main:
        log.info("valid step=%d %s", state.step, " ".join(f"{k}={v}" for k, v in result.items()))
        metrics.write("valid", state.step, result)
