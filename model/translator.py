"""Translator = tokenizer + model + search: text in, text out.

It sorts sentences by length so batches carry little padding, batches by a source-token budget,
restores the caller's order, and isolates failures so one bad sentence never fails the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
from torch import Tensor, nn

from model.beam import beam_search
from model.bundle import Bundle, load_bundle, model_id
from model.compiled_search import CompiledSearch, script_encoder
from model.decoder import EncoderOutput
from model.errors import DeviceError, InputTooLong, ModelError, TranslationFailed
from model.lanes import LaneSource, compile_lane_encoder, merge_lanes, split_lanes
from model.placement import allowed_cores, quantize_int8, resolve_device, resolve_quantize
from model.search import DecodeOptions, Hypothesis, SpaceRule, greedy_search
from model.seq2seq import Seq2Seq
from model.shortlist import BatchCandidates, OutputLayer, OutputVocabulary
from model.tokenizer import PAD_ID

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One translation of one input."""

    text: str
    score: float  # length-normalized log-probability (see DecodeOptions.length_penalty)
    token_ids: tuple[int, ...]  # target ids, EOS left out
    # The pieces and attention label each other, so both come only with return_attention
    # (None otherwise): spelling out every piece costs a server's batch of 32 about 0.15 ms.
    tokens: tuple[str, ...] | None = None  # target pieces
    attention: list[list[float]] | None = None  # (target pieces, source pieces incl. EOS)


@dataclass(frozen=True)
class Result:
    """The translations of one input, best first, or the error that stopped it.

    ``candidates`` holds up to ``n_best`` distinct texts: two hypotheses that differ only in
    their segmentation (``▁Hund`` against ``▁H`` ``und``) read the same, so only the better
    one is kept, and a list can be shorter than ``n_best``."""

    candidates: tuple[Candidate, ...]
    source_tokens: tuple[str, ...] | None = None  # pieces incl. EOS, with return_attention
    error: ModelError | None = None

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else float("-inf")


def load_on_cores(
    path: str | Path, cores: int | None = None, lanes: int | None = None, **kwargs: Any
) -> Translator:
    """``Translator.from_dir(path, **kwargs)`` set up to use ``cores`` CPU cores (default: those
    this process may run on): in as many lanes (or ``lanes``), one intra-op thread each, where
    the model has lanes (``model.lanes``), and on ``cores`` intra-op threads where it has not.

    Sets torch's intra-op threads for the whole process (``torch.set_num_threads``).
    """
    cores = cores or allowed_cores()
    translator = Translator.from_dir(path, lanes=lanes or cores, **kwargs)
    use_cores(translator, cores)
    return translator


def use_cores(translator: Translator, cores: int) -> None:
    """torch's intra-op threads for ``translator``: one per lane where it has lanes (GNU OpenMP
    keeps a team per calling thread: ``model.lanes``), ``cores`` where it has not."""
    torch.set_num_threads(1 if translator.lanes > 1 else cores)


def padded_tokens(longest: int, sentences: int, beam_size: int) -> int:
    """A batch's cost against a token budget: every beam row padded to the longest source."""
    return longest * sentences * beam_size


def split_whitespace(text: str) -> tuple[str, str, str]:
    """(leading whitespace, core, trailing whitespace): the model sees only the core."""
    core = text.strip()
    if not core:
        return text, "", ""
    start = text.index(core)
    return text[:start], core, text[start + len(core) :]


class ModelView:
    """A bundle's identity, tokenizer and settings as a Translator would run it, without the
    network: what a server needs of a model that other processes run.

    Args: as ``Translator``'s.
    """

    def __init__(
        self, bundle: Bundle, device: str = "cpu", quantize: str = "none", shortlist: bool = True
    ) -> None:
        self.device = resolve_device(device)
        self.quantize = resolve_quantize(quantize, self.device)
        self.bundle = bundle
        self.tokenizer = bundle.tokenizer
        self.config = bundle.config
        self.shortlist = bundle.shortlist if shortlist else None  # its tables stay on the CPU

    @classmethod
    def from_dir(cls, path: str | Path, **kwargs: Any) -> Self:
        return cls(load_bundle(path), **kwargs)

    @property
    def model_id(self) -> str:
        return model_id(self.bundle.metadata, self.bundle.path)

    @property
    def source_lang(self) -> str:
        return str(self.bundle.metadata.get("source_lang", "src"))

    @property
    def target_lang(self) -> str:
        return str(self.bundle.metadata.get("target_lang", "tgt"))

    @property
    def metadata(self) -> dict[str, Any]:
        return self.bundle.metadata

    @property
    def checksum(self) -> str:
        return self.bundle.checksum

    @property
    def shortlist_info(self) -> dict[str, Any] | None:
        """How the shortlist in use was built (bundle metadata); None: the whole vocabulary."""
        if self.shortlist is None:
            return None
        return dict(self.metadata.get("shortlist") or {})

    def encode(self, text: str) -> list[int]:
        """The source ids the model sees for ``text`` (its words, not the whitespace around
        them), EOS included: what ``Translator.translate`` takes as ``source_ids``."""
        return self.tokenizer.encode_source(text.strip())

    def count_tokens(self, text: str) -> int:
        """Source pieces the model would see for ``text``, EOS included."""
        return len(self.encode(text))


class Translator(ModelView):
    """Translate lists of sentences with a loaded bundle.

    Args:
        bundle: a loaded model bundle.
        device: "cpu", "cuda" or "auto".
        quantize: "none", "int8" (dynamic quantization, CPU only) or "auto" (int8 on CPU);
            ``self.quantize`` says which was chosen.
        batch_tokens: budget of padded source tokens per batch, counted once per hypothesis
            row: beam search with K beams fits K times fewer sentences, so a batch's memory
            (logits, states, histories) stays about the same whatever the beam size.
        max_input_tokens: longer sentences fail alone with ``InputTooLong``.
        shortlist: score only the bundle's shortlist of likely target tokens for each batch
            (when the bundle has one; see ``model.shortlist``), not the whole vocabulary.
        lanes: cut each batch into this many parts computed at once, one core each
            (``model.lanes``; run with ``torch.set_num_threads(1)``). Only the compiled int8
            CPU search has lanes; ``self.lanes`` says how many this model got.
    """

    def __init__(
        self,
        bundle: Bundle,
        device: str = "cpu",
        quantize: str = "none",
        batch_tokens: int = 4096,
        max_input_tokens: int = 256,
        shortlist: bool = True,
        lanes: int = 1,
    ) -> None:
        super().__init__(bundle, device, quantize, shortlist)
        self.batch_tokens = batch_tokens
        self.max_input_tokens = max_input_tokens
        model: nn.Module = bundle.build_model().eval()
        if self.quantize == "int8":
            self.model = quantize_int8(model)
        else:
            self.model = model.to(self.device)
            self.model.decoder.prepare_search()  # type: ignore[operator,union-attr]
        pieces = self.tokenizer.target_pieces(range(self.tokenizer.tgt_vocab_size))
        self.space_rule = SpaceRule.for_pieces(pieces, self.device)
        # int8 on the CPU: the search loops compiled (model/compiled_search.py).
        self.compiled_search = CompiledSearch.for_model(
            self.model,  # type: ignore[arg-type]
            self.space_rule,
        )
        if self.compiled_search is not None:  # and the encoder with them
            # Inference only: TorchScript must not plan for autograd when called outside
            # inference mode (its plan would then fail on inference tensors).
            self.model.requires_grad_(False)
            self.model.encoder = script_encoder(self.model.encoder)  # type: ignore[arg-type]
        self.output_layer = (  # read once, only where a shortlist will restrict it
            OutputLayer(self.model.decoder.generator)  # type: ignore[union-attr,arg-type]
            if self.shortlist is not None
            else None
        )
        self.lane_encoder = (
            compile_lane_encoder(
                self.model.encoder,
                self.compiled_search.key_proj,
                None if self.output_layer is None else self.output_layer.int8_weights,
            )
            if lanes > 1
            and self.compiled_search is not None
            and isinstance(self.model.encoder, torch.jit.ScriptModule)
            else None
        )
        self.lanes = lanes if self.lane_encoder is not None else 1
        self.lane_encoder_lock = threading.Lock()  # a call and its take, one thread at a time

    def translate(
        self,
        texts: Sequence[str],
        options: DecodeOptions | None = None,
        source_ids: Sequence[list[int]] | None = None,
    ) -> list[Result]:
        """Translate ``texts``; results come back in the same order, one per input.

        ``source_ids``: each text's ``encode(text)``, where the caller has them already (a
        server counts each sentence's tokens before it queues it), so that the batch does not
        wait for the texts to be encoded again.
        """
        options = options or DecodeOptions()
        if source_ids is not None and len(source_ids) != len(texts):
            raise ValueError(f"{len(source_ids)} source_ids for {len(texts)} texts")
        results: list[Result | None] = [None] * len(texts)
        parts = [split_whitespace(t) for t in texts]
        with_text = [i for i, (_, core, _) in enumerate(parts) if core]
        for i in set(range(len(texts))).difference(with_text):
            results[i] = Result((Candidate(text="", score=0.0, token_ids=()),))
        if source_ids is None:
            encoded = self.tokenizer.encode_sources([parts[i][1] for i in with_text])
        else:
            encoded = [source_ids[i] for i in with_text]
        pending: list[tuple[int, list[int]]] = []
        for i, ids in zip(with_text, encoded, strict=True):
            if len(ids) > self.max_input_tokens:
                results[i] = Result((), error=InputTooLong(len(ids), self.max_input_tokens, i))
            else:
                pending.append((i, ids))
        pending.sort(key=lambda item: len(item[1]))
        for batch in self._batches(pending, rows_per_item=options.beam_size):
            for (i, ids), hyps in zip(batch, self._decode_isolated(batch, options), strict=True):
                results[i] = self._result(ids, hyps, parts[i], options.return_attention)
        return [r for r in results if r is not None]

    def _batches(
        self, items: list[tuple[int, list[int]]], rows_per_item: int = 1
    ) -> list[list[tuple[int, list[int]]]]:
        """Consecutive runs of length-sorted items whose padded size fits ``batch_tokens``.

        Items arrive shortest first, so the newest item sets the batch's padded width; each
        item counts ``rows_per_item`` times (its beam).
        """
        batches: list[list[tuple[int, list[int]]]] = [[]]
        for item in items:
            cost = padded_tokens(len(item[1]), len(batches[-1]) + 1, rows_per_item)
            if batches[-1] and cost > self.batch_tokens:
                batches.append([])
            batches[-1].append(item)
        return [b for b in batches if b]

    def _decode_isolated(
        self, batch: list[tuple[int, list[int]]], options: DecodeOptions
    ) -> list[list[Hypothesis] | ModelError]:
        """Decode a batch; if it fails, retry sentence by sentence so only the culprit fails."""
        try:
            return list(self.decode_ids([ids for _, ids in batch], options))
        except DeviceError:
            raise
        except Exception as err:  # noqa: BLE001 - isolate the failing sentence below
            if len(batch) == 1:
                log.exception("translation failed")
                return [TranslationFailed(f"translation failed: {type(err).__name__}: {err}")]
        return [h for item in batch for h in self._decode_isolated([item], options)]

    @torch.inference_mode()
    def decode_ids(
        self, batch_ids: list[list[int]], options: DecodeOptions
    ) -> list[list[Hypothesis]]:
        """Search over already-encoded source ids (each ending in EOS)."""
        lanes = split_lanes(batch_ids, 1 if options.return_attention else self.lanes)
        if len(lanes) > 1:
            return merge_lanes(self._decode_lanes(lanes, options))
        src, lens, candidates = self._source(batch_ids)
        vocab = None
        if candidates is not None and self.output_layer is not None:
            vocab = self.output_layer.restrict(candidates)
        model: Seq2Seq = self.model  # type: ignore[assignment]
        try:
            enc = model.encode(src, lens.to(self.device), vocab)
            if self.compiled_search is not None and not options.return_attention:
                return self.compiled_search.search(enc, lens, options)
            decode = greedy_search if options.beam_size == 1 else beam_search
            return decode(model, enc, lens.to(self.device), options, self.space_rule)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as err:
            if self.device.type == "cuda" and "CUDA" in str(err):
                raise DeviceError(f"CUDA failed: {err}") from err
            raise

    def _decode_lanes(
        self, lanes: list[list[list[int]]], options: DecodeOptions
    ) -> list[list[list[Hypothesis]]]:
        """Each lane's hypotheses, the lanes encoded and searched at once (``model.lanes``)."""
        assert self.lane_encoder is not None and self.compiled_search is not None
        inputs = [self._source(ids) for ids in lanes]
        lengths = [lens for _, lens, _ in inputs]
        with self.lane_encoder_lock:
            self.lane_encoder(
                [src for src, _, _ in inputs],
                lengths,
                [None if candidates is None else candidates.ids for _, _, candidates in inputs],
            )
            encoded = [LaneSource(*fields) for fields in self.lane_encoder.take()]
        encs = [
            EncoderOutput(
                lane.memory,
                lane.keys,
                src.ne(PAD_ID),
                lane.final_h,
                lane.final_c,
                None if candidates is None else OutputVocabulary.int8(candidates, lane.output),
            )
            for (src, _, candidates), lane in zip(inputs, encoded, strict=True)
        ]
        return self.compiled_search.search_lanes(encs, lengths, options)

    def _source(self, batch_ids: list[list[int]]) -> tuple[Tensor, Tensor, BatchCandidates | None]:
        """A batch's padded source ids (B, S) on the model's device, its lengths (B,) on the CPU,
        and its shortlist's candidates (None: the whole vocabulary)."""
        # One tensor from padded lists, not a copy per row: every torch call releases the GIL,
        # and in a server each one may wait for the event loop to hand it back.
        widths = [len(ids) for ids in batch_ids]
        longest = max(widths)
        lens = torch.tensor(widths)
        src = torch.tensor([ids + [PAD_ID] * (longest - len(ids)) for ids in batch_ids])
        src = src.to(self.device)
        candidates = None if self.shortlist is None else self.shortlist.candidates(src)
        return src, lens, candidates

    def _result(
        self,
        ids: list[int],
        hyps: list[Hypothesis] | ModelError,
        whitespace: tuple[str, str, str],
        with_pieces: bool,
    ) -> Result:
        tokenizer = self.tokenizer
        source_tokens = tuple(tokenizer.source_pieces(ids)) if with_pieces else None
        if isinstance(hyps, ModelError):
            return Result((), source_tokens, error=hyps)
        lead, _, trail = whitespace
        candidates: dict[str, Candidate] = {}
        for h in hyps:  # best first; a string spelled by two segmentations is kept once, best
            text = lead + tokenizer.decode_target(h.token_ids) + trail
            if text not in candidates:
                candidates[text] = Candidate(
                    text=text,
                    score=h.score,
                    token_ids=tuple(h.token_ids),
                    tokens=tuple(tokenizer.target_pieces(h.token_ids)) if with_pieces else None,
                    attention=h.attention,
                )
        return Result(tuple(candidates.values()), source_tokens)
