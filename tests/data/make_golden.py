"""Make the golden bundle and its expected outputs (tests/model/test_golden.py checks them).

    .venv/bin/python tests/data/make_golden.py

writes ``tests/data/golden-bundle/`` (a few KB: a SentencePiece model of about 50 pieces,
embedding 8, hidden 16, one layer each side, fp32 weights) and ``tests/data/golden-outputs.json``
(greedy and beam-3 translations of three fixed inputs, with scores).

The model is trained for a few hundred steps to copy made-up-word sentences, so its next-token
distributions are peaked: a random model's near-ties could flip on another CPU and make the
golden test flaky. The script prints the smallest top-1/top-2 log-probability gap along the
greedy paths as a check of that margin.

Re-run it only on purpose: when the bundle format or the search changes, the golden test fails
until the new outputs are reviewed and committed, which is its whole point. Commit both files
together with the change that needed them.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F

from model import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    DecodeOptions,
    ModelConfig,
    Seq2Seq,
    Tokenizer,
    Translator,
    save_bundle,
)
from model.tokenizer import SPM_SPECIAL_IDS

log = logging.getLogger("make_golden")
HERE = Path(__file__).resolve().parent
BUNDLE, OUTPUTS = HERE / "golden-bundle", HERE / "golden-outputs.json"
WORDS = tuple(f"{c}{v}" for c in "bdgklmnprst" for v in "aeiou")[:30]
INPUTS = ["ba be ki", "mo na pa ta sa", "de do di du"]
OPTIONS = {
    "greedy": DecodeOptions(beam_size=1),
    "beam3": DecodeOptions(beam_size=3, n_best=3, length_penalty=0.6),
}
SEED, STEPS, BATCH, LR = 0, 400, 32, 1e-2


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 6))) for _ in range(n)]


def train_spm(workdir: Path) -> Path:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences(200, SEED)),
        model_prefix=str(workdir / "spm"),
        vocab_size=50,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=False,
        normalization_rule_name="identity",  # no 240 KB character map in the model file
        hard_vocab_limit=False,
        **SPM_SPECIAL_IDS,
        num_threads=1,
        minloglevel=2,
    )
    return workdir / "spm.model"


def copy_batch(tokenizer: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, ...]:
    """(src, src_lens, tgt_in, tgt_out) for the copy task, padded with PAD."""
    src = [tokenizer.encode_source(t) for t in texts]
    tgt = [tokenizer.encode_target(t) for t in texts]
    pad = torch.nn.utils.rnn.pad_sequence
    return (
        pad([torch.tensor(s) for s in src], batch_first=True, padding_value=PAD_ID),
        torch.tensor([len(s) for s in src]),
        pad([torch.tensor([BOS_ID, *t]) for t in tgt], batch_first=True, padding_value=PAD_ID),
        pad([torch.tensor([*t, EOS_ID]) for t in tgt], batch_first=True, padding_value=PAD_ID),
    )


def train_model(tokenizer: Tokenizer) -> Seq2Seq:
    torch.manual_seed(SEED)
    vocab = tokenizer.src_vocab_size
    config = ModelConfig(vocab, vocab, emb_size=8, hidden_size=16, encoder_layers=1, dropout=0.0)
    model = Seq2Seq(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    data = sentences(2000, SEED + 1)
    rng = random.Random(SEED)
    for step in range(STEPS):
        src, src_lens, tgt_in, tgt_out = copy_batch(tokenizer, rng.sample(data, BATCH))
        logits = model(src, src_lens, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == STEPS - 1:
            log.info("step=%d loss=%.3f", step, loss.item())
    return model.eval()


@torch.no_grad()
def smallest_greedy_margin(model: Seq2Seq, tokenizer: Tokenizer) -> float:
    """The smallest top-1 minus top-2 log-probability along the greedy paths of INPUTS."""
    margin = float("inf")
    for text in INPUTS:
        ids = tokenizer.encode_source(text)
        enc = model.encode(torch.tensor([ids]), torch.tensor([len(ids)]))
        state, prev = model.initial_state(enc), torch.tensor([BOS_ID])
        for _ in range(2 * len(ids) + 10):
            log_probs, state = model.decode_step(prev, state, enc)
            top = log_probs[0].topk(2)
            margin = min(margin, float(top.values[0] - top.values[1]))
            prev = top.indices[:1]
            if int(prev) == EOS_ID:
                break
    return margin


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    work = HERE / ".golden-work"
    work.mkdir(exist_ok=True)
    tokenizer = Tokenizer(train_spm(work))
    model = train_model(tokenizer)
    metadata = {
        "model_id": "golden-tiny",
        "source_lang": "xx",
        "target_lang": "xx",
        "description": "tests/data/make_golden.py: tiny copy-task model for the golden test",
    }
    save_bundle(BUNDLE, model, tokenizer, metadata=metadata)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()

    translator = Translator.from_dir(BUNDLE)
    pieces = translator.tokenizer.target_pieces
    expected: dict[str, object] = {"inputs": INPUTS}
    for name, options in OPTIONS.items():
        expected[name] = [
            [
                {"text": c.text, "tokens": pieces(c.token_ids), "score": c.score}
                for c in r.candidates
            ]
            for r in translator.translate(INPUTS, options)
        ]
    OUTPUTS.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    log.info("smallest greedy margin: %.3f nats", smallest_greedy_margin(model, tokenizer))
    log.info("greedy: %s", json.dumps(expected["greedy"], ensure_ascii=False))
    log.info("wrote %s and %s", BUNDLE, OUTPUTS)


if __name__ == "__main__":
    main()
