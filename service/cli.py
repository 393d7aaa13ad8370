"""`nmt serve`: run the translation service (added to `nmt` via the lstm_nmt.commands group).

One uvicorn worker, on purpose. Each worker process would load its own copy of every model
(memory times N) and batch only the requests that happen to reach it, so batches would be
smaller and throughput lower than one process batching everything. Scale out with one process
per device (or per machine) behind a load balancer instead. NMT_MODEL_WORKERS is not that: its
model processes share this process's one queue (service/model_workers.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.settings import Settings


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `serve`. Flags left out fall back to NMT_* environment variables, then defaults."""
    p = subparsers.add_parser(
        "serve",
        help="serve models over HTTP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        type=Path,
        metavar="DIR",
        help="bundle directory; repeat for several models (NMT_MODELS)",
    )
    p.add_argument("--host", help="bind address (NMT_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (NMT_PORT, default 8000)")
    p.add_argument("--threads", type=int, help="CPU cores for the model (NMT_THREADS)")
    p.add_argument("--lanes", type=int, help="parts each batch is computed in at once (NMT_LANES)")
    p.add_argument(
        "--model-workers",
        type=int,
        metavar="N",
        help="run the model in N processes behind the one queue (NMT_MODEL_WORKERS, default 0)",
    )
    p.add_argument(
        "--quantize", choices=["auto", "none", "int8"], help="auto: int8 on CPU (NMT_QUANTIZE)"
    )
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="(NMT_DEVICE)")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Handler for `nmt serve`: flags override the environment."""
    from service.settings import Settings

    names = (
        "models",
        "host",
        "port",
        "threads",
        "lanes",
        "model_workers",
        "quantize",
        "device",
        "log_level",
    )
    overrides = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    serve(Settings.load(**overrides))
    return 0


def serve(settings: Settings) -> None:
    """Run the app for `settings` with uvicorn, in one worker."""
    import uvicorn

    from model.bundle import read_model_id, verify_manifest
    from model.placement import resolve_device
    from service.app import create_app

    # A wrong path or device fails here in one line, not as a traceback mid-startup.
    resolve_device(settings.device, "--device / NMT_DEVICE")
    ids = []
    for path in settings.models:
        verify_manifest(path)
        ids.append(read_model_id(path))
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:  # found only after loading them all, otherwise
        raise ValueError(f"NMT_MODELS has the model id {repeated[0]!r} twice; ids must be unique")
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,  # see the module docstring
        log_level=settings.log_level,
        access_log=False,  # the app writes its own (service/metrics.py)
        # a request in flight may take the timeout to send its body, then again to translate
        timeout_graceful_shutdown=int(2 * settings.request_timeout_s) + 5,
    )
