"""The TorchScript greedy loop: same tokens and scores as ``greedy_search`` on int8 models, and
only for the models it covers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model import DecodeOptions, Seq2Seq, Tokenizer, Translator, greedy_search, load_bundle
from model.compiled_greedy import CompiledGreedy
from model.shortlist import OutputLayer, Shortlist
from model.translator import quantize_int8

SOURCES = ["ba de gi ko", "lu ma ne", "pi ra se tu ba ko lu", "ko", "ne ne ne ma ra"]


def padded(tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [torch.tensor(tokenizer.encode_source(s)) for s in SOURCES]
    src = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    return src, torch.tensor([len(i) for i in ids])


def some_ids_shortlist(vocab: int) -> Shortlist:
    """Half the target ids: decoding must stay inside each sentence's columns."""
    return Shortlist(torch.arange(0, vocab, 2), torch.full((vocab, 1), -1, dtype=torch.long))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("shortlist", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(beam_size=1),
        DecodeOptions(beam_size=1, min_length=4, max_len_b=12),
        DecodeOptions(beam_size=1, max_length=3, length_penalty=0.0),
    ],
)
def test_compiled_loop_equals_greedy_search(
    make_model: Callable[..., Seq2Seq],
    tokenizer: Tokenizer,
    layers: int,
    shortlist: bool,
    options: DecodeOptions,
) -> None:
    model = quantize_int8(make_model(seed=3, decoder_layers=layers))
    compiled = CompiledGreedy.for_model(model)  # type: ignore[arg-type]
    assert compiled is not None
    src, lens = padded(tokenizer)
    vocab = None
    if shortlist:
        candidates = some_ids_shortlist(tokenizer.tgt_vocab_size).candidates(src)
        vocab = OutputLayer(model.decoder.generator).restrict(candidates)  # type: ignore[union-attr,arg-type]
    with torch.inference_mode():
        enc = model.encode(src, lens, vocab)  # type: ignore[operator]
        want = greedy_search(model, enc, lens, options)  # type: ignore[arg-type]
        got = compiled.search(enc, lens, options)
    assert [h[0].token_ids for h in got] == [h[0].token_ids for h in want]
    assert [h[0].score for h in got] == [h[0].score for h in want]  # the same kernels: exact
    assert len({tuple(h[0].token_ids) for h in got}) > 1  # the sentences differ


@pytest.mark.parametrize(
    "overrides", [{"input_feeding": True}, {"attention": "additive"}], ids=["feeding", "additive"]
)
def test_models_it_does_not_cover_keep_the_python_loop(
    make_model: Callable[..., Seq2Seq], overrides: dict[str, object]
) -> None:
    assert CompiledGreedy.for_model(quantize_int8(make_model(**overrides))) is None  # type: ignore[arg-type]


def test_translator_compiles_greedy_for_int8_only(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert Translator(bundle, quantize="none").compiled_greedy is None
    int8 = Translator(bundle, quantize="int8")
    assert int8.compiled_greedy is not None
    # Attention weights come from the Python loop, with the same tokens.
    plain = int8.translate(SOURCES, DecodeOptions(beam_size=1))
    with_attention = int8.translate(SOURCES, DecodeOptions(beam_size=1, return_attention=True))
    for a, b in zip(plain, with_attention, strict=True):
        assert a.candidates[0].tokens == b.candidates[0].tokens
        assert a.candidates[0].attention is None and b.candidates[0].attention is not None
