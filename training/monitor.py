"""What a training run reports and what it listens for: ``MetricsLog`` writes each step's and
each validation's figures, ``StopSignal`` turns SIGTERM/SIGINT into a checkpoint and a clean stop.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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

    def forget_after(self, step: int) -> None:
        """Drop the lines of steps after ``step``, the checkpoint a run resumes from: the
        resumed run takes those steps again and writes them again."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _step_of(line) <= step]
        if len(kept) < len(lines):
            self.path.write_text("".join(kept), encoding="utf-8")

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"type": kind, "step": step, **values}) + "\n")
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"{kind}/{key}", value, step)


def _step_of(line: str) -> int:
    """A metrics line's step; a line cut short by a kill counts as after every step."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 2**62
