"""SentencePiece training: special ids, byte fallback, joint vs separate models, determinism."""

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

from training.spm import SpmError, sample_sentences, train_sentencepiece

# Plain strings split on spaces read better here than 30 lines of list literal.
SRC_WORDS = "the a cat dog sat on mat big small red blue house tree runs jumps".split()  # noqa: SIM905
TGT_WORDS = "der die das katze hund sass auf matte gross klein rot blau haus".split()  # noqa: SIM905


def sentences(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(2, 8))) for _ in range(n)]


SRC = sentences(SRC_WORDS, 150, 1)
TGT = sentences(TGT_WORDS, 150, 2)


def load(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))


@pytest.fixture(scope="module")
def joint_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spm") / "spm"
    (model,) = train_sentencepiece(SRC, TGT, out, vocab_size=300)
    return model


def test_special_ids_and_pieces(joint_model: Path) -> None:
    sp = load(joint_model)
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]


def test_joint_model_covers_both_languages(joint_model: Path) -> None:
    assert joint_model.name == "spm.model"
    assert joint_model.with_suffix(".vocab").is_file()
    sp = load(joint_model)
    for text in ("the big cat", "die katze"):
        assert sp.unk_id() not in sp.encode(text)
        assert sp.decode(sp.encode(text)) == text


def test_byte_fallback_encodes_unseen_characters(joint_model: Path) -> None:
    sp = load(joint_model)
    text = "the cat 🐱 sat on ß"
    ids = sp.encode(text)
    assert sp.unk_id() not in ids
    assert any(sp.is_byte(i) for i in ids)
    assert sp.decode(ids) == text


def test_without_byte_fallback_unseen_is_unk(tmp_path: Path) -> None:
    (model,) = train_sentencepiece(SRC, TGT, tmp_path / "m", vocab_size=60, byte_fallback=False)
    sp = load(model)
    assert sp.unk_id() in sp.encode("the 🐱")


def test_separate_models_from_gzipped_files(tmp_path: Path) -> None:
    src, tgt = tmp_path / "s.gz", tmp_path / "t.gz"
    src.write_bytes(gzip.compress("\n".join(SRC).encode()))
    tgt.write_bytes(gzip.compress("\n".join(TGT).encode()))
    paths = train_sentencepiece(
        src,
        tgt,
        tmp_path / "out" / "spm",
        vocab_size=60,
        model_type="bpe",
        joint=False,
        byte_fallback=False,
    )
    assert [p.name for p in paths] == ["spm.src.model", "spm.tgt.model"]
    assert not (tmp_path / "out" / "spm.model").exists()
    src_sp, tgt_sp = load(paths[0]), load(paths[1])
    assert src_sp.piece_to_id("▁katze") == src_sp.unk_id()  # target words stay out of src
    assert tgt_sp.piece_to_id("▁katze") != tgt_sp.unk_id()
    assert (tgt_sp.pad_id(), tgt_sp.eos_id()) == (0, 3)


_TRAIN_SNIPPET = """
import json, sys
from training.spm import train_sentencepiece
src, tgt = json.loads(open(sys.argv[2]).read())
train_sentencepiece(src, tgt, sys.argv[1], vocab_size=60, byte_fallback=False,
                    input_sentence_size=120, seed=0)
"""


def test_same_inputs_give_identical_models_across_processes(tmp_path: Path) -> None:
    # SentencePiece's own sampling is only repeatable within one process, so train once here
    # and once in a fresh interpreter. The sample (120) is smaller than the corpus (300).
    prefix = tmp_path / "m"
    (model,) = train_sentencepiece(
        SRC, TGT, prefix, vocab_size=60, byte_fallback=False, input_sentence_size=120, seed=0
    )
    first = model.read_bytes()
    model.unlink()
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([SRC, TGT]))
    cmd = [sys.executable, "-c", _TRAIN_SNIPPET, str(prefix), str(texts)]
    subprocess.run(cmd, check=True, timeout=60)
    assert model.read_bytes() == first


def test_sample_is_seeded_bounded_and_in_order() -> None:
    texts = [f"s{i}" for i in range(1000)] + ["", "  "]
    a = sample_sentences(texts, 50, seed=3)
    assert a == sample_sentences(texts, 50, seed=3)
    assert a != sample_sentences(texts, 50, seed=4)
    assert len(a) == 50 and "" not in a
    assert a == sorted(a, key=lambda s: int(s[1:]))
    assert sample_sentences(texts[:10], 50, seed=3) == texts[:10]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_sentencepiece("file.txt", TGT, tmp_path / "m", vocab_size=60)  # type: ignore[arg-type]
    with pytest.raises(SpmError, match="no non-empty sentences"):
        train_sentencepiece(["", " "], [""], tmp_path / "m", vocab_size=60)
    with pytest.raises(SpmError, match="m.model failed"):  # byte pieces need > 256 ids
        train_sentencepiece(SRC, TGT, tmp_path / "m", vocab_size=60, byte_fallback=True)
