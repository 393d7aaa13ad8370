"""bench/gil.py end to end on the tiny bundle: both conditions and every phase are reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gil.py"


def test_gil_script_times_a_batch_alone_and_beside_a_busy_thread(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src.txt"
    src.write_text("ba be ki\nmo na pa\nku\nsa le de do\n", encoding="utf-8")
    args = ["--model", str(tiny_bundle), "--src", str(src), "--batches", "2", "--batch-size", "3"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--phases", "--switch-interval-ms", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    first, *phases = done.stdout.splitlines()
    assert "batch of 3, beam 1" in first and "switch interval 1 ms" in first
    assert "ms alone" in first and "beside a busy Python thread" in first
    labels = {line.split("  ")[1].strip() for line in phases}
    assert {"tokenize", "encoder", "decode (all below)"} <= labels
