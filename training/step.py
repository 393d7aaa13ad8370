"""One optimizer update (``train_step``) and one validation pass (``validate``), over the same
label-smoothed loss.

Shapes: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from model import PAD_ID, DecodeOptions, Seq2Seq
from training import distributed
from training.batching import TensorBatch, collate, example_lengths, make_batches
from training.config import TrainConfig
from training.evaluate import score, translate_all, translator_for
from training.optim import LRSchedule
from training.prepare import PreparedData


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
            (scaler.scale(scaled) if scaler else scaled).backward()  # type: ignore[no-untyped-call]
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
