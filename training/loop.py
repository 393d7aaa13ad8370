"""The training run: ``train(cfg)`` orchestrates; ``train_step`` and ``validate`` do one thing each.

Shapes: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import json
import logging
import math
import signal
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
from training import checkpoint, distributed, hardware
from training.batching import BatchIterator, TensorBatch, collate, example_lengths, make_batches
from training.config import TrainConfig, config_to_dict, save_resolved
from training.evaluate import score, translate_all, translator_for
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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


class StopSignal:
    """SIGTERM/SIGINT ask the loop to save a checkpoint and stop after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {
            s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)
        }

    def _handle(self, signum: int, _frame: Any) -> None:
        log.warning("received %s: saving a checkpoint and stopping", signal.Signals(signum).name)
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricsLog:
    """One JSON object per line in ``metrics.jsonl`` (and TensorBoard scalars when installed)."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                pass

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"type": kind, "step": step, **values}) + "\n")
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"{kind}/{key}", value, step)


def save_checkpoint(
    path: Path,
    model: Seq2Seq,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    state: TrainState,
    batches: BatchIterator,
    cfg: TrainConfig,
    machine: dict[str, Any],
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    checkpoint.atomic_save(
        {
            "model": model.state_dict(),
            "model_config": model.config.to_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "state": asdict(state),
            "batches": batches.state_dict(),
            "rng": checkpoint.rng_state(),
            "train_config": config_to_dict(cfg),
            "hardware": machine,
            # fp16's loss scale: a resumed run must not restart from 65536 and skip steps
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        path,
    )


def restore(
    path: Path,
    model: Seq2Seq,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    batches: BatchIterator,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainState:
    saved = checkpoint.load(path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    batches.load_state_dict(saved["batches"])
    if scaler is not None and saved.get("scaler"):  # absent from runs that were not fp16
        scaler.load_state_dict(saved["scaler"])
    checkpoint.set_rng_state(saved["rng"])
    state = TrainState(**saved["state"])
    log.info("resumed from %s at step %d", path, state.step)
    return state


def epochs_done(batches: BatchIterator) -> int:
    return batches.epoch + int(batches.index >= len(batches.batches(batches.epoch)))


def stop_reason(
    state: TrainState, cfg: TrainConfig, batches: BatchIterator, early_stop: bool, signalled: bool
) -> str | None:
    loop = cfg.loop
    if signalled:
        return "signal"
    if early_stop:
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
    device = resolve_device(cfg.loop.device)
    info = distributed.init(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    run_dir, ckpt_dir = Path(cfg.run_dir), Path(cfg.run_dir) / "checkpoints"
    resume_from = checkpoint.latest(ckpt_dir)
    if resume_from is not None and not resume:
        raise ValueError(
            f"{run_dir} already has checkpoints: pass --resume, or choose another run_dir"
        )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(cfg, run_dir / "config.yaml")
        data = prepare(cfg, run_dir)  # rank 0 trains SentencePiece; the others then load it
    distributed.barrier(info)
    if not info.is_main:
        data = prepare(cfg, run_dir)
    torch.manual_seed(cfg.seed)
    vocab = (data.tokenizer.src_vocab_size, data.tokenizer.tgt_vocab_size)
    model = Seq2Seq(cfg.model.to_model_config(*vocab)).to(device)
    log.info(
        "model: %.2fM parameters, %s",
        sum(p.numel() for p in model.parameters()) / 1e6,
        model.config,
    )
    optimizer = build_optimizer(model, cfg.optim)
    schedule = LRSchedule(optimizer, cfg.optim, cfg.loop.max_steps)
    batches = BatchIterator(
        example_lengths(data.train),
        cfg.loop.batch_tokens,
        cfg.loop.bucket_width,
        cfg.seed,
        info.rank,
        info.world_size,
        accumulate=cfg.optim.accumulate,
    )
    scaler = (
        torch.amp.GradScaler("cuda") if cfg.loop.amp == "fp16" and device.type == "cuda" else None
    )
    state = (
        restore(resume_from, model, optimizer, schedule, batches, scaler)
        if resume_from
        else TrainState()
    )
    wrapped: nn.Module = DistributedDataParallel(model) if info.enabled else model
    signals, metrics = StopSignal(), MetricsLog(run_dir, info.is_main)
    progress = tqdm(
        total=cfg.loop.max_steps, initial=state.step, disable=not info.is_main, unit="step"
    )

    machine = hardware.describe(device, info.world_size)

    def save(path: Path) -> None:
        if info.is_main:
            save_checkpoint(path, model, optimizer, schedule, state, batches, cfg, machine, scaler)
            checkpoint.prune(ckpt_dir, cfg.loop.keep_last)

    # A resumed run that already reached a limit stops before taking another step.
    patience = cfg.loop.patience
    early_stopped = patience is not None and state.bad_validations >= patience
    reason = stop_reason(state, cfg, batches, early_stopped, False) if resume_from else None
    try:
        while reason is None:
            started = time.perf_counter()
            scheduled = [next(batches) for _ in range(cfg.optim.accumulate)]
            micro = [collate([data.train[i] for i in b.indices]).to(device) for b in scheduled]
            stats = train_step(
                wrapped, micro, optimizer, schedule, state.step + 1, cfg, info, scaler
            )
            seconds = time.perf_counter() - started
            state.step, state.tokens, state.elapsed = (
                state.step + 1,
                state.tokens + stats.tokens,
                state.elapsed + seconds,
            )
            train_values = {
                "loss": round(stats.loss, 4),
                "ppl": round(math.exp(min(stats.nll, 50)), 2),
                "tok_s": round(stats.tokens / seconds),
                "lr": stats.lr,
            }
            progress.update(1)
            progress.set_postfix(train_values, refresh=False)
            if state.step % cfg.loop.log_every == 0 and info.is_main:
                log.info(
                    "step=%d %s", state.step, " ".join(f"{k}={v}" for k, v in train_values.items())
                )
                metrics.write(
                    "train",
                    state.step,
                    {**train_values, "epoch": batches.epoch, "elapsed": round(state.elapsed, 1)},
                )
            early_stop = False
            if state.step % cfg.loop.valid_every == 0:
                early_stop = run_validation(
                    model, data, cfg, device, state, schedule, metrics, info, ckpt_dir
                )
            reason = stop_reason(
                state,
                cfg,
                batches,
                early_stop,
                distributed.any_rank(signals.requested, info, device),
            )
            if state.step % cfg.loop.save_every == 0 or reason is not None:
                save(ckpt_dir / f"step_{state.step}.pt")
        log.info("stopped at step %d: %s", state.step, reason)
        if on_finish is not None:
            on_finish(model, state)
    finally:
        signals.restore()
        progress.close()
        distributed.shutdown(info)
    return run_dir


def run_validation(
    model: Seq2Seq,
    data: PreparedData,
    cfg: TrainConfig,
    device: torch.device,
    state: TrainState,
    schedule: LRSchedule,
    metrics: MetricsLog,
    info: distributed.DistInfo,
    ckpt_dir: Path,
) -> bool:
    """Validate on rank 0, share the BLEU with every rank, keep the best; True = stop early."""
    result = validate(model, data, cfg, device) if info.is_main else {"bleu": 0.0}
    bleu = distributed.sum_all(result["bleu"], info, device)  # every rank takes the same decisions
    schedule.on_validation(bleu)
    if bleu > state.best_bleu:
        state.best_bleu, state.best_step, state.bad_validations = bleu, state.step, 0
        if info.is_main:
            checkpoint.atomic_save(
                {
                    "model": model.state_dict(),
                    "model_config": model.config.to_dict(),
                    "state": asdict(state),
                    "valid": result,
                    "hardware": hardware.describe(device, info.world_size),
                },
                ckpt_dir / "best.pt",
            )
    else:
        state.bad_validations += 1
    if info.is_main:
        log.info("valid step=%d %s", state.step, " ".join(f"{k}={v}" for k, v in result.items()))
        metrics.write("valid", state.step, result)
    return cfg.loop.patience is not None and state.bad_validations >= cfg.loop.patience
