"""Translator: order, empty input, whitespace, per-sentence errors, n-best, attention, int8,
and batch invariance through the whole text-in, text-out path."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model import (
    Candidate,
    DecodeOptions,
    DeviceError,
    Hypothesis,
    InputTooLong,
    ModelView,
    Result,
    TranslationFailed,
    Translator,
    load_bundle,
)

TEXTS = ["mo na pa ta sa de do", "ku", "ba be ki", "de do di du da de go ka", "sa le"]
GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4, n_best=4)


@pytest.fixture(scope="module")
def translator(tiny_bundle: Path) -> Translator:
    return Translator.from_dir(tiny_bundle)


def texts_of(results: list[Result]) -> list[str]:
    return [r.text for r in results]


@pytest.mark.parametrize("options", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_sentence_alone_equals_sentence_in_a_padded_batch(
    translator: Translator, options: DecodeOptions
) -> None:
    lengths = [translator.count_tokens(t) for t in TEXTS]
    assert len(set(lengths)) == len(TEXTS)  # every batch below is padded
    together = translator.translate(TEXTS, options)
    for text, in_batch in zip(TEXTS, together, strict=True):
        (alone,) = translator.translate([text], options)
        assert [c.token_ids for c in in_batch.candidates] == [c.token_ids for c in alone.candidates]
        for a, b in zip(in_batch.candidates, alone.candidates, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("batch_tokens", [4096, 12])
def test_results_come_back_in_the_callers_order(translator: Translator, batch_tokens: int) -> None:
    """Inputs are sorted by length inside; a small token budget also splits them into batches."""
    alone = [translator.translate([t], GREEDY)[0].text for t in TEXTS]
    assert len(set(alone)) == len(TEXTS), "the tiny model should translate each input differently"
    small = Translator(translator.bundle, batch_tokens=batch_tokens)
    assert texts_of(small.translate(TEXTS, GREEDY)) == alone
    assert texts_of(small.translate(TEXTS[::-1], GREEDY)) == alone[::-1]


@pytest.mark.parametrize("beam", [1, 3])
def test_batches_respect_the_token_budget_per_hypothesis(translator: Translator, beam: int) -> None:
    small = Translator(translator.bundle, batch_tokens=24)
    items = sorted(
        ((i, translator.tokenizer.encode_source(t)) for i, t in enumerate(TEXTS)),
        key=lambda item: len(item[1]),
    )
    batches = small._batches(items, rows_per_item=beam)
    assert [i for batch in batches for i, _ in batch] == [i for i, _ in items]
    for batch in batches:
        assert len(batch) == 1 or beam * len(batch) * max(len(ids) for _, ids in batch) <= 24
    if beam > 1:  # a beam's rows count: more, smaller batches than greedy
        assert len(batches) > len(small._batches(items))


def test_empty_input_gives_empty_output(translator: Translator) -> None:
    results = translator.translate(["", "ku", ""], BEAM)
    assert [r.text for r in results] == ["", translator.translate(["ku"], BEAM)[0].text, ""]
    assert results[0].error is None and results[0].candidates == (
        Candidate(text="", score=0.0, token_ids=()),
    )
    assert translator.translate([], GREEDY) == []


def test_leading_and_trailing_whitespace_is_kept(translator: Translator) -> None:
    core = translator.translate(["ba be ki"], GREEDY)[0].text
    assert core and core == core.strip()
    (padded,) = translator.translate(["  ba be ki \t"], GREEDY)
    assert padded.text == "  " + core + " \t"


any_texts = st.lists(
    st.one_of(
        st.text(max_size=40),  # any code point: controls, emoji, other scripts, surrogates
        st.text(st.sampled_from("kubasemo \t\n\u00a0\u3000."), max_size=120),  # spaces, repeats
        st.text(st.characters(categories=("Ll", "So")), min_size=30, max_size=80),  # long words
        st.lists(st.sampled_from(["ku", "ba", "se", "mo."]), min_size=20, max_size=60).map(
            " ".join
        ),
    ),
    max_size=6,
)


@pytest.mark.usefixtures("one_thread")
@settings(max_examples=40, deadline=None)
@given(texts=any_texts, beam=st.sampled_from([1, 3]))
def test_any_text_translates_or_fails_alone_as_too_long(
    int8_lanes: Translator, texts: list[str], beam: int
) -> None:
    """Whatever the text, each input gets one result in order: a translation with its outer
    whitespace kept, or InputTooLong for exactly the inputs over the limit."""
    results = int8_lanes.translate(texts, DecodeOptions(beam_size=beam, n_best=beam))
    assert len(results) == len(texts)
    for text, result in zip(texts, results, strict=True):
        too_long = int8_lanes.count_tokens(text) > int8_lanes.max_input_tokens
        if too_long:
            assert isinstance(result.error, InputTooLong) and result.text == ""
            continue
        assert result.error is None, result.error
        texts = [c.text for c in result.candidates]
        assert 1 <= len(set(texts)) == len(texts) <= (beam if text.strip() else 1)
        core = text.strip()
        if core:
            assert result.text.startswith(text[: len(text) - len(text.lstrip())])
            assert result.text.endswith(text[len(text.rstrip()) :])
        else:
            assert result.text == ""


@pytest.fixture(scope="module")
def int8_lanes(tiny_bundle: Path) -> Translator:
    """The service's CPU default: int8, compiled search in two lanes; a low input limit so
    generated texts cross it."""
    return Translator(load_bundle(tiny_bundle), quantize="int8", lanes=2, max_input_tokens=40)


def test_lone_surrogates_are_translated_as_replacement_characters(translator: Translator) -> None:
    # what surrogateescape makes of undecodable bytes; SentencePiece itself would raise
    broken, replaced = "ba \udcff be", "ba \ufffd be"
    assert translator.tokenizer.encode_source(broken) == translator.tokenizer.encode_source(
        replaced
    )
    assert translator.translate([broken])[0].text == translator.translate([replaced])[0].text


def test_encoding_many_sources_at_once_equals_one_at_a_time(translator: Translator) -> None:
    texts = [*TEXTS, "", "ba \udcff be", "ku 🙂 ku", "x" * 300]
    tokenizer = translator.tokenizer
    assert tokenizer.encode_sources(texts) == [tokenizer.encode_source(t) for t in texts]
    assert tokenizer.encode_sources([]) == []


def test_too_long_input_fails_alone(tiny_bundle: Path) -> None:
    translator = Translator(load_bundle(tiny_bundle), max_input_tokens=6)
    long_text = "de do di du da de go ka"
    n_tokens = translator.count_tokens(long_text)
    assert n_tokens > 6
    results = translator.translate(["ku", long_text, "sa le"], GREEDY)
    assert len(results) == 3
    assert isinstance(results[1].error, InputTooLong)
    assert results[1].error.index == 1 and results[1].error.n_tokens == n_tokens
    assert "limit is 6" in str(results[1].error)
    assert results[1].candidates == () and results[1].text == ""
    for i in (0, 2):
        assert results[i].error is None and results[i].text
    others = translator.translate(["ku", "sa le"], GREEDY)
    assert texts_of([results[0], results[2]]) == texts_of(others)


def two_spellings(translator: Translator) -> tuple[list[int], list[int]]:
    """Two id sequences the target tokenizer reads as the same text: a word piece (``▁ko``)
    and the bare ``▁`` followed by its letters (``▁`` ``k`` ``o``)."""
    tokenizer = translator.tokenizer
    ids = {p: i for i, p in enumerate(tokenizer.target_pieces(range(tokenizer.tgt_vocab_size)))}
    for piece, whole in ids.items():
        spelled = ["▁", *piece[1:]]
        if piece.startswith("▁") and len(piece) > 1 and all(p in ids for p in spelled):
            return [whole], [ids[p] for p in spelled]
    raise AssertionError("the tiny vocabulary has no word with two spellings")


def test_n_best_keeps_each_text_once(
    translator: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypotheses that spell one string with different pieces are one candidate, the best."""
    whole, pieces = two_spellings(translator)
    other = [i for i in range(4, translator.tokenizer.tgt_vocab_size) if [i] != whole][:1]
    hyps = [Hypothesis(whole, -0.5), Hypothesis(pieces, -0.6), Hypothesis(other, -0.7)]
    assert translator.tokenizer.decode_target(whole) == translator.tokenizer.decode_target(pieces)
    monkeypatch.setattr(translator, "decode_ids", lambda batch, options: [hyps] * len(batch))
    (result,) = translator.translate(["ku"], DecodeOptions(beam_size=3, n_best=3))
    assert [c.score for c in result.candidates] == [-0.5, -0.7]
    assert [c.token_ids for c in result.candidates] == [tuple(whole), tuple(other)]


def test_a_failing_sentence_does_not_fail_the_others(
    translator: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that raises is retried sentence by sentence; only the culprit gets an error."""
    want = texts_of(translator.translate(TEXTS, GREEDY))
    bad_ids = translator.tokenizer.encode_source(TEXTS[2])
    original = translator.decode_ids

    def flaky(batch_ids: list[list[int]], options: DecodeOptions) -> list:  # type: ignore[type-arg]
        if bad_ids in batch_ids:
            raise RuntimeError("boom")
        return original(batch_ids, options)

    monkeypatch.setattr(translator, "decode_ids", flaky)
    results = translator.translate(TEXTS, GREEDY)
    assert isinstance(results[2].error, TranslationFailed) and "boom" in str(results[2].error)
    assert [r.text for i, r in enumerate(results) if i != 2] == want[:2] + want[3:]


def test_n_best_candidates_are_sorted_by_score(translator: Translator) -> None:
    for result in translator.translate(TEXTS, BEAM):
        scores = [c.score for c in result.candidates]
        assert 1 <= len(scores) <= 4
        assert scores == sorted(scores, reverse=True)
        assert len({c.text for c in result.candidates}) == len(scores)  # distinct texts
        assert result.score == scores[0] and result.text == result.candidates[0].text


def test_source_ids_given_are_read_instead_of_encoding_again(
    translator: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [*TEXTS, "  ", " ku "]  # blank and padded texts too
    expected = translator.translate(texts, BEAM)
    source_ids = [translator.encode(text) for text in texts]
    assert source_ids[-1] == translator.tokenizer.encode_source("ku")  # whitespace left out

    def refuse(texts: list[str]) -> list[list[int]]:
        raise AssertionError("encoded again")

    monkeypatch.setattr(translator.tokenizer, "encode_sources", refuse)
    assert translator.translate(texts, BEAM, source_ids) == expected
    with pytest.raises(ValueError, match="2 source_ids for 3 texts"):
        translator.translate(texts[:3], BEAM, source_ids[:2])


def test_pieces_are_the_vocabularys_piece_for_each_id(translator: Translator) -> None:
    tokenizer = translator.tokenizer
    for text in [*TEXTS, "mo pa"]:
        ids = tokenizer.encode_source(text)
        expected = [tokenizer._src.id_to_piece(i) for i in ids]
        assert expected[-1] == "</s>"
        assert tokenizer.source_pieces(ids) == expected
        assert tokenizer.target_pieces(ids) == expected  # the tiny model's joint vocabulary
    assert "<unk>" in tokenizer.source_pieces(tokenizer.encode_source("mo pa"))
    assert tokenizer.source_pieces([]) == []


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_rows_cover_the_source_and_sum_to_one(
    translator: Translator, beam_size: int
) -> None:
    options = DecodeOptions(beam_size=beam_size, n_best=beam_size, return_attention=True)
    for text, result in zip(TEXTS, translator.translate(TEXTS, options), strict=True):
        assert result.source_tokens == tuple(
            translator.tokenizer.source_pieces(translator.tokenizer.encode_source(text))
        )
        for cand in result.candidates:
            assert cand.attention is not None
            attn = torch.tensor(cand.attention)
            assert cand.tokens == tuple(translator.tokenizer.target_pieces(cand.token_ids))
            assert attn.shape == (len(cand.tokens), len(result.source_tokens))
            assert torch.allclose(attn.sum(dim=1), torch.ones(len(cand.tokens)), atol=1e-5)


@pytest.mark.parametrize("options", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_pieces_are_spelled_out_only_with_attention(
    translator: Translator, options: DecodeOptions
) -> None:
    """They only label the attention matrix, and a server's batch would spend ~0.15 ms on them."""
    with_attention = replace(options, return_attention=True)
    plain = translator.translate(TEXTS, options)
    labelled = translator.translate(TEXTS, with_attention)
    for a, b in zip(plain, labelled, strict=True):
        assert a.source_tokens is None and b.source_tokens and b.source_tokens[-1] == "</s>"
        assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
        assert all(c.tokens is None and c.attention is None for c in a.candidates)
        assert all(c.tokens and len(c.tokens) == len(c.token_ids) > 0 for c in b.candidates)


def test_int8_translator_quantizes_and_translates(tiny_bundle: Path) -> None:
    translator = Translator.from_dir(tiny_bundle, quantize="int8")
    modules = {type(m).__module__ for m in translator.model.modules()}
    assert any("quantized" in name for name in modules), modules
    for options in (GREEDY, BEAM):
        results = translator.translate(TEXTS, options)
        assert all(r.error is None and r.text for r in results)
        assert all(len(c.token_ids) > 0 for r in results for c in r.candidates)


def test_auto_quantization_is_int8_on_cpu_only() -> None:
    from model.placement import resolve_quantize

    assert resolve_quantize("auto", torch.device("cpu")) == "int8"
    assert resolve_quantize("auto", torch.device("cuda")) == "none"
    assert resolve_quantize("none", torch.device("cpu")) == "none"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_quantize("int8", torch.device("cuda"))


def test_auto_translator_says_which_quantization_it_chose(tiny_bundle: Path) -> None:
    translator = Translator.from_dir(tiny_bundle, quantize="auto")
    assert translator.quantize == "int8"
    step_weights = translator.model.decoder.step_weights  # type: ignore[union-attr]
    assert not isinstance(step_weights[0], torch.Tensor | tuple)  # int8 rows, prepacked


def test_bad_constructor_arguments(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(ValueError, match="quantize"):
        Translator(bundle, quantize="int4")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            Translator(bundle, device="cuda")


@pytest.mark.parametrize("quantize", ["none", "auto"])
def test_model_view_describes_the_model_as_the_translator_does(
    tiny_bundle: Path, quantize: str
) -> None:
    view = ModelView.from_dir(tiny_bundle, quantize=quantize)
    full = Translator.from_dir(tiny_bundle, quantize=quantize)
    assert not hasattr(view, "model")  # no network built
    for name in ("model_id", "source_lang", "target_lang", "checksum", "quantize", "device"):
        assert getattr(view, name) == getattr(full, name), name
    assert (view.metadata, view.shortlist_info) == (full.metadata, full.shortlist_info)
    assert view.config.to_dict() == full.config.to_dict()
    for text in ("a b c", "  x  ", "alpha beta gamma delta"):
        assert view.count_tokens(text) == full.count_tokens(text)
