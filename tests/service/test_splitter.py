"""Sentence splitting: the layout survives exactly; the rule cuts where documented."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.splitter import _split_at_boundaries, fit, join, split

# Text built from sentence-ish pieces and every kind of whitespace, plus arbitrary text.
_pieces = st.sampled_from(
    ["Hello.", "world", "Dr.", "J.", "e.g.", "3", "ok!", "Why?", '"Yes."', "…", "Ünïcode.", "😀"]
)
_spaces = st.sampled_from([" ", "  ", "\n", "\r\n", "\t", " \n ", "\u2028", "\u00a0", "\x0b"])
layout_text = st.lists(st.one_of(_pieces, _spaces)).map("".join)
any_text = st.text()

# No per-example deadline: the shared CI machine can be slow; these are pure functions.
relaxed = settings(deadline=None)


@relaxed
@given(st.one_of(layout_text, any_text))
def test_join_of_pieces_and_separators_is_the_input(text: str) -> None:
    parts = split(text)
    assert len(parts.separators) == len(parts.sentences) + 1
    assert join(parts, parts.sentences) == text


@relaxed
@given(st.one_of(layout_text, any_text, st.sampled_from(["Hi. You", "a\x1cb", "x.)\u2029y"])))
def test_one_sentence_shortcut_agrees_with_the_rule(text: str) -> None:
    assert split(text) == _split_at_boundaries(text)


@relaxed
@given(st.one_of(layout_text, any_text))
def test_sentences_are_stripped_non_empty_single_lines(text: str) -> None:
    for sentence in split(text).sentences:
        assert sentence and sentence == sentence.strip()
        assert len(sentence.splitlines()) == 1


@relaxed
@given(st.one_of(layout_text, any_text))
def test_separators_are_whitespace(text: str) -> None:
    assert all(sep.strip() == "" for sep in split(text).separators)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("", []),
        ("   \n ", []),
        ("One. Two! Three? four", ["One.", "Two!", "Three? four"]),
        ("Line one\nline two", ["Line one", "line two"]),
        ("Dr. Who met J. Doe. Then he left.", ["Dr. Who met J. Doe.", "Then he left."]),
        ('He said "Go." "Now?" 3 dogs ran.', ['He said "Go."', '"Now?"', "3 dogs ran."]),
        ("e.g. This stays, i.e. That too.", ["e.g. This stays, i.e. That too."]),
        ("Done (really.) Next.", ["Done (really.)", "Next."]),
        ("Wait… Then go.", ["Wait…", "Then go."]),
        ("3.5 m long. 4 m wide.", ["3.5 m long.", "4 m wide."]),
    ],
)
def test_documented_rule(text: str, sentences: list[str]) -> None:
    assert split(text).sentences == sentences


def test_translations_go_back_into_the_original_layout() -> None:
    text = "  First one.  Second one!\r\n\n\tThird\n"
    parts = split(text)
    assert parts.separators == ["  ", "  ", "\r\n\n\t", "\n"]
    assert join(parts, ["A", "B", "C"]) == "  A  B\r\n\n\tC\n"


def test_join_wants_one_translation_per_sentence() -> None:
    with pytest.raises(ValueError, match="expected 2 sentences, got 1"):
        join(split("One. Two."), ["x"])


@relaxed
@given(st.one_of(layout_text, any_text), st.integers(min_value=1, max_value=6))
def test_fit_cuts_long_sentences_and_keeps_the_layout(text: str, limit: int) -> None:
    def fits(piece: str) -> bool:
        return len(piece) <= limit

    parts = fit(split(text), fits)
    assert join(parts, parts.sentences) == text
    assert all(fits(piece) or len(piece) == 1 for piece in parts.sentences)
    assert all(piece and piece == piece.strip() for piece in parts.sentences)


def test_fit_prefers_whitespace_and_keeps_short_sentences() -> None:
    parts = fit(split("Tiny. one two three four"), lambda s: len(s.split()) <= 2)
    assert parts.sentences == ["Tiny.", "one two", "three four"]
    assert parts.separators == ["", " ", " ", ""]
