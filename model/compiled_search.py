"""Greedy and beam search through loops compiled with TorchScript, for int8 models on the CPU.

At the batch sizes a service forms (1-32 sentences) a search step is a few dozen small tensor
operations whose dispatch from Python costs more than their arithmetic. TorchScript runs the
same operations from C++, and releases the GIL while it does. The loops themselves are in
``model/search_loops.py``; ``CompiledSearch`` gives them a model's weights and a batch's
encoder output and turns what they return into hypotheses. Models they do not cover
(``CompiledSearch.for_model``) and requests for attention weights take the Python loops.
``bench/decode.py --service-batches`` times both.
"""

import logging
import threading
import warnings

import torch
from torch import Tensor, nn

from model.beam import Finished, beam_rows, finalize
from model.decoder import EncoderOutput
from model.search import DecodeOptions, Hypothesis, SpaceRule, to_hypothesis
from model.search_loops import Int8Decoder, SourceSide, compile_lane_loops, search_rules
from model.seq2seq import Seq2Seq
from model.step_kernels import int8_weights

log = logging.getLogger(__name__)


def script_encoder(encoder: nn.Module) -> nn.Module:
    """``encoder`` compiled with TorchScript, or ``encoder`` itself where that fails.

    The same kernels in the same order (identical outputs), run from C++: encoding a batch
    releases the GIL a few times instead of once per operation (~35 for the shipped model's
    packed bidirectional int8 LSTM). In a server each release can cost a wait for the event
    loop's thread to give the GIL back: a batch of 32 encoded in 7 ms alone took 127 ms beside a
    busy Python thread in eager mode and 23 ms compiled (bench/README.md, stop 21).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(encoder)
    except Exception:  # noqa: BLE001 - the eager encoder computes the same
        log.warning("encoder not compiled; running it eagerly", exc_info=True)
        return encoder


class CompiledSearch:
    """Greedy and beam search through the compiled loops, for one int8-prepared model."""

    def __init__(self, model: Seq2Seq, space: SpaceRule | None = None) -> None:
        decoder = model.decoder
        assert decoder.step_weights is not None and decoder.input_gates is not None
        recurrent, *upper_cells = decoder.step_weights
        self.model = model
        self.space = space  # what may follow the bare "▁" (SpaceRule); None: no rule
        self.weights = Int8Decoder(
            decoder.input_gates, recurrent, upper_cells, int8_weights(decoder.combine)
        )
        self.output = int8_weights(decoder.generator)
        self.bridge = int8_weights(model.bridge_h), int8_weights(model.bridge_c)
        attention = decoder.attention  # keys: the memory itself (dot) or its int8 projection
        self.key_proj = int8_weights(attention.key_proj) if attention.kind == "general" else None
        self.loops = compile_lane_loops()
        self.loops_lock = threading.Lock()  # a call and its take, one thread at a time

    @classmethod
    def for_model(cls, model: Seq2Seq, space: SpaceRule | None = None) -> "CompiledSearch | None":
        """The compiled loops when ``model`` has what they cover: int8 layers from
        ``quantize_int8`` (hence the CPU), no input feeding, ``dot``/``general`` attention."""
        decoder = model.decoder
        weights = decoder.step_weights
        covered = (
            weights is not None
            and decoder.input_gates is not None
            and all(isinstance(w, torch.ScriptObject) for w in weights)
            and (
                decoder.attention.kind == "dot"
                or (
                    decoder.attention.kind == "general"
                    and int8_weights(decoder.attention.key_proj) is not None
                )
            )
            and int8_weights(decoder.combine) is not None
            and int8_weights(decoder.generator) is not None
            and int8_weights(model.bridge_h) is not None
            and int8_weights(model.bridge_c) is not None
        )
        if not covered:
            return None
        try:
            return cls(model, space)
        except Exception:  # noqa: BLE001 - any failure to compile leaves the Python loops
            log.warning("search loops not compiled; using the Python loops", exc_info=True)
            return None

    def search(
        self, enc: EncoderOutput, src_lens: Tensor, options: DecodeOptions
    ) -> list[list[Hypothesis]]:
        """``greedy_search`` or ``beam_search`` (by ``options.beam_size``), without attention."""
        return self.search_lanes([enc], [src_lens], options)[0]

    def search_lanes(
        self, encs: list[EncoderOutput], src_lens: list[Tensor], options: DecodeOptions
    ) -> list[list[list[Hypothesis]]]:
        """``search`` for each lane of a batch, all at once (``model/lanes.py``)."""
        assert not options.return_attention
        sources = [source_side(enc) for enc in encs]
        outputs = [self.output if enc.vocab is None else enc.vocab.packed for enc in encs]
        limits = [options.max_lengths(lens) for lens in src_lens]
        if options.beam_size == 1:
            with self.loops_lock:
                self.loops.greedy(
                    self.weights, outputs, *self.bridge, [enc.final_h for enc in encs],
                    [enc.final_c for enc in encs], self.model.config.decoder_layers, sources,
                    limits, search_rules(options, self.space),
                )  # fmt: skip
                tables = self.loops.take()
            return [
                [
                    [to_hypothesis(ids, score, None, 0)]
                    for ids, score in zip(table.tolist(), scores.tolist(), strict=True)
                ]
                for table, scores in tables
            ]
        h0, c0 = [], []  # each lane's initial states, repeated for its beam rows
        for enc, lens in zip(encs, src_lens, strict=True):
            state = self.model.initial_state(enc)
            repeat = beam_rows(lens.size(0), options.beam_size, lens.device)
            h0.append(state.h.index_select(1, repeat))
            c0.append(state.c.index_select(1, repeat))
        with self.loops_lock:
            self.loops.beam(
                self.weights, outputs, h0, c0, sources, limits, search_rules(options, self.space)
            )
            finished = self.loops.take()
        return [
            finalize(Finished(scores, enc.target_ids(tokens), None), lens, options.n_best)
            for (scores, tokens), enc, lens in zip(finished, encs, src_lens, strict=True)
        ]


def source_side(enc: EncoderOutput) -> SourceSide:
    """What the compiled loops read of the encoder's output (and the batch's shortlist)."""
    vocab = enc.vocab
    return SourceSide(
        enc.keys,
        enc.memory,
        ~enc.mask.unsqueeze(1),
        None if vocab is None else vocab.columns,
        None if vocab is None else vocab.sentence_ids,
        None if vocab is None else vocab.foreign,
    )
