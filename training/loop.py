"""The training run: ``train(cfg)`` orchestrates; ``train_step`` and ``validate`` do one thing each.

Shapes: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model import PAD_ID, DecodeOptions, Seq2Seq
from model.placement import resolve_device
from training import checkpoint, distributed, hardware
from training.batching import BatchIterator, TensorBatch, collate, example_lengths, make_batches
from training.config import TrainConfig, config_to_dict, save_resolved
from training.evaluate import score, translate_all, translator_for
from training.monitor import MetricsLog, StopSignal
from training.optim import LRSchedule, build_optimizer
from training.prepare import PreparedData, prepare

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


@dataclass(frozen=True)
class StepStats:
    loss: float  # per target token (label-smoothed)
    nll: float  # per target token, without smoothing: exp(nll) is the perplexity
    tokens: int
    lr: float


def autocast(device: torch.device, amp: str) -> Any:
    """bf16/fp16 autocast on CUDA; CPU LSTMs have no reduced-precision training path here."""
    if amp == "none" or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def losses(
    model: nn.Module, batch: TensorBatch, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed label-smoothed loss and summed NLL over the batch's target tokens."""
    logits = model(batch.src_ids, batch.src_lens, batch.tgt_in).float()  # (B, T, V)
    flat, gold = logits.view(-1, logits.size(-1)), batch.tgt_out.view(-1)  # (B*T, V), (B*T,)
    loss = F.cross_entropy(
        flat, gold, ignore_index=PAD_ID, label_smoothing=label_smoothing, reduction="sum"
    )
    nll = F.cross_entropy(flat.detach(), gold, ignore_index=PAD_ID, reduction="sum")
    return loss, nll


def train_step(
    model: nn.Module,
    micro_batches: list[TensorBatch],
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    step: int,
    cfg: TrainConfig,
    info: distributed.DistInfo,
    scaler: torch.amp.GradScaler | None = None,
) -> StepStats:
    """One optimizer update over ``micro_batches`` (gradient accumulation) on every rank.

    The loss is divided by the target tokens of the whole update, summed over ranks, so K ranks
    with one micro-batch each match one process accumulating the same K batches.
    """
    device = micro_batches[0].src_ids.device
    local_tokens = sum(b.num_tgt_tokens for b in micro_batches)
    total_tokens = distributed.sum_all(local_tokens, info, device)
    model.train()
    lr = schedule.step(step)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = nll_sum = 0.0
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = (
            model.no_sync()
            if isinstance(model, DistributedDataParallel) and not last
            else nullcontext()
        )
        with sync:
            with autocast(device, cfg.loop.amp):
                loss, nll = losses(model, batch, cfg.optim.label_smoothing)
            scaled = loss * (info.world_size / total_tokens)  # DDP averages over ranks
            (scaler.scale(scaled) if scaler else scaled).backward()
        loss_sum, nll_sum = loss_sum + float(loss.detach()), nll_sum + float(nll)
    if scaler:
        scaler.unscale_(optimizer)
    if cfg.optim.clip_norm:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    loss_total, nll_total = distributed.sum_each([loss_sum, nll_sum], info, device)
    return StepStats(loss_total / total_tokens, nll_total / total_tokens, int(total_tokens), lr)


@torch.no_grad()
def validate(
    model: Seq2Seq, data: PreparedData, cfg: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """Validation loss/perplexity, and BLEU/chrF of decoded, detokenized output."""
    model.eval()
    loss_sum = nll_sum = tokens = 0.0
    for indices in make_batches(
        example_lengths(data.valid), cfg.loop.batch_tokens, cfg.loop.bucket_width
    ):
        batch = collate([data.valid[i] for i in indices]).to(device)
        loss, nll = losses(model, batch, cfg.optim.label_smoothing)
        loss_sum, nll_sum, tokens = (
            loss_sum + float(loss),
            nll_sum + float(nll),
            tokens + batch.num_tgt_tokens,
        )
    pairs = data.valid_pairs[: cfg.eval.max_valid_sentences]
    options = DecodeOptions(beam_size=cfg.eval.beam_size, length_penalty=cfg.eval.length_penalty)
    with torch.random.fork_rng(devices=[]):  # building the copy must not move the training RNG
        translator = translator_for(
            model, data.tokenizer, batch_tokens=8192, max_input_tokens=10_000
        )
    hyps = translate_all(translator, [s for s, _ in pairs], options)
    scores = score(hyps, [t for _, t in pairs])
    return {
        "loss": loss_sum / tokens,
        "ppl": math.exp(min(nll_sum / tokens, 50)),
        **scores.as_dict(),
        "beam_size": cfg.eval.beam_size,
        "sentences": len(pairs),
    }


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

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``: weights, optimizer, schedule, batch
        position, loss scale, every RNG and the counters."""
        saved = checkpoint.load(path)
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


def start_run(cfg: TrainConfig, resume: bool) -> Run:
    """Join the process group, prepare the data and build the model, optimizer, schedule and
    batches, restored from the run's last checkpoint when ``resume``."""
    device = resolve_device(cfg.loop.device, "loop.device")
    info = distributed.init(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    run_dir = Path(cfg.run_dir)
    resume_from = checkpoint.latest(run_dir / "checkpoints")
    if resume_from is not None and not resume:
        raise ValueError(
            f"{run_dir} already has checkpoints: pass --resume, or choose another run_dir"
        )
    data = prepare_on_ranks(cfg, info, run_dir)
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
        run.restore(resume_from)
    return run


def prepare_on_ranks(cfg: TrainConfig, info: distributed.DistInfo, run_dir: Path) -> PreparedData:
    """The run's data on every rank: rank 0 writes the resolved config and trains SentencePiece
    first, the others then load what it wrote."""
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, run_dir / "config.yaml")
        data = prepare(cfg, run_dir)
    distributed.barrier(info)
    if not info.is_main:
        data = prepare(cfg, run_dir)
    return data


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
    run = start_run(cfg, resume)
    info, state = run.info, run.state
    wrapped: nn.Module = DistributedDataParallel(run.model) if info.enabled else run.model
    signals, metrics = StopSignal(), MetricsLog(run.run_dir, info.is_main)
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
        distributed.shutdown(info)
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
