"""Optimizer and learning-rate schedule from ``OptimConfig``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from training.config import OptimConfig


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    return kind(model.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


class LRSchedule:
    """Linear warmup, then constant, inverse-sqrt or cosine decay, times a plateau factor.

    One object handles both the per-step shape and reduce-on-plateau (torch's LambdaLR would
    overwrite a plateau decay on its next step), and its whole state is in ``state_dict``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int | None):
        if cfg.schedule == "warmup_cosine" and not total_steps:
            raise ValueError("optim.schedule warmup_cosine needs loop.max_steps")
        self.optimizer, self.cfg, self.total_steps = optimizer, cfg, total_steps
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.bad = 0

    def factor(self, step: int) -> float:
        cfg, step = self.cfg, max(step, 1)
        warmup = max(cfg.warmup_steps, 0)
        if warmup and step < warmup:
            return step / warmup
        if cfg.schedule == "warmup_inverse_sqrt":
            return math.sqrt(max(warmup, 1) / step)
        if cfg.schedule == "warmup_cosine":
            assert self.total_steps
            progress = min(1.0, (step - warmup) / max(self.total_steps - warmup, 1))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def lr(self, step: int) -> float:
        return max(self.cfg.min_lr, self.cfg.lr * self.factor(step) * self.plateau_scale)

    def step(self, step: int) -> float:
        """Set the learning rate for optimizer step ``step`` (1-based) and return it."""
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def on_validation(self, metric: float) -> None:
        """Reduce-on-plateau: decay after ``plateau_patience`` validations without a gain."""
        if self.cfg.schedule != "plateau":
            return
        if self.best is None or metric > self.best:
            self.best, self.bad = metric, 0
            return
        self.bad += 1
        if self.bad > self.cfg.plateau_patience:
            self.plateau_scale *= self.cfg.plateau_factor
            self.bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale, self.best, self.bad = (
            state["plateau_scale"],
            state["best"],
            state["bad"],
        )
