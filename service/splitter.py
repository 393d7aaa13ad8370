"""Rule-based sentence splitting that gives back the exact original layout when rejoined.

A text is cut into sentences at whitespace runs only, so nothing but whitespace is ever moved
out of a sentence. A whitespace run is a boundary when

1. it contains a line break (any of `str.splitlines`' separators), or
2. it follows sentence-final punctuation (`.`, `!`, `?`, `…`, optionally followed by closing
   quotes or brackets) and precedes an uppercase letter, a digit, or an opening quote or
   bracket, unless the word before it is a known abbreviation (`Dr.`, `e.g.`) or a single
   letter (an initial, as in `J. Smith`).

Leading and trailing whitespace become the first and last separators, so every sentence is
non-empty and stripped, and `join(split(text), split(text).sentences) == text` for any text.

A sentence still too long for the model (NMT_MAX_INPUT_TOKENS) is cut further by `fit`:
in two at the whitespace run nearest its middle, or, inside one very long word, at the middle
character, until every piece fits. The cuts become separators too, so the layout still
survives; the translation of such a sentence is poorer, but it does not fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_WHITESPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*$")
_ENDERS = frozenset(".!?\u2026\"'\u201d\u2019\u00bb)]")  # last character of _SENTENCE_END
# Where a boundary could be: whitespace after a sentence ender, or a line break.
_MAY_END = re.compile(
    f"[{re.escape(''.join(sorted(_ENDERS)))}]\\s|[{re.escape(''.join(sorted(_LINE_BREAKS)))}]"
)
_OPENERS = frozenset("\"'\u201c\u2018\u201e\u00ab([\u00bf\u00a1")
# Words before a full stop that usually do not end a sentence (English and German), lowercased.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "nr", "fig", "cf", "approx"}
    | {"dept", "e.g", "i.e", "z.b", "bzw", "ca", "evtl", "ggf", "u.a"}
)


@dataclass(frozen=True)
class Split:
    """A text as sentences and the whitespace around them.

    `separators` has one more item than `sentences`: `separators[i]` comes before
    `sentences[i]`, and the last one ends the text. A text with no sentence (empty or
    whitespace only) is a single separator.
    """

    sentences: list[str]
    separators: list[str]


def split(text: str) -> Split:
    """Cut `text` into sentences; see the module docstring for the rule."""
    if text and not (text[0].isspace() or text[-1].isspace() or _MAY_END.search(text)):
        return Split([text], ["", ""])  # most requests: one sentence, no boundary to test
    return _split_at_boundaries(text)


def _split_at_boundaries(text: str) -> Split:
    sentences: list[str] = []
    separators = [""]
    pos = 0  # where the current sentence starts
    for match in _WHITESPACE.finditer(text):
        if match.start() == 0:  # leading whitespace
            separators[0] = match.group()
        elif match.end() == len(text) or _is_boundary(text, match.start(), match.end()):
            sentences.append(text[pos : match.start()])
            separators.append(match.group())
        else:
            continue
        pos = match.end()
    if pos < len(text):
        sentences.append(text[pos:])
        separators.append("")
    return Split(sentences, separators)


def join(parts: Split, sentences: Sequence[str]) -> str:
    """Put `sentences` (e.g. translations of `parts.sentences`) back into the original layout."""
    if len(sentences) != len(parts.sentences):
        raise ValueError(f"expected {len(parts.sentences)} sentences, got {len(sentences)}")
    out = [parts.separators[0]]
    for sentence, separator in zip(sentences, parts.separators[1:], strict=True):
        out += [sentence, separator]
    return "".join(out)


def fit(parts: Split, fits: Callable[[str], bool]) -> Split:
    """`parts` with every sentence that `fits` rejects cut into pieces it accepts."""
    sentences: list[str] = []
    separators = [parts.separators[0]]
    for sentence, after in zip(parts.sentences, parts.separators[1:], strict=True):
        pieces = _cut(sentence, fits)
        sentences += pieces.sentences
        separators += [*pieces.separators[1:-1], after]
    return Split(sentences, separators)


def _cut(sentence: str, fits: Callable[[str], bool]) -> Split:
    """Halve `sentence` (at whitespace if it has any) until every piece fits."""
    if len(sentence) < 2 or fits(sentence):
        return Split([sentence], ["", ""])
    middle = len(sentence) // 2
    runs = [m.span() for m in _WHITESPACE.finditer(sentence)]
    start, end = min(runs, key=lambda span: abs(span[0] - middle)) if runs else (middle, middle)
    left, right = _cut(sentence[:start], fits), _cut(sentence[end:], fits)
    return Split(
        left.sentences + right.sentences,
        [*left.separators[:-1], sentence[start:end], *right.separators[1:]],
    )


def _is_boundary(text: str, ws_start: int, ws_end: int) -> bool:
    """Whether the whitespace run text[ws_start:ws_end] ends a sentence."""
    if not _LINE_BREAKS.isdisjoint(text[ws_start:ws_end]):
        return True
    if text[ws_start - 1] not in _ENDERS:  # most runs follow a plain word: skip the regex
        return False
    word_start = ws_start
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:ws_start]
    if not _SENTENCE_END.search(word):
        return False
    nxt = text[ws_end]
    if not (nxt.isupper() or nxt.isdigit() or nxt in _OPENERS):
        return False
    if word.endswith("."):
        stem = word.rstrip(".").lower()
        if len(stem) == 1 and stem.isalpha():  # an initial
            return False
        if stem in _ABBREVIATIONS:
            return False
    return True
