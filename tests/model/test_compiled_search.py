"""The TorchScript search loops: the same tokens and scores as ``greedy_search`` and
``beam_search`` on int8 models, and only for the models they cover."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model import (
    DecodeOptions,
    Hypothesis,
    Seq2Seq,
    SpaceRule,
    Tokenizer,
    Translator,
    beam_search,
    greedy_search,
    load_bundle,
)
from model.compiled_search import CompiledSearch, script_encoder
from model.placement import quantize_int8
from model.shortlist import OutputLayer, Shortlist

ENGLISH = (
    "a man woman dog child people two three young old red blue shirt is are riding walking "
    "playing standing sitting in on at the with of street water ball bike beach park near "
    "front group his her while"
)
SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "en-de-multi30k"
SOURCES = ["ba de gi ko", "lu ma ne", "pi ra se tu ba ko lu", "ko", "ne ne ne ma ra"]


def padded(tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [torch.tensor(tokenizer.encode_source(s)) for s in SOURCES]
    src = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    return src, torch.tensor([len(i) for i in ids])


def some_ids_shortlist(vocab: int) -> Shortlist:
    """Half the target ids: search must keep to each sentence's columns."""
    return Shortlist(torch.arange(0, vocab, 2), torch.full((vocab, 1), -1, dtype=torch.long))


def rule_around_a_frequent_token(hyps: list[list[Hypothesis]], vocab: int) -> SpaceRule:
    """A ``SpaceRule`` whose "bare piece" is the token these hypotheses use most, after which
    every third id and EOS are banned: on a random model it then bites in most sentences."""
    counts = Counter(t for sentence in hyps for h in sentence for t in h.token_ids[:-1])
    banned = torch.arange(vocab) % 3 == 0  # EOS (3) among them
    return SpaceRule(counts.most_common(1)[0][0], banned)


@pytest.mark.parametrize("space", [False, True], ids=["", "space-rule"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("shortlist", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(beam_size=1),
        DecodeOptions(beam_size=1, min_length=4, max_len_b=12),
        DecodeOptions(beam_size=1, max_length=3, length_penalty=0.0),
        DecodeOptions(beam_size=4, n_best=3),
        DecodeOptions(beam_size=3, min_length=4, max_len_b=12, length_penalty=1.0),
        DecodeOptions(beam_size=2, max_length=3),
    ],
    ids=["greedy", "greedy-min", "greedy-max", "beam4-nbest3", "beam3-min", "beam2-max"],
)
def test_compiled_loops_equal_the_python_loops(
    make_model: Callable[..., Seq2Seq],
    tokenizer: Tokenizer,
    layers: int,
    shortlist: bool,
    options: DecodeOptions,
    space: bool,
) -> None:
    model = quantize_int8(make_model(seed=3, decoder_layers=layers))
    src, lens = padded(tokenizer)
    vocab = None
    if shortlist:
        candidates = some_ids_shortlist(tokenizer.tgt_vocab_size).candidates(src)
        vocab = OutputLayer(model.decoder.generator).restrict(candidates)  # type: ignore[union-attr,arg-type]
    search = greedy_search if options.beam_size == 1 else beam_search
    with torch.inference_mode():
        enc = model.encode(src, lens, vocab)  # type: ignore[operator]
        rule = None
        if space:
            free = search(model, enc, lens, options)  # type: ignore[arg-type]
            rule = rule_around_a_frequent_token(free, tokenizer.tgt_vocab_size)
        compiled = CompiledSearch.for_model(model, rule)  # type: ignore[arg-type]
        assert compiled is not None
        want = search(model, enc, lens, options, rule)  # type: ignore[arg-type]
        got = compiled.search(enc, lens, options)
    assert [[h.token_ids for h in hyps] for hyps in got] == [
        [h.token_ids for h in hyps] for hyps in want
    ]
    # The same kernels in the same order: exactly the same scores.
    assert [[h.score for h in hyps] for hyps in got] == [[h.score for h in hyps] for hyps in want]
    assert len({tuple(hyps[0].token_ids) for hyps in got}) > 1  # the sentences differ
    assert all(len(hyps) == options.n_best for hyps in got)
    if rule is not None:
        # What followed the rule's token within each hypothesis (random models mostly stop at
        # the length limit, not at EOS; the oracle tests in test_search.py check EOS).
        follows = [
            ids[i + 1]
            for hyps in got
            for ids in (h.token_ids for h in hyps)
            for i in range(len(ids) - 1)
            if ids[i] == rule.space_id
        ]
        assert follows, "the rule's token is never followed: the test would check nothing"
        assert not any(rule.banned[follows].tolist())


@pytest.mark.parametrize(
    "overrides", [{"input_feeding": True}, {"attention": "additive"}], ids=["feeding", "additive"]
)
def test_models_they_do_not_cover_keep_the_python_loops(
    make_model: Callable[..., Seq2Seq], overrides: dict[str, object]
) -> None:
    model = quantize_int8(make_model(**overrides))
    assert CompiledSearch.for_model(model) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("beam", [1, 3])
def test_translator_compiles_search_for_int8_only(tiny_bundle: Path, beam: int) -> None:
    bundle = load_bundle(tiny_bundle)
    assert Translator(bundle, quantize="none").compiled_search is None
    int8 = Translator(bundle, quantize="int8")
    assert int8.compiled_search is not None
    # Attention weights come from the Python loops, with the same tokens.
    plain = int8.translate(SOURCES, DecodeOptions(beam_size=beam))
    with_attention = int8.translate(SOURCES, DecodeOptions(beam_size=beam, return_attention=True))
    for a, b in zip(plain, with_attention, strict=True):
        assert a.candidates[0].token_ids == b.candidates[0].token_ids
        assert a.candidates[0].attention is None and b.candidates[0].attention is not None


@pytest.fixture(scope="module")
def shipped_int8() -> Translator:
    return Translator(load_bundle(SHIPPED_MODEL), quantize="int8")


@pytest.mark.parametrize("beam", [1, 5])
def test_compiled_loops_are_exact_with_the_shipped_model(
    shipped_int8: Translator, beam: int
) -> None:
    """At the real sizes (hidden 256, shortlists of hundreds of ids, batches of ~100) matmul
    kernels depend on their operands' memory layout: the compiled loops must hand them the
    same layouts as the Python loops (a transposed copy of the keys changed 6 of these 256)."""
    rng, words = random.Random(0), ENGLISH.split()
    lines = [" ".join(rng.choices(words, k=rng.randint(3, 22))) + " ." for _ in range(256)]
    options = DecodeOptions(beam_size=beam)
    compiled = shipped_int8.translate(lines, options)
    keep, shipped_int8.compiled_search = shipped_int8.compiled_search, None
    try:
        python = shipped_int8.translate(lines, options)
    finally:
        shipped_int8.compiled_search = keep
    assert [(r.text, r.score) for r in compiled] == [(r.text, r.score) for r in python]


def test_a_torch_without_torchscript_falls_back_to_the_python_loops(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_torchscript(fn: object) -> object:
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(torch.jit, "script", no_torchscript)
    translator = Translator(load_bundle(tiny_bundle), quantize="int8")
    assert translator.compiled_search is None
    assert translator.translate(SOURCES, DecodeOptions(beam_size=2))[0].candidates


def test_the_compiled_encoder_equals_the_eager_one(
    make_model: Callable[..., Seq2Seq], tokenizer: Tokenizer
) -> None:
    model = quantize_int8(make_model(seed=3, encoder_layers=2))
    eager = model.encoder  # type: ignore[union-attr]
    compiled = script_encoder(eager)  # type: ignore[arg-type]
    assert isinstance(compiled, torch.jit.ScriptModule)
    src, lens = padded(tokenizer)
    with torch.inference_mode():
        for got, want in zip(compiled(src, lens), eager(src, lens), strict=True):
            assert torch.equal(got, want)


def test_the_int8_translators_encoder_runs_in_and_out_of_inference_mode(tiny_bundle: Path) -> None:
    """A TorchScript plan made with autograd on would fail on inference tensors later."""
    translator = Translator(load_bundle(tiny_bundle), quantize="int8")
    assert isinstance(translator.model.encoder, torch.jit.ScriptModule)
    src, lens = padded(translator.tokenizer)
    first = translator.model.encoder(src, lens)  # type: ignore[operator]
    with torch.inference_mode():
        again = translator.model.encoder(src.clone(), lens.clone())  # type: ignore[operator]
    assert torch.equal(first[0], again[0])


def test_an_encoder_torchscript_cannot_compile_stays_eager(
    make_model: Callable[..., Seq2Seq], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_torchscript(fn: object) -> object:
        raise RuntimeError("TorchScript is not available")

    encoder = quantize_int8(make_model()).encoder  # type: ignore[union-attr]
    monkeypatch.setattr(torch.jit, "script", no_torchscript)
    assert script_encoder(encoder) is encoder  # type: ignore[arg-type]


def test_the_shipped_model_searches_with_its_vocabularys_space_rule(
    shipped_int8: Translator,
) -> None:
    rule = shipped_int8.space_rule
    assert rule is not None
    pieces = shipped_int8.tokenizer.target_pieces(range(shipped_int8.tokenizer.tgt_vocab_size))
    assert pieces[rule.space_id] == "▁"
    assert rule.banned.tolist() == [p.startswith("▁") or p == "</s>" for p in pieces]
    assert shipped_int8.compiled_search is not None
    assert shipped_int8.compiled_search.space is rule
