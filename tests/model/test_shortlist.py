"""Vocabulary shortlist: the co-occurrence table, the batch candidates, exact decoding when the
shortlist holds every id, restricted decoding when it does not, int8, and the bundle file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import EOS_ID, BundleError, DecodeOptions, Seq2Seq, Tokenizer, Translator, load_bundle
from model.bundle import save_bundle
from model.shortlist import SPECIAL_IDS, Shortlist, build_shortlist

SOURCES = ["ba de gi ko", "lu ma ne", "pi ra se tu ba", "ko"]


def test_table_prefers_a_specific_translation_over_a_frequent_word() -> None:
    # Target 30 is in every sentence; source 11 goes with target 21 and source 12 with 22.
    pairs = [([11, 5], [21, 30]), ([11, 6], [21, 30]), ([12, 5], [22, 30]), ([12, 6], [30])]
    pairs.append(([13], [30]))
    lists = build_shortlist(pairs, src_vocab=40, tgt_vocab=40, frequent=1, per_source=2)
    # Dice 2*2/(2+2) = 1 for (11, 21) before 2*2/(2+5) for (11, 30), though 30 co-occurs as often.
    assert lists.by_source[11].tolist() == [21, 30]
    # (12, 22): 2*1/(2+1) = 0.67, more than (12, 30): 2*2/(2+5) = 0.57 with twice the count.
    assert lists.by_source[12].tolist() == [22, 30]
    assert lists.by_source[7].tolist() == [-1, -1]  # never seen
    assert lists.frequent.tolist() == [*range(SPECIAL_IDS), 30]


def test_each_sentence_keeps_its_own_candidates_first_with_special_ids_in_place() -> None:
    by_source = torch.full((10, 2), -1, dtype=torch.long)
    by_source[5] = torch.tensor([9, 7])
    by_source[6] = torch.tensor([7, -1])
    lists = Shortlist(torch.tensor([0, 1, 2, 3, 8]), by_source)
    ids, columns, foreign = lists.candidates(torch.tensor([[5, 6, 0], [6, 6, 6], [4, 0, 0]]))
    assert ids.tolist() == [0, 1, 2, 3, 7, 8, 9]  # the union, ascending
    per_sentence = ids[columns].tolist()
    assert columns.size(1) == 7  # the first sentence has every id of the union
    assert per_sentence[0] == [0, 1, 2, 3, 7, 8, 9]
    assert per_sentence[1][:6] == [0, 1, 2, 3, 7, 8]  # its own, then filler from the union
    assert per_sentence[2][:5] == [0, 1, 2, 3, 8]  # source 4 has no entry: the frequent ids
    assert set(per_sentence[1][6:]) | set(per_sentence[2][5:]) <= {7, 9}
    assert all(row[:SPECIAL_IDS] == list(range(SPECIAL_IDS)) for row in per_sentence)
    assert foreign is not None  # the filler is marked, for search to score -inf
    assert foreign.tolist() == [[False] * 7, [False] * 6 + [True], [False] * 5 + [True] * 2]
    (alone,) = [lists.candidates(torch.tensor([[6, 6, 6]]))]
    assert alone.foreign is None  # nothing to pad in a batch of one


def sentence_shortlist(tokenizer: Tokenizer, vocab: int) -> Shortlist:
    """Each source word brings its own target ids, so sentences' candidates differ."""
    by_source = torch.full((tokenizer.src_vocab_size, 4), -1, dtype=torch.long)
    for word in {w for s in SOURCES for w in s.split()}:
        (first, *_) = tokenizer.encode_source(word)
        by_source[first] = torch.randint(SPECIAL_IDS, vocab, (4,))
    return Shortlist(torch.arange(SPECIAL_IDS + 4), by_source)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_sentence_translates_the_same_alone_and_beside_others(
    tiny_bundle: Path, tokenizer: Tokenizer, beam: int
) -> None:
    """Padding columns are other sentences' candidates: scored, they changed translations
    with the batch (a service's concurrent requests got other words than one by one)."""
    torch.manual_seed(0)
    bundle = load_bundle(tiny_bundle)
    bundle.shortlist = sentence_shortlist(tokenizer, bundle.config.tgt_vocab_size)
    translator = Translator(bundle)  # float: int8 quantizes activations per batch
    options = DecodeOptions(beam_size=beam, n_best=beam, max_len_b=30)
    together = translator.translate(SOURCES, options)
    for source, in_batch in zip(SOURCES, together, strict=True):
        (alone,) = translator.translate([source], options)
        assert [c.token_ids for c in in_batch.candidates] == [c.token_ids for c in alone.candidates]
        assert [c.score for c in in_batch.candidates] == pytest.approx(
            [c.score for c in alone.candidates], abs=1e-5
        )


@pytest.mark.parametrize("beam", [1, 3])
def test_compiled_search_keeps_each_sentence_to_its_own_candidates(
    tiny_bundle: Path, tokenizer: Tokenizer, beam: int
) -> None:
    torch.manual_seed(0)
    bundle = load_bundle(tiny_bundle)
    vocab = bundle.config.tgt_vocab_size
    lists = sentence_shortlist(tokenizer, vocab)
    bundle.shortlist = lists
    translator = Translator(bundle, quantize="int8")
    assert translator.compiled_search is not None
    batch = [tokenizer.encode_source(s) for s in SOURCES]
    options = DecodeOptions(beam_size=beam, n_best=beam, max_len_b=30)
    for ids, hyps in zip(batch, translator.decode_ids(batch, options), strict=True):
        own = set(lists.candidates(torch.tensor([ids])).ids.tolist())
        assert all(set(h.token_ids) <= own for h in hyps), "a batch-mate's candidate"


def full_shortlist(vocab: int) -> Shortlist:
    """Every target id: decoding must equal decoding without a shortlist, bit for bit."""
    return Shortlist(torch.arange(vocab), torch.full((vocab, 1), -1, dtype=torch.long))


@pytest.mark.parametrize("quantize", ["none", "int8"])
@pytest.mark.parametrize("beam", [1, 3])
def test_shortlist_of_every_id_decodes_exactly_as_the_full_vocabulary(
    tiny_bundle: Path, quantize: str, beam: int
) -> None:
    bundle = load_bundle(tiny_bundle)
    plain = Translator(bundle, quantize=quantize)
    bundle.shortlist = full_shortlist(bundle.config.tgt_vocab_size)
    listed = Translator(bundle, quantize=quantize)
    options = DecodeOptions(beam_size=beam, n_best=beam)
    for want, got in zip(
        plain.translate(SOURCES, options), listed.translate(SOURCES, options), strict=True
    ):
        assert [c.token_ids for c in got.candidates] == [c.token_ids for c in want.candidates]
        assert [c.score for c in got.candidates] == pytest.approx(
            [c.score for c in want.candidates], abs=1e-5
        )


@pytest.mark.parametrize("quantize", ["none", "int8"])
@pytest.mark.parametrize("beam", [1, 3])
def test_search_only_emits_shortlisted_ids(
    tiny_bundle: Path, tokenizer: Tokenizer, quantize: str, beam: int
) -> None:
    bundle = load_bundle(tiny_bundle)
    vocab = bundle.config.tgt_vocab_size
    allowed = {*range(SPECIAL_IDS), 10, 11, 12, 20}
    by_source = torch.full((vocab, 1), -1, dtype=torch.long)
    by_source[tokenizer.encode_source(SOURCES[0])[0]] = 20  # only the first sentence's
    bundle.shortlist = Shortlist(torch.tensor(sorted(allowed - {20})), by_source)
    translator = Translator(bundle, quantize=quantize)
    # Long max length, so every sentence runs many steps over the shortlist.
    options = DecodeOptions(beam_size=beam, max_len_b=30)
    for ids in ([tokenizer.encode_source(s)] for s in SOURCES):
        hyp = translator.decode_ids(ids, options)[0][0]
        assert set(hyp.token_ids) <= allowed
        assert hyp.score <= 0
    batch = [tokenizer.encode_source(s) for s in SOURCES]
    emitted = {t for hyps in translator.decode_ids(batch, options) for t in hyps[0].token_ids}
    assert emitted <= allowed and EOS_ID not in emitted


def test_bundle_round_trip_keeps_the_shortlist(
    tiny_model: Seq2Seq, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    vocab = tokenizer.tgt_vocab_size
    lists = Shortlist(torch.arange(6), torch.randint(-1, vocab, (vocab, 3)))
    out = save_bundle(tmp_path / "b", tiny_model, tokenizer, shortlist=lists)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "shortlist.safetensors" in manifest["sha256"]
    loaded = load_bundle(out).shortlist
    assert loaded is not None
    assert torch.equal(loaded.frequent, lists.frequent)
    assert torch.equal(loaded.by_source, lists.by_source)
    assert load_bundle(save_bundle(tmp_path / "c", tiny_model, tokenizer)).shortlist is None


def test_shortlist_not_in_the_manifest_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    save_file(
        {"frequent": torch.arange(4), "by_source": torch.zeros(2, 1)},
        copy / "shortlist.safetensors",
    )
    with pytest.raises(BundleError, match=r"shortlist.safetensors.*not listed in manifest"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("frequent", "rows", "message"),
    [
        (torch.arange(4), 3, r"by_source has shape \(3, 1\)"),
        (torch.tensor([0, 1, 2, 3, 10_000]), None, "out of range"),
        (torch.tensor([0, 1, 3]), None, "special ids"),
    ],
)
def test_shortlist_of_another_vocabulary_is_refused(
    tiny_model: Seq2Seq,
    tokenizer: Tokenizer,
    tmp_path: Path,
    frequent: torch.Tensor,
    rows: int | None,
    message: str,
) -> None:
    by_source = torch.zeros(rows or tokenizer.src_vocab_size, 1, dtype=torch.long)
    out = save_bundle(
        tmp_path / "b", tiny_model, tokenizer, shortlist=Shortlist(frequent, by_source)
    )
    with pytest.raises(BundleError, match=message):
        load_bundle(out)


def test_translator_says_whether_it_uses_the_shortlist(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    bundle.shortlist = full_shortlist(bundle.config.tgt_vocab_size)
    bundle.metadata["shortlist"] = {"frequent": 100, "per_source": 20}
    assert Translator(bundle).shortlist_info == {"frequent": 100, "per_source": 20}
    assert Translator(bundle, shortlist=False).shortlist_info is None
