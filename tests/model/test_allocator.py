"""model.allocator: freed tensor memory is reused without page faults, and users can opt out."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

from model.allocator import keep_freed_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc" not in str(ctypes.util.find_library("c")),
    reason="mallopt is glibc's",
)

# A decoding-like loop: output-layer logits for batches of several sizes, made and freed.
# Prints whether the tuning applied and the page faults of the repeats after the first.
FAULTS_OF_REUSE = """
import resource, sys, torch
from model.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
hidden, weight = torch.randn(512, 256), torch.randn(256, 8000)
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for rows in (64, 200, 512):
        (hidden[:rows].repeat(4, 1) @ weight).log_softmax(-1)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[1:]))
"""


def reuse_faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("NMT_KEEP_FREED_MEMORY", None)
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_OF_REUSE, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_freed_memory_is_reused_without_page_faults() -> None:
    applied, tuned = reuse_faults("tuned")
    _, default = reuse_faults("default")
    assert applied
    largest_logits_pages = 4 * 512 * 8000 * 4 // 4096  # 16 MB, above glibc's mmap threshold
    assert default >= 3 * largest_logits_pages  # by default each repeat faults it in anew
    assert tuned < largest_logits_pages // 4


@pytest.mark.parametrize("name, value", [("MALLOC_ARENA_MAX", "2"), ("NMT_KEEP_FREED_MEMORY", "0")])
def test_users_own_settings_win(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert keep_freed_memory() is False
