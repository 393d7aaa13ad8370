"""Where the model runs: in the server process, or in worker processes fed by one batcher.

Why worker processes: the HTTP side (uvicorn, FastAPI, JSON, the scheduler) and the search
loop are both Python. In one process they take turns on the GIL, and a batch waits while the
event loop answers the clients of the previous one. With the model in its own processes the
server process only does HTTP, and with two of them one batch computes while the next one
forms, like Triton's instance groups (several copies of a model on one device behind one
scheduler). Each copy holds its own weights, so memory grows with the count; the figures are in
bench/README.md.

A worker loads the bundle itself (the spawn start method: forking a process that has started
torch's thread pools is unsafe), translates one warm-up sentence, says it is ready, then answers
``(texts, options, source_ids)`` with ``list[Result]`` over a pipe until it gets ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from model import DecodeOptions, DeviceError, Result
from service.batching import TranslateFn
from service.gc_tuning import tune_garbage_collector
from service.registry import ModelDescription, TranslatorLike
from service.settings import Settings

logger = logging.getLogger(__name__)

# Two sentences, so that a model with lanes runs them too before the service is ready.
WARM_UP_TEXTS = ("A man is riding a bicycle.", "Two dogs play in the snow.")


def load_translator(path: Path, settings: Settings) -> TranslatorLike:
    """`model.load_on_cores` with device, threads, lanes and quantization from `settings`: a
    model with lanes (int8 on the CPU) computes a batch in NMT_THREADS lanes, one thread each,
    which served 1.4x the requests/s of NMT_THREADS intra-op threads (bench/README.md)."""
    from model import load_on_cores  # heavy: only when a model is really loaded

    return load_on_cores(
        path,
        cores=settings.threads,
        lanes=settings.lanes,
        device=settings.device,  # the model resolves "auto" and fails clearly without CUDA
        quantize=settings.quantize,
        batch_tokens=settings.max_batch_tokens,
        max_input_tokens=settings.max_input_tokens,
    )


def describe_model(path: Path, settings: Settings) -> ModelDescription:
    """The bundle as the workers will run it, without building its network here."""
    from model import ModelView

    return ModelView.from_dir(path, device=settings.device, quantize=settings.quantize)


def inference_runner(translator: TranslatorLike) -> TranslateFn:
    """`translator.translate` under torch.inference_mode(), for a worker thread."""

    def run(
        texts: list[str], options: DecodeOptions, source_ids: list[list[int]] | None = None, /
    ) -> Sequence[Result]:
        import torch  # already imported by the model; the lookup is cheap

        with torch.inference_mode():
            return translator.translate(texts, options, source_ids)

    return run


def warm_up(run: TranslateFn, options: DecodeOptions, path: Path) -> None:
    """Translate the warm-up sentences before serving; raise RuntimeError if one fails."""
    for result in run(list(WARM_UP_TEXTS), options):
        if result.error is not None:
            raise RuntimeError(f"warm-up translation failed for {path}: {result.error}")


def threads_per_worker(settings: Settings) -> int:
    """NMT_THREADS (default: `model.placement.allowed_cores`) shared out among the workers,
    at least one each."""
    from model.placement import allowed_cores

    total = settings.threads or allowed_cores()
    return max(1, total // max(1, settings.model_workers))


class WorkerPool:
    """`settings.model_workers` processes serving the bundle at `path`; `translate` is blocking
    and thread-safe: each call takes a free worker, so up to that many batches run at once.

    Raises (from the constructor) RuntimeError when a worker cannot load the model or warm up.
    """

    def __init__(self, path: Path, settings: Settings, defaults: DecodeOptions) -> None:
        context = multiprocessing.get_context("spawn")
        worker_settings = settings.model_copy(update={"threads": threads_per_worker(settings)})
        self._processes: list[Any] = []
        self._free: queue.Queue[tuple[int, Connection]] = queue.Queue()
        self._dead: set[int] = set()
        connections = []
        for index in range(settings.model_workers):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(theirs, path, worker_settings, defaults),
                name=f"nmt-model-worker-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._processes.append(process)
            connections.append(ours)
        try:
            for index, connection in enumerate(connections):  # they load in parallel
                try:
                    kind, detail = connection.recv()
                except EOFError:
                    kind, detail = "failed", "exited while loading; see the server log"
                if kind != "ready":
                    raise RuntimeError(f"model worker {index} failed to start: {detail}")
                self._free.put((index, connection))
        except BaseException:
            self.close(timeout_s=0)  # the others may still be loading: stop them now
            raise

    def translate(
        self, texts: list[str], options: DecodeOptions, source_ids: list[list[int]] | None = None, /
    ) -> list[Result]:
        index, connection = self._take_free_worker()
        try:
            connection.send((texts, options, source_ids))
            kind, detail = connection.recv()
        except (EOFError, OSError):
            self._dead.add(index)  # it does not go back to the free list
            process = self._processes[index]
            process.join(1.0)
            raise DeviceError(
                f"model worker {index} exited (exit code {process.exitcode}); see the server log"
            ) from None
        self._free.put((index, connection))
        if kind == "error":
            raise detail
        results: list[Result] = detail
        return results

    def _take_free_worker(self) -> tuple[int, Connection]:
        while len(self._dead) < len(self._processes):
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                continue
        raise DeviceError("every model worker has exited; see the server log")

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the idle workers to exit, then end whatever is left."""
        while True:
            try:
                _, connection = self._free.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(OSError):
                connection.send(None)
        for process in self._processes:
            process.join(timeout_s)
            if process.is_alive():
                logger.warning("model worker %s did not stop; terminating it", process.name)
                process.terminate()
                process.join(1.0)


def _serve(connection: Connection, path: Path, settings: Settings, options: DecodeOptions) -> None:
    """A worker process: load, warm up, then translate batches until told to stop.

    Ctrl+C reaches the whole process group; the server drains its queue through the workers
    before it stops them, so they ignore SIGINT. If the server dies, the pipe closes: exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level.upper())
    try:
        run = inference_runner(load_translator(path, settings))
        warm_up(run, options, path)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which fails start-up
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    tune_garbage_collector()  # as the server does once loaded
    connection.send(("ready", None))
    with contextlib.suppress(EOFError):
        _answer_until_stopped(connection, run)


def _answer_until_stopped(connection: Connection, run: TranslateFn) -> None:
    while (request := connection.recv()) is not None:
        try:
            answer: tuple[str, Any] = ("ok", run(*request))
        except Exception as exc:  # noqa: BLE001 - the server fails exactly this batch
            answer = ("error", exc)
        try:
            connection.send(answer)
        except Exception as exc:  # noqa: BLE001 - e.g. an exception that does not pickle
            connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
