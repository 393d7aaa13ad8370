"""Greedy search's step loop as one TorchScript function, for int8 models on the CPU.

At the batch sizes a service forms (1-32 sentences) a greedy step is some 25 small tensor
operations whose dispatch from Python costs more than their arithmetic. TorchScript runs the
same operations from C++, and releases the GIL while it does, so an in-process server's HTTP
side keeps working during a batch. The loop is ``greedy_search`` with ``Decoder.step`` written
out for the layers ``prepare_search(int8=True)`` makes, so tokens and scores are the same
(tests/model/test_compiled_greedy.py); models it does not cover (``CompiledGreedy.for_model``)
and requests for attention take ``greedy_search``. ``bench/decode.py --service-batches`` times
both.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from model.decoder import EncoderOutput
from model.search import DecodeOptions, Hypothesis, collect_hypotheses
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID, EOS_ID

if TYPE_CHECKING:
    PackedLinear = Any
else:  # the type TorchScript needs for prepacked int8 weights
    PackedLinear = torch.classes.quantized.LinearPackedParamsBase


def greedy_steps(
    input_gates: Tensor,
    recurrent: PackedLinear,
    upper_cells: list[PackedLinear],
    combine: PackedLinear,
    output: PackedLinear,
    h0: Tensor,
    c0: Tensor,
    keys: Tensor,
    memory: Tensor,
    mask: Tensor,
    columns: Tensor | None,
    sentence_ids: Tensor | None,
    limits: Tensor,
    min_length: int,
    bos_id: int,
    eos_id: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The steps of greedy search; returns, per (sentence, step) it decoded, the sentence's row,
    the step, the token (a shortlist position when ``columns`` is given) and its log-prob.

    ``recurrent``: the first decoder layer's W_hh (its input side is ``input_gates``, one row
    per target id); ``upper_cells``: each further layer's [W_ih; W_hh]. h0, c0: (L, B, H).
    The token ids come as arguments: TorchScript does not read module constants.
    """
    batch = h0.size(1)
    active = torch.arange(batch)  # (A,) sentences still decoding
    prev = torch.full([batch], bos_id, dtype=torch.long)
    hs = [h0[layer] for layer in range(h0.size(0))]
    cs = [c0[layer] for layer in range(c0.size(0))]
    keys_t = keys.transpose(1, 2)  # (A, H, S)
    padding = ~mask.unsqueeze(1)  # (A, 1, S)
    rows: list[Tensor] = []
    steps: list[Tensor] = []
    tokens: list[Tensor] = []
    log_probs: list[Tensor] = []
    for t in range(int(limits.max())):
        ids = prev if sentence_ids is None else sentence_ids.gather(1, prev.unsqueeze(1)).squeeze(1)
        x = input_gates.index_select(0, ids)  # (A, 4H)
        for layer in range(len(hs)):
            if layer == 0:
                gates = torch.ops.quantized.linear_dynamic(hs[0], recurrent, True).add_(x)
            else:
                both = torch.cat([x, hs[layer]], dim=1)
                gates = torch.ops.quantized.linear_dynamic(both, upper_cells[layer - 1], True)
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
            cs[layer] = forget_gate.sigmoid() * cs[layer] + in_gate.sigmoid() * cell_gate.tanh()
            hs[layer] = out_gate.sigmoid() * cs[layer].tanh()
            x = hs[layer]
        scores = torch.bmm(x.unsqueeze(1), keys_t).masked_fill(padding, float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=-1), memory).squeeze(1)  # (A, H)
        both = torch.cat([context, x], dim=1)
        vec = torch.tanh(torch.ops.quantized.linear_dynamic(both, combine, True))
        logits = torch.ops.quantized.linear_dynamic(vec, output, True)
        if columns is not None:
            logits = logits.gather(1, columns)
        step_log_probs = torch.log_softmax(logits.float(), dim=-1)
        if t < min_length:
            step_log_probs[:, eos_id] = float("-inf")
        best, token = step_log_probs.max(dim=-1)
        rows.append(active)
        steps.append(torch.full_like(active, t))
        tokens.append(token)
        log_probs.append(best)
        ended = token.eq(eos_id) | limits.le(t + 1)
        if bool(ended.any()):
            live = (~ended).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            active, token, limits = active[live], token[live], limits[live]
            hs = [h.index_select(0, live) for h in hs]
            cs = [c.index_select(0, live) for c in cs]
            keys_t, memory = keys_t.index_select(0, live), memory.index_select(0, live)
            padding = padding.index_select(0, live)
            if columns is not None and sentence_ids is not None:
                columns = columns.index_select(0, live)
                sentence_ids = sentence_ids.index_select(0, live)
        prev = token
    return torch.cat(rows), torch.cat(steps), torch.cat(tokens), torch.cat(log_probs)


@functools.cache
def _scripted() -> Any:
    """Compiled on first use (about 0.2 s), not at import."""
    return torch.jit.script(greedy_steps)


def _packed(layer: Any) -> Any:
    """torch.ao dynamic int8 Linear -> its prepacked weights; None for anything else."""
    packed = getattr(layer, "_packed_params", None)
    return None if packed is None else packed._packed_params


class CompiledGreedy:
    """Greedy search through ``greedy_steps`` for one int8-prepared model."""

    def __init__(self, model: Seq2Seq) -> None:
        decoder = model.decoder
        assert decoder.step_weights is not None and decoder.input_gates is not None
        self.model = model
        self.input_gates = decoder.input_gates
        self.recurrent, *self.upper_cells = decoder.step_weights
        self.combine = _packed(decoder.combine)
        self.output = _packed(decoder.generator)
        self.steps = _scripted()

    @classmethod
    def for_model(cls, model: Seq2Seq) -> CompiledGreedy | None:
        """The compiled search when ``model`` has what it covers: int8 layers from
        ``quantize_int8`` (hence the CPU), no input feeding, ``dot``/``general`` attention."""
        decoder = model.decoder
        weights = decoder.step_weights
        covered = (
            weights is not None
            and decoder.input_gates is not None
            and all(isinstance(w, torch.ScriptObject) for w in weights)
            and decoder.attention.kind in ("dot", "general")
            and _packed(decoder.combine) is not None
            and _packed(decoder.generator) is not None
        )
        return cls(model) if covered else None

    def search(
        self, enc: EncoderOutput, src_lens: Tensor, options: DecodeOptions
    ) -> list[list[Hypothesis]]:
        """``greedy_search(model, enc, src_lens, options)``, without attention weights."""
        assert options.beam_size == 1 and not options.return_attention
        state = self.model.initial_state(enc)
        vocab = enc.vocab
        output = self.output if vocab is None else vocab.packed
        rows, steps, tokens, log_probs = self.steps(
            self.input_gates,
            self.recurrent,
            self.upper_cells,
            self.combine,
            output,
            state.h,
            state.c,
            enc.keys,
            enc.memory,
            enc.mask,
            None if vocab is None else vocab.columns,
            None if vocab is None else vocab.sentence_ids,
            options.max_lengths(src_lens),
            options.min_length,
            BOS_ID,
            EOS_ID,
        )
        return collect_hypotheses(rows, steps, tokens, log_probs, enc, src_lens, options)
