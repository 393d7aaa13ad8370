"""Lanes: one batch cut into parts that are encoded and searched at once, a core each.

At the batch sizes a service forms (up to ~32 sentences) a search step's matrices are too small
for torch's intra-op threads to pay: a batch of 32 took about as long on two threads as on one
(bench/README.md, stop 20), so the second core idled while a batch computed. Cut into lanes,
the batch uses every core: the lanes are encoded, with their attention keys and shortlist rows
(``LaneEncoder``), then searched (``LaneLoops`` in ``model/search_loops.py``), each stage one
compiled call that forks every lane but the first onto torch's inter-op threads, where
TorchScript runs them without the GIL, and runs the first on the calling thread. Greedy
batches of 32 took 12-13 ms in two lanes against 15-16 on two intra-op threads; offline, 1.3x
(greedy) and 1.7x (beam 5) the sentences/s (bench/README.md, stop 25).

Lanes take sentences in turn from the length-sorted batch (sentence i goes to lane i mod L), so
every lane has about the same lengths and they end together. Each lane is a batch of its own:
its own padding and its own shortlist, so a sentence gets exactly what translating its lane
alone would give it (int8 activations are quantized per call, so a sentence's neighbours in a
batch can change its translation slightly, with lanes or without).

Each lane must get one intra-op thread (``torch.set_num_threads(1)``): GNU OpenMP keeps a team
of threads per calling thread, and lanes with two threads each on two cores ran 3-4x slower.

Python only ever gets tensors made for it (``handed``), from a second call (``take``). A
compiled call that waits for a forked lane finishes on an inter-op thread, and that thread
lets go of the call's results some time after the caller has them back. Were one of them a
Python object by then, torch would take the GIL to release it; once the interpreter is
shutting down, that ends the thread inside a destructor and aborts the process ("terminate
called without an active exception": 1 run in 10 of a script that translates and exits at
once, on two busy cores; ``nmt translate | head -1`` once in CI). So the call keeps its results
and returns nothing, and ``take``, which waits for nothing and so runs on the calling thread,
returns new tensor objects on the same data (bench/README.md, stop 35). A lock keeps each call
and its ``take`` together where threads share a translator.
"""

import logging
import warnings
from collections.abc import Sequence
from typing import NamedTuple, Optional, TypeVar

import torch
from torch import Tensor, nn

from model.shortlist import int8_rows
from model.step_kernels import PackedLinear

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


class LaneSource(NamedTuple):
    """What a lane's search reads of its source (``EncoderOutput`` less the mask)."""

    memory: Tensor  # (B, S, H)
    keys: Tensor  # (B, S, A) attention keys
    final_h: Tensor  # (B, H)
    final_c: Tensor  # (B, H)
    # the lane's shortlist rows (``int8_rows``), None without a shortlist; ``Optional``, as
    # below, because torch's class of prepacked weights does not support ``| None``
    output: Optional[PackedLinear]  # noqa: UP045


LaneFields = tuple[Tensor, Tensor, Tensor, Tensor, Optional[PackedLinear]]  # noqa: UP045


def handed(x: Tensor) -> Tensor:
    """A new tensor object on ``x``'s data, for Python (module docstring)."""
    return x.detach()


def compile_lane_encoder(
    encoder: nn.Module,
    key_proj: Optional[PackedLinear],  # noqa: UP045
    output: tuple[Tensor, Tensor | None] | None,
) -> torch.jit.ScriptModule | None:
    """``LaneEncoder(encoder, key_proj, output)`` compiled, or None (no lanes) where
    TorchScript cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(LaneEncoder(encoder, key_proj, output))
    except Exception:  # noqa: BLE001 - one lane, the whole batch, computes the same
        log.warning("lanes not compiled; each batch runs as one", exc_info=True)
        return None


class LaneEncoder(nn.Module):
    """Each lane's encoder outputs, attention keys and shortlist rows, all lanes at once;
    compile this module with TorchScript. A call keeps its results; ``take`` hands them to
    Python (module docstring).

    Args:
        encoder: the compiled encoder (``Encoder.forward``).
        key_proj: the attention's int8 key projection; None: the keys are the memory (``dot``).
        output: the int8 output layer's (weight, bias) from ``OutputLayer``; None: no shortlist.
    """

    found: list[LaneFields]

    def __init__(
        self,
        encoder: nn.Module,
        key_proj: Optional[PackedLinear],  # noqa: UP045
        output: tuple[Tensor, Tensor | None] | None,
    ) -> None:
        super().__init__()
        self.found = []
        self.encoder = encoder
        self.key_proj = key_proj
        self.output_weight: Tensor | None = None if output is None else output[0]
        self.output_bias: Tensor | None = None if output is None else output[1]

    def lane(self, source: Tensor, lengths: Tensor, shortlist: Tensor | None) -> LaneSource:
        """One lane: (B, S) padded ids, (B,) lengths and its shortlist's union of target ids."""
        memory, final_h, final_c = self.encoder(source, lengths)
        keys = memory
        key_proj = self.key_proj
        if key_proj is not None:  # as torch.ao's dynamic Linear calls it on x86 CPUs
            keys = torch.ops.quantized.linear_dynamic(memory, key_proj, True)
        rows: PackedLinear | None = None
        weight = self.output_weight
        if shortlist is not None and weight is not None:
            rows = int8_rows(weight, self.output_bias, shortlist)
        return LaneSource(memory, keys, final_h, final_c, rows)

    def forward(
        self, sources: list[Tensor], lengths: list[Tensor], shortlists: list[Tensor | None]
    ) -> None:
        futures: list[torch.jit.Future[LaneSource]] = []
        for i in range(1, len(sources)):
            futures.append(torch.jit.fork(self.lane, sources[i], lengths[i], shortlists[i]))  # type: ignore[no-untyped-call]
        encoded = [self.lane(sources[0], lengths[0], shortlists[0])]
        for future in futures:
            encoded.append(torch.jit.wait(future))  # type: ignore[no-untyped-call]
        self.found = [(s.memory, s.keys, s.final_h, s.final_c, s.output) for s in encoded]

    @torch.jit.export
    def take(self) -> list[LaneFields]:
        """Each lane's ``LaneSource`` from the last call, as a plain tuple of tensors of
        Python's own (``LaneSource(*fields)`` rebuilds it): TorchScript makes a new namedtuple
        class for each NamedTuple it hands back to Python, about 90 us apiece."""
        taken = [
            (handed(memory), handed(keys), handed(final_h), handed(final_c), output)
            for memory, keys, final_h, final_c, output in self.found
        ]
        self.found = taken[:0]  # empty, of the attribute's type
        return taken
