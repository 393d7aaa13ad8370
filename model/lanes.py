"""Lanes: one batch cut into parts that are encoded and searched at once, a core each.

At the batch sizes a service forms (up to ~32 sentences) a search step's matrices are too small
for torch's intra-op threads to pay: a batch of 32 took about as long on two threads as on one
(bench/README.md, stop 20), so the second core idled while a batch computed. Cut into lanes,
the batch uses every core: the lanes are encoded (``LaneEncoder``), then searched
(``greedy_lanes`` and ``beam_lanes`` in ``model/compiled_search.py``), each stage one compiled
call that forks every lane but the first onto torch's inter-op threads, where TorchScript runs
them without the GIL, and runs the first on the calling thread. Greedy batches of 32 took 12-13
ms in two lanes against 15-16 on two intra-op threads; offline, 1.3x (greedy) and 1.7x (beam 5)
the sentences/s (bench/README.md, stop 25).

Lanes take sentences in turn from the length-sorted batch (sentence i goes to lane i mod L), so
every lane has about the same lengths and they end together. Each lane is a batch of its own:
its own padding and its own shortlist, so a sentence gets exactly what translating its lane
alone would give it (int8 activations are quantized per call, so a sentence's neighbours in a
batch can change its translation slightly, with lanes or without).

Each lane must get one intra-op thread (``torch.set_num_threads(1)``): GNU OpenMP keeps a team
of threads per calling thread, and lanes with two threads each on two cores ran 3-4x slower.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

T = TypeVar("T")


def split_lanes(items: Sequence[T], lanes: int) -> list[list[T]]:
    """Deal ``items`` into ``min(lanes, len(items))`` lanes: item i to lane i mod lanes."""
    count = max(1, min(lanes, len(items)))
    return [list(items[lane::count]) for lane in range(count)]


def merge_lanes(per_lane: Sequence[Sequence[T]]) -> list[T]:
    """Undo ``split_lanes``: the lanes' items back in the original order."""
    count = len(per_lane)
    total = sum(len(lane) for lane in per_lane)
    return [per_lane[i % count][i // count] for i in range(total)]


def compile_lane_encoder(encoder: nn.Module) -> nn.Module | None:
    """``LaneEncoder(encoder)`` compiled, or None (no lanes) where TorchScript cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(LaneEncoder(encoder))
    except Exception:  # noqa: BLE001 - one lane, the whole batch, computes the same
        log.warning("lanes not compiled; each batch runs as one", exc_info=True)
        return None


class LaneEncoder(nn.Module):
    """A compiled encoder run on each lane at once; compile this module with TorchScript.

    ``forward`` takes each lane's padded source ids (B_i, S_i) and lengths (B_i,) and returns
    each lane's (memory, final_h, final_c), as ``Encoder.forward`` does for one batch.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, sources: list[Tensor], lengths: list[Tensor]
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        futures: list[torch.jit.Future[tuple[Tensor, Tensor, Tensor]]] = []
        for i in range(1, len(sources)):
            futures.append(torch.jit.fork(self.encoder, sources[i], lengths[i]))  # type: ignore[no-untyped-call]
        encoded = [self.encoder(sources[0], lengths[0])]
        for future in futures:
            encoded.append(torch.jit.wait(future))  # type: ignore[no-untyped-call]
        return encoded
