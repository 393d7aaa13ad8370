"""The service's HTTP side alone: the real app, with a translator that echoes at once.

    python bench/echo_server.py &
    python bench/load.py --sentences ../shared/data/multi30k/test_2016_flickr.en.gz \\
        --url http://127.0.0.1:8000 --pid $! --clients 32 --duration 15

With no model to wait for, the server's one event loop is the bottleneck, so its requests/s is
the inverse of its CPU per request: uvicorn, the app's middleware, validation, splitting, the
batcher and the JSON. Under a closed loop of clients that time is spent while the model waits
(bench/README.md, stop 26, compares code versions with it). The translator is the test suite's
`FakeTranslator` (tests/service/service_fakes.py); NMT_* settings apply as for
`python -m service`, except NMT_MODELS.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import deque
from pathlib import Path

from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "service")]

from service_fakes import FakeTranslator  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402


def echo_app(settings: Settings) -> FastAPI:
    """``create_app(settings)`` serving one echo model (``fake-en-de``)."""
    echo = FakeTranslator()
    # The fake records every batch for the tests' asserts; a benchmark keeps the last few
    # rather than growing by 45 MiB a minute.
    echo.batches = deque(maxlen=64)  # type: ignore[assignment]
    echo.source_ids = deque(maxlen=64)  # type: ignore[assignment]
    return create_app(settings.model_copy(update={"models": [Path("/echo")]}), lambda *_: echo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    import uvicorn

    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        echo_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level=settings.log_level,
        access_log=False,  # the app writes its own (service/metrics.py)
    )


if __name__ == "__main__":
    main()
