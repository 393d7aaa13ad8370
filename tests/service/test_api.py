"""The HTTP contract of /v1/translate, /v1/models, /health and /ready (fake translator)."""

from __future__ import annotations

import dataclasses
import gc
import itertools
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_fakes import SIGNATURE, FakeTranslator, make_app, make_settings

from model import DecodeOptions
from service.app import create_app
from service.gc_tuning import YOUNGEST_THRESHOLD
from service.settings import Settings
from service.translation import decode_options


def translate(client: TestClient, **body: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/v1/translate", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_ready_only_between_startup_and_shutdown() -> None:
    app = make_app()
    client = TestClient(app)  # no `with`: the lifespan has not run
    assert client.get("/health").json() == {"status": "ok"}
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "not_ready"
    early = client.post("/v1/translate", json={"text": "hi"})
    assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
    with TestClient(app) as running:
        assert running.get("/ready").json() == {"status": "ready", "models": ["fake-en-de"]}
    draining = client.get("/ready")
    assert draining.status_code == 503 and draining.json()["error"]["code"] == "draining"


def test_what_startup_loaded_is_frozen_out_of_garbage_collection() -> None:
    app = make_app()
    with TestClient(app):
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(app.state.service) and app.state.service not in gc.get_objects()
        assert gc.get_threshold()[0] == YOUNGEST_THRESHOLD


def test_startup_warms_up_each_model() -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake)):
        assert len(fake.batches) == 1


def test_failed_model_load_fails_startup() -> None:
    def broken(path: Path, settings: Settings) -> FakeTranslator:
        raise FileNotFoundError(f"{path}/config.json")

    app = create_app(make_settings(FakeTranslator()), broken)
    with pytest.raises(FileNotFoundError), TestClient(app):
        pass


def test_translate_one_text(client: TestClient) -> None:
    out = translate(client, text="A dog runs.")
    assert out["model"] == "fake-en-de"
    assert out["translations"] == [{"text": "A dog runs.", "score": -0.5}]
    assert set(out["timing"]) == {"queue_ms", "compute_ms", "total_ms"}


def test_translate_many_texts_in_order(client: TestClient, fake: FakeTranslator) -> None:
    texts = [f"Sentence number {i}." for i in range(10)]
    out = translate(client, texts=texts, beam_size=1)
    assert [t["text"] for t in out["translations"]] == texts
    assert fake.sizes[-1] == 10  # one request -> one batch


def test_long_text_is_split_translated_together_and_rejoined(
    client: TestClient, fake: FakeTranslator
) -> None:
    text = "  First one.  Second one!\r\n\n\tThird line\n"
    out = translate(client, text=text)
    assert out["translations"][0]["text"] == text
    assert fake.batches[-1][0] == ["First one.", "Second one!", "Third line"]
    # each sentence was encoded once, when its tokens were counted, and the model gets those ids
    assert fake.source_ids[-1] == [fake.encode(s) for s in fake.batches[-1][0]]


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\t\n", "😀🎉 party", "Ein Hund läuft.", "日本語の文。", "مرحبا بالعالم",
     "bell\x07 nul\x00 esc\x1b", "a" * 400, "Supercalifragilistic" * 20],
)  # fmt: skip
def test_unusual_text_translates_without_error(client: TestClient, text: str) -> None:
    out = translate(client, texts=[text, "ok"])
    assert [t["text"] for t in out["translations"]] == [text, "ok"]


def test_sentences_over_the_token_limit_are_cut_to_fit() -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake, max_input_tokens=4)) as client:
        text = "Short one. Then a much longer second sentence with words\tand  gaps."
        assert translate(client, text=text)["translations"][0]["text"] == text
        pieces = fake.batches[-1][0]
        assert pieces[0] == "Short one." and all(fake.count_tokens(p) <= 4 for p in pieces)
        fake.chars_per_token = 5
        word = "Donaudampfschifffahrtsgesellschaftskapitän" * 5
        assert translate(client, text=word)["translations"][0]["text"] == word
        assert "".join(fake.batches[-1][0]) == word


def test_n_best_gives_alternatives(client: TestClient) -> None:
    out = translate(client, text="One. Two.", beam_size=3, n_best=3)
    (translation,) = out["translations"]
    assert translation["text"] == "One. Two."
    assert translation["alternatives"] == [
        {"text": "One. ~1 Two. ~1", "score": -1.5},
        {"text": "One. ~2 Two. ~2", "score": -2.5},
    ]


def test_alternatives_are_each_text_once(client: TestClient, fake: FakeTranslator) -> None:
    """A sentence with fewer candidates than n_best (the model keeps each text once) repeats
    its last in later alternatives; a whole text already given is not given again."""
    fake.distinct.update({"One.": 2, "Two.": 1})
    out = translate(client, text="One. Two.", beam_size=4, n_best=4)
    assert out["translations"][0]["alternatives"] == [{"text": "One. ~1 Two.", "score": -1.0}]
    fake.distinct["One."] = 1
    out = translate(client, texts=["One. Two.", "Three."], beam_size=4, n_best=3)
    first, second = out["translations"]
    assert first["alternatives"] == []
    assert [a["text"] for a in second["alternatives"]] == ["Three. ~1", "Three. ~2"]


def test_scores_can_be_left_out_and_alignment_asked_for(
    client: TestClient, fake: FakeTranslator
) -> None:
    out = translate(client, text="Hi there.", return_scores=False, return_alignment=True)
    (translation,) = out["translations"]
    assert "score" not in translation
    (alignment,) = translation["alignment"]
    assert alignment["source_tokens"] == ["Hi", "there.", "</s>"]
    assert alignment["target_tokens"] == ["Hi", "there."]
    assert len(alignment["weights"]) == 3 and len(alignment["weights"][0]) == 3
    assert fake.batches[-1][1].return_attention is True


def test_decoding_settings_reach_the_translator(client: TestClient, fake: FakeTranslator) -> None:
    translate(client, text="x", beam_size=2, max_length=7)
    options = fake.batches[-1][1]
    assert (options.beam_size, options.n_best, options.max_length) == (2, 1, 7)
    translate(client, text="y")
    assert fake.batches[-1][1].beam_size == 5  # DecodeOptions default


def test_request_options_are_the_defaults_with_each_override() -> None:
    defaults, settings = DecodeOptions(beam_size=4, max_length=50), make_settings(FakeTranslator())
    seen = set()
    for beam, n_best, max_length, alignment in itertools.product(
        (None, 2, 4), (1, 2), (None, 9), (False, True)
    ):
        options = decode_options(
            defaults,
            settings,
            beam_size=beam,
            n_best=n_best,
            max_length=max_length,
            return_alignment=alignment,
        )
        expected = dataclasses.replace(
            defaults,
            beam_size=beam or 4,
            n_best=n_best,
            max_length=max_length or 50,
            return_attention=alignment,
        )
        assert options == expected
        seen.add(options)
    assert len(seen) == 16  # beam None is the default, 4
    again = decode_options(defaults, settings, beam_size=1, max_length=9)
    assert again is decode_options(defaults, settings, beam_size=1, max_length=9)  # cached


def test_model_chosen_by_id_or_language_pair() -> None:
    en_de, de_en = FakeTranslator("en-de"), FakeTranslator("de-en", "de", "en")
    with TestClient(make_app(en_de, de_en)) as client:
        assert translate(client, text="x")["model"] == "en-de"  # the first is the default
        assert translate(client, text="x", model="de-en")["model"] == "de-en"
        assert translate(client, text="x", source="de", target="en")["model"] == "de-en"
        assert translate(client, text="x", target="de")["model"] == "en-de"


def test_models_endpoint(client: TestClient) -> None:
    (info,) = client.get("/v1/models").json()["models"]
    assert info["id"] == "fake-en-de"
    assert (info["source"], info["target"]) == ("en", "de")
    assert info["architecture"]["hidden_size"] == 16
    assert info["decoding"]["beam_size"] == 5
    assert info["checksum"] == "ab" * 32
    assert info["quantization"] == "none" and info["shortlist"] is None
    assert info["workers"] == 0  # a fake translator always runs in the server process
    assert info["metrics"]["test"]["signature"] == SIGNATURE


def test_bundle_decoding_defaults_are_capped_by_max_beam() -> None:
    fake = FakeTranslator()
    fake.metadata["decoding"] = {"beam_size": 6, "length_penalty": 1.0, "bogus": 1}
    with TestClient(make_app(fake, max_beam=4)) as client:
        decoding = client.get("/v1/models").json()["models"][0]["decoding"]
        assert (decoding["beam_size"], decoding["length_penalty"]) == (4, 1.0)


def test_openapi_docs_are_served(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/translate", "/v1/models", "/translate", "/languages", "/ready"} <= set(paths)
    assert client.get("/docs").status_code == 200
