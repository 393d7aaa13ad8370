"""Lanes (``model/lanes.py``): a batch cut into parts computed at once gives every sentence
exactly what translating its part alone gives it, in the caller's order."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from model import DecodeOptions, Translator, load_bundle, load_on_cores, save_bundle
from model.lanes import compile_lane_encoder, merge_lanes, split_lanes
from model.search import Hypothesis
from model.seq2seq import Seq2Seq
from model.tokenizer import Tokenizer

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "en-de-multi30k"
SOURCES = ["ba de gi ko", "lu ma ne", "pi ra se tu ba ko lu", "ko", "ne ne ne ma ra", "gi gi"]
ENGLISH = "a man woman dog two young red shirt is riding playing in on the with of street ball"


@given(st.lists(st.integers(), max_size=40), st.integers(min_value=1, max_value=6))
def test_merge_undoes_split_and_lanes_differ_by_at_most_one(items: list[int], lanes: int) -> None:
    parts = split_lanes(items, lanes)
    assert len(parts) == max(1, min(lanes, len(items)))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert merge_lanes(parts) == items


def lane_by_lane(
    translator: Translator, batch: list[list[int]], lanes: int, options: DecodeOptions
) -> list[list[Hypothesis]]:
    """Each lane of ``batch`` decoded alone, as one batch, then put back in order (the
    property test above holds ``merge_lanes`` to undo ``split_lanes``)."""
    keep, translator.lanes = translator.lanes, 1
    try:
        return merge_lanes([translator.decode_ids(p, options) for p in split_lanes(batch, lanes)])
    finally:
        translator.lanes = keep


def tokens_and_scores(hyps: list[list[Hypothesis]]) -> list[list[tuple[list[int], float]]]:
    return [[(h.token_ids, h.score) for h in sentence] for sentence in hyps]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("lanes", [2, 3])
@pytest.mark.parametrize(
    "options",
    [DecodeOptions(beam_size=1), DecodeOptions(beam_size=3, n_best=2)],
    ids=["greedy", "beam3-nbest2"],
)
def test_lanes_give_what_each_lane_alone_gives(
    tiny_bundle: Path, lanes: int, options: DecodeOptions
) -> None:
    translator = Translator(load_bundle(tiny_bundle), quantize="int8", lanes=lanes)
    assert_lanes_match_lane_by_lane(translator, lanes, options)


@pytest.mark.usefixtures("one_thread")
def test_lanes_with_dot_attention_use_the_memory_as_keys(
    make_model: Callable[..., Seq2Seq], tokenizer: Tokenizer, tmp_path: Path
) -> None:
    """``dot`` attention has no key projection: a lane's keys are its memory."""
    bundle = save_bundle(tmp_path / "dot", make_model(attention="dot"), tokenizer)
    translator = Translator(load_bundle(bundle), quantize="int8", lanes=2)
    assert_lanes_match_lane_by_lane(translator, 2, DecodeOptions(beam_size=1))


def assert_lanes_match_lane_by_lane(
    translator: Translator, lanes: int, options: DecodeOptions
) -> None:
    assert translator.lanes == lanes
    batch = sorted(translator.tokenizer.encode_sources(SOURCES), key=len)
    with torch.inference_mode():
        got = translator.decode_ids(batch, options)
        want = lane_by_lane(translator, batch, lanes, options)
    assert tokens_and_scores(got) == tokens_and_scores(want)
    assert len({tuple(h[0].token_ids) for h in got}) > 1  # the sentences differ


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("beam", [1, 5])
def test_lanes_are_exact_with_the_shipped_model_and_its_shortlist(beam: int) -> None:
    """Real sizes, and a shortlist per lane: each lane restricts the output layer to its own
    sentences' candidates, as a batch of its own would."""
    translator = Translator(load_bundle(SHIPPED_MODEL), quantize="int8", lanes=2)
    assert translator.shortlist is not None
    rng, words = random.Random(1), ENGLISH.split()
    lines = [" ".join(rng.choices(words, k=rng.randint(2, 18))) + " ." for _ in range(32)]
    batch = sorted(translator.tokenizer.encode_sources(lines), key=len)
    options = DecodeOptions(beam_size=beam)
    with torch.inference_mode():
        got = translator.decode_ids(batch, options)
        want = lane_by_lane(translator, batch, 2, options)
    assert tokens_and_scores(got) == tokens_and_scores(want)


def test_only_models_with_compiled_search_get_lanes(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert Translator(bundle, quantize="none", lanes=2).lanes == 1
    assert Translator(bundle, quantize="int8", lanes=1).lanes == 1
    int8 = Translator(bundle, quantize="int8", lanes=2)
    assert int8.lanes == 2
    # Attention weights come from the Python loops, in one batch, with the lanes' tokens.
    options = DecodeOptions(beam_size=1)
    with_attention = int8.translate(SOURCES, DecodeOptions(beam_size=1, return_attention=True))
    assert all(r.candidates[0].attention is not None for r in with_attention)
    assert len(int8.translate(SOURCES, options)) == len(SOURCES)


def test_a_lane_encoder_torchscript_cannot_compile_means_no_lanes(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    translator = Translator(load_bundle(tiny_bundle), quantize="int8")

    def no_torchscript(fn: object) -> object:
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(torch.jit, "script", no_torchscript)
    assert compile_lane_encoder(translator.model.encoder, None, None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("quantize", "lanes", "threads"), [("int8", 2, 1), ("none", 1, 2)])
def test_load_on_cores_gives_lanes_one_thread_and_other_models_every_core(
    tiny_bundle: Path, quantize: str, lanes: int, threads: int
) -> None:
    before = torch.get_num_threads()
    try:
        translator = load_on_cores(tiny_bundle, cores=2, quantize=quantize)
        assert (translator.lanes, torch.get_num_threads()) == (lanes, threads)
    finally:
        torch.set_num_threads(before)


class Recording:
    """A compiled lane stage (``LaneEncoder``, ``LaneLoops``) that records what its calls
    return and, as soon as ``take`` returns, how many references each tensor it took has."""

    def __init__(self, stage: torch.jit.ScriptModule) -> None:
        self.stage = stage
        self.returned: list[object] = []
        self.references: list[int] = []

    def _call(self, name: str, *args: object) -> object:
        result = getattr(self.stage, name)(*args)
        self.returned.append(result)
        return result

    def __call__(self, *args: object) -> object:
        return self._call("forward", *args)

    def greedy(self, *args: object) -> object:
        return self._call("greedy", *args)

    def beam(self, *args: object) -> object:
        return self._call("beam", *args)

    def take(self) -> list[tuple[object, ...]]:
        taken = self.stage.take()
        tensors = [t for fields in taken for t in fields if isinstance(t, torch.Tensor)]
        self.references += [t._use_count() for t in tensors]
        return taken


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("beam_size", [1, 3])
def test_python_gets_only_tensors_of_its_own_from_the_lanes(
    tiny_bundle: Path, beam_size: int
) -> None:
    """A compiled call that waits for a forked lane finishes on an inter-op thread; were
    Python to get what it returns, that thread could release a Python object while the
    interpreter shuts down, which aborts the process (``model/lanes.py``). So the calls
    return nothing, and ``take`` hands over tensors that nothing else holds."""
    translator = Translator(load_bundle(tiny_bundle), quantize="int8", lanes=2)
    assert translator.lane_encoder is not None and translator.compiled_search is not None
    encoder = Recording(translator.lane_encoder)  # type: ignore[arg-type]
    loops = Recording(translator.compiled_search.loops)
    translator.lane_encoder, translator.compiled_search.loops = encoder, loops  # type: ignore[assignment]
    translator.translate(SOURCES, DecodeOptions(beam_size=beam_size))
    for stage in (encoder, loops):
        assert stage.returned == [None]
        assert stage.references and set(stage.references) == {1}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("beam_size", [1, 3])
def test_threads_sharing_a_translator_each_get_their_own_translations(
    tiny_bundle: Path, beam_size: int
) -> None:
    """A lane stage keeps its results until ``take``; two threads in between must not swap
    them."""
    translator = Translator(load_bundle(tiny_bundle), quantize="int8", lanes=2)
    options = DecodeOptions(beam_size=beam_size)
    inputs = [SOURCES[i:] + SOURCES[:i] for i in range(len(SOURCES))]
    alone = [[r.text for r in translator.translate(texts, options)] for texts in inputs]

    def translate_each(_: int) -> list[list[str]]:
        return [[r.text for r in translator.translate(texts, options)] for texts in inputs * 5]

    with ThreadPoolExecutor(2) as pool:
        for got in pool.map(translate_each, range(4)):
            assert got == alone * 5
