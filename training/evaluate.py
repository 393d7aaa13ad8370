"""Decode a test set and score it with sacreBLEU (BLEU and chrF on detokenized text).

Every score is reported with its sacreBLEU signature, so numbers from different runs (or from
other toolkits) can be compared only when the signature says they are comparable.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from model import Bundle, DecodeOptions, Seq2Seq, Tokenizer, Translator
from model.shortlist import Shortlist
from training.corpus import read_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """Corpus-level BLEU and chrF with their sacreBLEU signatures."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"BLEU = {self.bleu:.2f} ({self.bleu_signature}) "
            f"chrF = {self.chrf:.2f} ({self.chrf_signature})"
        )


def score(hypotheses: list[str], references: list[str]) -> Scores:
    """sacreBLEU's defaults: cased BLEU with the 13a tokenizer, chrF2."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return Scores(
        round(bleu_score.score, 2),
        round(chrf_score.score, 2),
        str(bleu.get_signature()),
        str(chrf.get_signature()),
    )


def translator_for(
    model: Seq2Seq, tokenizer: Tokenizer, shortlist: Shortlist | None = None, **kwargs: Any
) -> Translator:
    """A Translator over a copy of an in-training model (the copy is in eval mode)."""
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    bundle = Bundle(Path("."), model.config, tokenizer, state, shortlist=shortlist)
    device = str(next(model.parameters()).device)
    return Translator(bundle, device=device, **kwargs)


def translate_all(translator: Translator, sources: list[str], options: DecodeOptions) -> list[str]:
    results = translator.translate(sources, options)
    failed = sum(r.error is not None for r in results)
    if failed:
        log.warning("%d of %d sentences failed to translate", failed, len(results))
    return [r.text for r in results]


def evaluate_pairs(
    translator: Translator,
    splits: dict[str, list[tuple[str, str]]],
    beams: tuple[int, ...],
    length_penalty: float,
) -> dict[str, Any]:
    """BLEU/chrF of each split for each beam size, e.g. {"test": {"beam5": {...}}}."""
    metrics: dict[str, Any] = {}
    for split, pairs in splits.items():
        sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
        for beam in beams:
            options = DecodeOptions(beam_size=beam, length_penalty=length_penalty)
            scores = score(translate_all(translator, sources, options), refs)
            metrics.setdefault(split, {})[f"beam{beam}"] = {
                **scores.as_dict(),
                "sentences": len(pairs),
            }
            log.info("%s beam=%d %s", split, beam, scores)
    return metrics


def evaluate_files(
    translator: Translator,
    src_file: str | Path,
    ref_file: str | Path,
    options: DecodeOptions,
    hyp_file: str | Path | None = None,
) -> Scores:
    """Translate ``src_file``, write the hypotheses (if asked) and score against ``ref_file``."""
    sources, references = read_lines(src_file), read_lines(ref_file)
    if len(sources) != len(references):
        raise ValueError(
            f"{src_file} has {len(sources)} lines but {ref_file} has {len(references)}"
        )
    if not sources:
        raise ValueError(f"{src_file} has no lines: BLEU needs at least one sentence")
    hypotheses = translate_all(translator, sources, options)
    if hyp_file is not None:
        Path(hyp_file).write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    return score(hypotheses, references)
