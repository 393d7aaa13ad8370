"""The service with a real (tiny) model: concurrent requests share batches and get the same
translations as the same texts sent one by one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from model import DecodeOptions, Seq2Seq, Tokenizer, Translator
from model.bundle import save_bundle
from model.shortlist import SPECIAL_IDS, Shortlist
from service.app import create_app
from service.model_workers import WorkerPool
from service.settings import Settings

SENTENCES = [
    " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4]) + f" {i}" for i in range(64)
]


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def translate(client: httpx.AsyncClient, text: str, beam: int) -> tuple[str, float]:
    response = await client.post("/v1/translate", json={"text": text, "beam_size": beam})
    assert response.status_code == 200, response.text
    entry = response.json()["translations"][0]
    return entry["text"], entry["score"]


def run_concurrency(bundle: Path, beam: int, workers: int = 0, device: str = "cpu") -> None:
    settings = Settings(
        models=[bundle], device=device, quantize="none", max_wait_ms=50.0, model_workers=workers
    )
    app = create_app(settings)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/ready")).status_code == 200
                (info,) = (await client.get("/v1/models")).json()["models"]
                assert (info["workers"], info["device"]) == (workers, device)
                alone = [await translate(client, s, beam) for s in SENTENCES]
                before = (await client.get("/metrics")).text
                together = await asyncio.gather(*(translate(client, s, beam) for s in SENTENCES))
                after = (await client.get("/metrics")).text
        assert [t for t, _ in together] == [t for t, _ in alone]
        for (_, s1), (_, s2) in zip(together, alone, strict=True):
            assert abs(s1 - s2) < 1e-4
        batches = sample(after, "nmt_batch_size_count") - sample(before, "nmt_batch_size_count")
        sentences = sample(after, "nmt_batch_size_sum") - sample(before, "nmt_batch_size_sum")
        assert sentences == len(SENTENCES)
        assert batches < len(SENTENCES)  # requests were merged: some batch held more than one

    asyncio.run(scenario())


def test_64_concurrent_greedy_requests_match_one_by_one(tiny_bundle: Path) -> None:
    run_concurrency(tiny_bundle, beam=1)


def test_model_worker_processes_give_the_same_translations(tiny_bundle: Path) -> None:
    run_concurrency(tiny_bundle, beam=1, workers=2)


def test_a_dead_model_worker_fails_requests_cleanly_and_unreadies(tiny_bundle: Path) -> None:
    settings = Settings(models=[tiny_bundle], device="cpu", quantize="none", model_workers=1)
    app = create_app(settings)

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await translate(client, "alpha beta", 1))[0]
                (pool,) = app.state.service.worker_pools
                for process in pool._processes:
                    process.kill()
                    process.join()
                response = await client.post("/v1/translate", json={"text": "alpha"})
                assert response.status_code == 503
                error = response.json()["error"]
                assert error["code"] == "device_error" and "worker 0 exited" in error["message"]
                assert (await client.get("/ready")).status_code == 503
                assert (await client.get("/health")).status_code == 200

    asyncio.run(scenario())


def test_64_concurrent_beam_requests_match_one_by_one(tiny_bundle: Path) -> None:
    run_concurrency(tiny_bundle, beam=4)


@pytest.mark.gpu
@pytest.mark.parametrize("beam", [1, 4])
def test_64_concurrent_requests_on_cuda_match_one_by_one(tiny_bundle: Path, beam: int) -> None:
    run_concurrency(tiny_bundle, beam=beam, device="cuda")


@pytest.mark.gpu
def test_model_worker_processes_on_cuda(tiny_bundle: Path) -> None:
    """Spawned workers each initialise CUDA themselves (a forked CUDA context would not work)."""
    run_concurrency(tiny_bundle, beam=1, workers=2, device="cuda")


def test_a_worker_that_cannot_load_fails_start_up_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(models=[tmp_path], device="cpu", model_workers=2)
    with pytest.raises(RuntimeError, match="model worker 0 failed to start: BundleError"):
        WorkerPool(tmp_path, settings, DecodeOptions())


@pytest.mark.parametrize(("beam", "n_best"), [(1, 1), (3, 2)])
def test_int8_compiled_search_serves_awkward_inputs(
    tiny_bundle: Path, beam: int, n_best: int
) -> None:
    """The service on CPU runs int8 through the compiled search loops: empty, whitespace-only,
    emoji, control characters, other scripts, one very long word and many sentences in one
    text all come back 200, one entry per input, layout kept."""
    texts = ["", "  \n ", "😀🎉", "\x07ba\x00 de", "日本語", "ba" * 400, "ba de. Ko lu.\n\nMa ne!"]
    settings = Settings(models=[tiny_bundle], device="cpu", quantize="int8")
    app = create_app(settings)

    async def scenario() -> list[dict[str, object]]:
        async with app.router.lifespan_context(app):
            (loaded,) = app.state.service.registry
            assert loaded.translator.compiled_search is not None
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                body = {"texts": texts, "beam_size": beam, "n_best": n_best}
                response = await client.post("/v1/translate", json=body)
                assert response.status_code == 200, response.text
                translations: list[dict[str, object]] = response.json()["translations"]
                return translations

    translations = asyncio.run(scenario())
    assert len(translations) == len(texts)
    assert [t["text"] for t in translations[:2]] == ["", "  \n "]  # nothing to translate
    assert all(t["text"] for t in translations[2:])
    last = str(translations[-1]["text"])
    assert last.count("\n\n") == 1 and not last.startswith(" ")
    if n_best > 1:
        for t in translations[2:]:
            texts_given = [t["text"], *(a["text"] for a in t["alternatives"])]  # type: ignore[attr-defined]
            assert len(set(texts_given)) == len(texts_given) <= n_best


def test_alignment_labels_its_matrix_with_the_models_pieces(tiny_bundle: Path) -> None:
    """The translator spells out pieces only when attention is asked for: a request that asks
    gets the source and target pieces its matrix is indexed by, and the target token counter
    still counts every translation's tokens."""
    settings = Settings(models=[tiny_bundle], device="cpu", quantize="int8")
    app = create_app(settings)

    async def scenario() -> tuple[dict[str, object], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                plain = await client.post("/v1/translate", json={"text": "ba de ki"})
                assert (
                    plain.status_code == 200 and "alignment" not in plain.json()["translations"][0]
                )
                body = {"text": "ba de ki", "return_alignment": True}
                response = await client.post("/v1/translate", json=body)
                assert response.status_code == 200, response.text
                return response.json()["translations"][0], (await client.get("/metrics")).text

    translation, metrics = asyncio.run(scenario())
    (alignment,) = translation["alignment"]  # type: ignore[misc]
    tokenizer = Translator.from_dir(tiny_bundle).tokenizer
    assert alignment["source_tokens"] == tokenizer.source_pieces(
        tokenizer.encode_source("ba de ki")
    )
    spelled = "".join(alignment["target_tokens"]).replace("\u2581", " ").strip()
    assert spelled == alignment["translation"] == translation["text"]
    weights = alignment["weights"]
    assert len(weights) == len(alignment["target_tokens"]) > 0
    assert all(len(row) == len(alignment["source_tokens"]) for row in weights)
    produced = sample(metrics, "nmt_target_tokens_total")
    assert produced == 2 * len(alignment["target_tokens"])  # both requests' tokens counted


@pytest.mark.parametrize("beam", [1, 3])
def test_64_concurrent_requests_under_a_shortlist_match_one_by_one(
    tiny_model: Seq2Seq, tokenizer: Tokenizer, tmp_path: Path, beam: int
) -> None:
    """Each sentence scores only its own shortlist, whoever shares its batch (the shipped
    models have shortlists; another sentence's candidates had changed translations)."""
    generator = torch.Generator().manual_seed(0)
    vocab = tokenizer.tgt_vocab_size
    by_source = torch.randint(
        SPECIAL_IDS, vocab, (tokenizer.src_vocab_size, 3), generator=generator
    )
    shortlist = Shortlist(torch.arange(SPECIAL_IDS + 2), by_source)
    bundle = save_bundle(tmp_path / "listed", tiny_model, tokenizer, shortlist=shortlist)
    run_concurrency(bundle, beam)
