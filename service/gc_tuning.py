"""The cyclic garbage collector's settings for a long-running server process."""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 10_000  # Python's default: 700


def tune_garbage_collector() -> None:
    """Keep the cyclic GC off what start-up loaded, and run it less often (bench/README.md).

    What is loaded by now (torch, the model, the app: ~200,000 objects) lives as long as the
    process. Frozen, it is no longer walked by every full collection, each of which stalled the
    whole process, GIL held, for up to 100+ ms under load. A request allocates a few hundred
    objects, nearly all freed by reference counting, yet with the youngest generation's
    default threshold of 700 they set off a young collection every dozen requests or so;
    10,000 makes those about 14 times rarer.
    """
    gc.freeze()
    gc.set_threshold(YOUNGEST_THRESHOLD)
