"""The greedy and beam search loops that TorchScript compiles, for int8 models on the CPU.

They are ``greedy_search`` and ``beam_search`` with ``Decoder.step`` written out once
(``decoder_step``) for the layers ``prepare_search(int8=True)`` makes, and they call beam
search's own helpers, so tokens and scores are the same (tests/model/test_compiled_search.py).
``LaneLoops`` compiles the two entry points, ``greedy`` and ``beam``, which take a batch's
lanes (``model/lanes.py``). TorchScript reads no module constants, so every value
is an argument: the weights (``Int8Decoder``), each lane's source (``SourceSide``) and the
request's options with the special ids (``SearchRules``). ``model/compiled_search.py`` prepares
those arguments and turns what the loops return into hypotheses.
"""

import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn

from model.beam import ending_candidates, merge_best, next_beams, topk_flat
from model.lanes import handed
from model.search import (
    DecodeOptions,
    SpaceRule,
    ban_after_space,
    ban_early_eos,
    length_penalty,
)
from model.step_kernels import PackedLinear
from model.tokenizer import BOS_ID, EOS_ID, PAD_ID


class Int8Decoder(NamedTuple):
    """The decoder's search weights (``Decoder.prepare_search(int8=True)``)."""

    input_gates: Tensor  # (V, 4H) the first layer's input side per target id
    recurrent: PackedLinear  # the first layer's W_hh
    upper_cells: list[PackedLinear]  # each further layer's [W_ih; W_hh]
    combine: PackedLinear  # W_c of tanh(W_c [context; h])


class SourceSide(NamedTuple):
    """What every step reads of each sentence still decoding (rows: sentences)."""

    keys: Tensor  # (B, S, H) attention keys
    memory: Tensor  # (B, S, H)
    padding: Tensor  # (B, 1, S) True at padding
    columns: Tensor | None  # (B, C) with a shortlist: each sentence's positions in its union
    sentence_ids: Tensor | None  # (B, C) the target ids of those positions
    foreign: Tensor | None  # (B, C) padding columns, scored -inf (``BatchCandidates.foreign``)


class SearchRules(NamedTuple):
    """A request's decoding options, the special ids and the vocabulary's ``SpaceRule``, in
    the one argument every compiled loop takes for them (TorchScript does not read module
    constants)."""

    beam_size: int
    n_best: int
    min_length: int  # no EOS before this many target tokens
    alpha: float  # length penalty
    bos_id: int
    eos_id: int
    pad_id: int
    space_id: int  # the bare "▁" piece; -1: the vocabulary has none
    after_space: Tensor  # (V,) bool: the ids that may not follow it


def search_rules(options: DecodeOptions, space: SpaceRule | None) -> SearchRules:
    """``options``, the project's special ids and ``space``, as the compiled loops take them."""
    space = space or SpaceRule(-1, torch.zeros(0, dtype=torch.bool))
    return SearchRules(
        options.beam_size, options.n_best, options.min_length, options.length_penalty,
        BOS_ID, EOS_ID, PAD_ID, space.space_id, space.banned,
    )  # fmt: skip


def select_sentences(source: SourceSide, live: Tensor) -> SourceSide:
    """The rows ``live`` of every per-sentence tensor (``EncoderOutput.select``)."""
    columns, sentence_ids, foreign = source.columns, source.sentence_ids, source.foreign
    return SourceSide(
        source.keys.index_select(0, live),
        source.memory.index_select(0, live),
        source.padding.index_select(0, live),
        None if columns is None else columns.index_select(0, live),
        None if sentence_ids is None else sentence_ids.index_select(0, live),
        None if foreign is None else foreign.index_select(0, live),
    )


def decoder_step(
    weights: Int8Decoder,
    output: PackedLinear,
    prev: Tensor,
    hs: list[Tensor],
    cs: list[Tensor],
    source: SourceSide,
    rules: SearchRules,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``Seq2Seq.decode_step``: (N,) previous tokens -> log-probs (N, C) and each layer's h, c,
    then ``SpaceRule.apply`` as the Python loops do.

    N = B x K: rows ``b*K .. b*K+K-1`` belong to sentence b of ``source``; ``output`` scores
    the shortlist's union (or the whole vocabulary when there is none).
    """
    rows, batch = prev.size(0), source.memory.size(0)
    beam = rows // batch
    ids, columns, sentence_ids = prev, source.columns, source.sentence_ids
    if sentence_ids is not None:
        ids = sentence_ids.gather(1, prev.view(batch, beam)).view(rows)
    x = weights.input_gates.index_select(0, ids)  # (N, 4H)
    next_hs: list[Tensor] = []
    next_cs: list[Tensor] = []
    for layer in range(len(hs)):
        if layer == 0:
            gates = torch.ops.quantized.linear_dynamic(hs[0], weights.recurrent, True).add_(x)
        else:
            cell = weights.upper_cells[layer - 1]
            gates = torch.ops.quantized.linear_dynamic(torch.cat([x, hs[layer]], 1), cell, True)
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
        next_cs.append(forget_gate.sigmoid() * cs[layer] + in_gate.sigmoid() * cell_gate.tanh())
        x = out_gate.sigmoid() * next_cs[layer].tanh()
        next_hs.append(x)
    scores = torch.bmm(x.view(batch, beam, -1), source.keys.transpose(1, 2))
    attention = torch.softmax(scores.masked_fill(source.padding, float("-inf")), dim=-1)
    context = torch.bmm(attention, source.memory).view(rows, -1)  # (N, H)
    both = torch.cat([context, x], dim=1)
    vec = torch.tanh(torch.ops.quantized.linear_dynamic(both, weights.combine, True))
    logits = torch.ops.quantized.linear_dynamic(vec, output, True)
    if columns is not None:
        union = logits.view(batch, beam, -1)
        mine = union.gather(2, columns.unsqueeze(1).expand(-1, beam, -1))
        foreign = source.foreign
        if foreign is not None:
            mine.masked_fill_(foreign.unsqueeze(1), float("-inf"))  # gather made a copy
        logits = mine.view(rows, -1)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_probs = ban_after_space(log_probs, ids, sentence_ids, rules.space_id, rules.after_space)
    return log_probs, next_hs, next_cs


def greedy_steps(
    weights: Int8Decoder,
    output: PackedLinear,
    h0: Tensor,
    c0: Tensor,
    source: SourceSide,
    limits: Tensor,
    rules: SearchRules,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``greedy_search``'s loop; returns, per (sentence, step) decoded, the sentence's row, the
    step, the token and its log-prob, for ``collect_hypotheses``. h0, c0: (L, B, H)."""
    batch = h0.size(1)
    active = torch.arange(batch)  # (A,) sentences still decoding
    prev = torch.full([batch], rules.bos_id, dtype=torch.long)
    hs, cs = list(h0.unbind(0)), list(c0.unbind(0))
    rows: list[Tensor] = []
    steps: list[Tensor] = []
    tokens: list[Tensor] = []
    log_probs: list[Tensor] = []
    for t in range(int(limits.max())):
        step_log_probs, hs, cs = decoder_step(weights, output, prev, hs, cs, source, rules)
        best, token = ban_early_eos(step_log_probs, t, rules.min_length, rules.eos_id).max(-1)
        rows.append(active)
        steps.append(torch.full_like(active, t))
        tokens.append(token)
        log_probs.append(best)
        ended = token.eq(rules.eos_id) | limits.le(t + 1)
        if bool(ended.any()):
            live = (~ended).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            active, token, limits = active[live], token[live], limits[live]
            hs = [h.index_select(0, live) for h in hs]
            cs = [c.index_select(0, live) for c in cs]
            source = select_sentences(source, live)
        prev = token
    return torch.cat(rows), torch.cat(steps), torch.cat(tokens), torch.cat(log_probs)


def greedy_table(
    weights: Int8Decoder,
    output: PackedLinear,
    bridge_h: PackedLinear,
    bridge_c: PackedLinear,
    final_h: Tensor,
    final_c: Tensor,
    layers: int,
    source: SourceSide,
    limits: Tensor,
    rules: SearchRules,
) -> tuple[Tensor, Tensor]:
    """Greedy search from the encoder's final states to each sentence's target ids (B, T),
    PAD after its end, and its length-normalized score (B,): ``Seq2Seq.initial_state``,
    ``greedy_steps`` and ``collect_hypotheses``' tensor work in one call, which releases the
    GIL a handful of times rather than once per operation."""
    batch = final_h.size(0)
    h0 = torch.tanh(torch.ops.quantized.linear_dynamic(final_h, bridge_h, True))
    c0 = torch.ops.quantized.linear_dynamic(final_c, bridge_c, True)
    h0 = h0.view(batch, layers, -1).transpose(0, 1).contiguous()
    c0 = c0.view(batch, layers, -1).transpose(0, 1).contiguous()
    all_sentence_ids = source.sentence_ids
    rows, steps, tokens, log_probs = greedy_steps(weights, output, h0, c0, source, limits, rules)
    table = torch.full([batch, int(steps.max()) + 1], rules.pad_id, dtype=torch.long)
    table.index_put_([rows, steps], tokens)
    log_prob = log_probs.new_zeros(batch).index_add_(0, rows, log_probs)
    lengths = torch.bincount(rows, minlength=batch)
    scores = log_prob / length_penalty(lengths, rules.alpha)
    if all_sentence_ids is not None:  # shortlist positions -> target ids
        table = all_sentence_ids.gather(1, table)
    return table, scores


def beam_steps(
    weights: Int8Decoder,
    output: PackedLinear,
    h0: Tensor,
    c0: Tensor,
    source: SourceSide,
    max_lens: Tensor,
    rules: SearchRules,
) -> tuple[Tensor, Tensor]:
    """``beam_search``'s loop, step for step; returns the finished hypotheses' normalized
    scores (B, K) and tokens (B, K, T), for ``finalize``. h0, c0: (L, B x K, H)."""
    beam_size, eos_id, pad_id = rules.beam_size, rules.eos_id, rules.pad_id
    batch = max_lens.size(0)
    steps = int(max_lens.max())
    hs, cs = list(h0.unbind(0)), list(c0.unbind(0))
    scores = torch.full([batch, beam_size], float("-inf"))
    scores[:, 0] = 0.0  # at step 0 all beams are identical: only beam 0 expands
    active = torch.arange(batch)
    history = torch.full([batch * beam_size, steps], pad_id, dtype=torch.long)
    finished_scores = torch.full([batch, beam_size], float("-inf"))
    finished_tokens = torch.full([batch, beam_size, steps], pad_id, dtype=torch.long)
    prev = torch.full([batch * beam_size], rules.bos_id, dtype=torch.long)
    for t in range(steps):
        log_probs, hs, cs = decoder_step(weights, output, prev, hs, cs, source, rules)
        log_probs = ban_early_eos(log_probs, t, rules.min_length, eos_id)
        cand = topk_flat(scores, log_probs, 2 * beam_size)
        # 1. Candidates among the top K that end here (or hit the length limit) are finished.
        at_limit = (t + 1 >= max_lens[active]).unsqueeze(1)  # (A, 1)
        end_scores, end_tokens, _ = ending_candidates(
            cand, history, at_limit, t, beam_size, rules.alpha, eos_id
        )
        mine_scores, mine_tokens, _ = merge_best(
            finished_scores[active], end_scores, finished_tokens[active], end_tokens
        )
        finished_scores[active], finished_tokens[active] = mine_scores, mine_tokens
        n_finished = torch.isfinite(mine_scores).sum(dim=1)  # (A,)
        done = (cand.token[:, 0].eq(eos_id) & (n_finished >= rules.n_best)) | at_limit.squeeze(1)
        if bool(done.all()):
            break
        # 2. The best K candidates that continue become the next beams of the sentences that
        # are not done; done sentences leave the batch.
        active, scores, token, rows, live = next_beams(cand, done, active, beam_size, eos_id)
        if live is not None:
            source = select_sentences(source, live)
        hs = [h.index_select(0, rows) for h in hs]
        cs = [c.index_select(0, rows) for c in cs]
        history = history.index_select(0, rows)
        history[:, t] = token
        prev = token
    return finished_scores, finished_tokens


class LaneLoops(nn.Module):
    """The entry points, ``greedy`` and ``beam``, for a batch's lanes (``model/lanes.py``):
    every lane after the first is forked onto torch's inter-op threads, the first runs on the
    calling thread. Each call keeps its results; ``take`` hands them to Python (``model/lanes.py``
    says why)."""

    found: list[tuple[Tensor, Tensor]]

    def __init__(self) -> None:
        super().__init__()
        self.found = []

    @torch.jit.export
    def greedy(
        self,
        weights: Int8Decoder,
        outputs: list[PackedLinear],
        bridge_h: PackedLinear,
        bridge_c: PackedLinear,
        final_h: list[Tensor],
        final_c: list[Tensor],
        layers: int,
        sources: list[SourceSide],
        limits: list[Tensor],
        rules: SearchRules,
    ) -> None:
        """``greedy_table`` for each lane."""
        futures: list[torch.jit.Future[tuple[Tensor, Tensor]]] = []
        for i in range(1, len(sources)):
            futures.append(
                torch.jit.fork(  # type: ignore[no-untyped-call]
                    greedy_table, weights, outputs[i], bridge_h, bridge_c, final_h[i],
                    final_c[i], layers, sources[i], limits[i], rules,
                )
            )  # fmt: skip
        tables = [
            greedy_table(
                weights, outputs[0], bridge_h, bridge_c, final_h[0], final_c[0], layers,
                sources[0], limits[0], rules,
            )
        ]  # fmt: skip
        for future in futures:
            tables.append(torch.jit.wait(future))  # type: ignore[no-untyped-call]
        self.found = tables

    @torch.jit.export
    def beam(
        self,
        weights: Int8Decoder,
        outputs: list[PackedLinear],
        h0: list[Tensor],
        c0: list[Tensor],
        sources: list[SourceSide],
        max_lens: list[Tensor],
        rules: SearchRules,
    ) -> None:
        """``beam_steps`` for each lane."""
        futures: list[torch.jit.Future[tuple[Tensor, Tensor]]] = []
        for i in range(1, len(sources)):
            futures.append(
                torch.jit.fork(  # type: ignore[no-untyped-call]
                    beam_steps, weights, outputs[i], h0[i], c0[i], sources[i], max_lens[i], rules
                )
            )  # fmt: skip
        finished = [beam_steps(weights, outputs[0], h0[0], c0[0], sources[0], max_lens[0], rules)]
        for future in futures:
            finished.append(torch.jit.wait(future))  # type: ignore[no-untyped-call]
        self.found = finished

    @torch.jit.export
    def take(self) -> list[tuple[Tensor, Tensor]]:
        """Each lane's (scores, tokens) from the last call, as tensors of Python's own."""
        taken = [(handed(scores), handed(tokens)) for scores, tokens in self.found]
        self.found = taken[:0]  # empty, of the attribute's type
        return taken


def compile_lane_loops() -> torch.jit.ScriptModule:
    """``LaneLoops`` compiled, on first use (well under a second), not at import.

    torch 2.13 marks ``torch.jit.script`` deprecated in favour of ``torch.compile`` and
    ``torch.export``; neither serves here: inductor made a float step slower on this CPU
    (bench/README.md, stop 14) and export does not take loops whose exit depends on the data.
    If a later torch drops TorchScript, ``CompiledSearch.for_model`` falls back to Python.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(LaneLoops())
