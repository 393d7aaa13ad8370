"""Golden outputs of the committed tiny bundle (tests/data/make_golden.py made both).

It guards the bundle format and the search against silent changes: an old bundle must keep
loading, and must keep translating the same way. If a change is meant to alter the outputs,
re-run the script and commit the new files with the change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model import DecodeOptions, Translator

DATA = Path(__file__).resolve().parents[1] / "data"
OPTIONS = {
    "greedy": DecodeOptions(beam_size=1),
    "beam3": DecodeOptions(beam_size=3, n_best=3, length_penalty=0.6),
}


@pytest.fixture(scope="module")
def golden() -> dict[str, list]:  # type: ignore[type-arg]
    return json.loads((DATA / "golden-outputs.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator.from_dir(DATA / "golden-bundle")


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_golden_bundle_translates_as_committed(
    translator: Translator,
    golden: dict[str, list],
    name: str,  # type: ignore[type-arg]
) -> None:
    results = translator.translate(golden["inputs"], OPTIONS[name])
    pieces = translator.tokenizer.target_pieces
    for result, expected in zip(results, golden[name], strict=True):
        assert result.error is None
        got = [(c.text, pieces(c.token_ids)) for c in result.candidates]
        assert got == [(e["text"], e["tokens"]) for e in expected]
        scores = [c.score for c in result.candidates]
        assert scores == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_golden_bundle_metadata(translator: Translator) -> None:
    assert translator.model_id == "golden-tiny"
    assert translator.config.emb_size == 8 and translator.config.hidden_size == 16
    assert translator.tokenizer.src_vocab_size <= 64
