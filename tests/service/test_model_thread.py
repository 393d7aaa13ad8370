"""Every in-process model is loaded, warmed up and run on one and the same thread.

Two threads running torch's OpenMP kernels in one process make GNU OpenMP stop spinning between
parallel regions, and batches then take 2-2.5x as long (service/model_thread.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from service_fakes import DEFAULT_OPTIONS, FakeTranslator, make_settings, serving

from model import DecodeOptions, Result
from service.app import create_app
from service.settings import Settings


class ThreadRecorder(FakeTranslator):
    """A FakeTranslator that notes the thread of every call into it."""

    def __init__(self, model_id: str, threads: list[int]) -> None:
        super().__init__(model_id=model_id)
        self.threads = threads

    def translate(
        self,
        texts: Sequence[str],
        options: DecodeOptions = DEFAULT_OPTIONS,
        source_ids: Sequence[list[int]] | None = None,
    ) -> list[Result]:
        self.threads.append(threading.get_ident())
        return super().translate(texts, options, source_ids)


def test_loading_warm_up_and_every_batch_of_every_model_share_one_thread() -> None:
    threads: list[int] = []
    fakes = {name: ThreadRecorder(name, threads) for name in ("en-de", "de-en")}

    def load(path: Path, _: Settings) -> FakeTranslator:
        threads.append(threading.get_ident())
        return fakes[path.name]

    # Batching off and the event loop kept busy: calls close together, which is when asyncio's
    # default pool starts another thread (it did for about half of 20,000 such calls).
    app = create_app(make_settings(*fakes.values(), max_batch_size=1), load)

    async def scenario() -> None:
        async def busy_loop() -> None:  # other work on the event loop, as under load
            while True:
                await asyncio.sleep(0)

        busy = asyncio.create_task(busy_loop())
        async with serving(app) as client:
            for i in range(100):
                body = {"texts": [f"a {i}", f"b {i}"], "model": ("en-de", "de-en")[i % 2]}
                assert (await client.post("/v1/translate", json=body)).status_code == 200
            await asyncio.gather(
                *(client.post("/v1/translate", json={"text": f"c {i}"}) for i in range(32))
            )
            model_thread = app.state.service.model_thread.submit(threading.get_ident).result()
        busy.cancel()
        assert set(threads) == {model_thread}

    asyncio.run(scenario())
    assert len(threads) == 2 + 2 + 200 + 32  # loads, warm-ups, batches of one sentence
    assert threads[0] != threading.get_ident()  # and not the event loop's
