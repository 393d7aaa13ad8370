"""SentencePiece wrapper: text <-> ids with the project's fixed special ids.

Every SentencePiece model this project trains uses pad=0, unk=1, bos=2, eos=3, so the network,
the search and the bundle can rely on them; loading a model with other ids fails loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from model.errors import BundleError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# SentencePiece trainer options that give a model the special ids above, as Tokenizer requires.
SPM_SPECIAL_IDS = {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}


def _load(path: Path) -> spm.SentencePieceProcessor:
    if not path.is_file():
        raise BundleError(path, "SentencePiece model file is missing")
    proc = spm.SentencePieceProcessor()
    try:
        proc.Load(str(path))
    except (OSError, RuntimeError) as err:
        raise BundleError(path, f"not a valid SentencePiece model ({err})") from err
    ids = (proc.pad_id(), proc.unk_id(), proc.bos_id(), proc.eos_id())
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise BundleError(
            path, f"special ids (pad, unk, bos, eos) are {ids}; expected (0, 1, 2, 3)"
        )
    return proc


def valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (from surrogateescape-decoded bytes or a JSON ``\\ud800``)
    as U+FFFD: SentencePiece accepts only text that encodes to UTF-8, and raises otherwise."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


class Tokenizer:
    """Source and target SentencePiece models (the same object when the vocabulary is joint)."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, src_model: Path | str, tgt_model: Path | str | None = None) -> None:
        self.files = [Path(src_model)] + ([Path(tgt_model)] if tgt_model is not None else [])
        self._src = _load(self.files[0])
        self._tgt = _load(self.files[1]) if tgt_model is not None else self._src

    @property
    def joint(self) -> bool:
        return len(self.files) == 1

    @property
    def src_vocab_size(self) -> int:
        return int(self._src.get_piece_size())

    @property
    def tgt_vocab_size(self) -> int:
        return int(self._tgt.get_piece_size())

    def encode_source(self, text: str) -> list[int]:
        """Source piece ids followed by EOS (the encoder sees where the sentence ends)."""
        return list(self._src.encode(valid_unicode(text), out_type=int)) + [EOS_ID]

    def encode_sources(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode_source`` of each text in one call: SentencePiece then releases the GIL once
        for the batch instead of once per sentence, and a server's event loop, which needs
        the GIL back after each release, no longer stalls a batch at every sentence."""
        valid = [valid_unicode(text) for text in texts]
        return self._src.encode(valid, out_type=int, add_eos=True, num_threads=1)  # type: ignore[no-any-return]

    def encode_target(self, text: str) -> list[int]:
        """Target piece ids without BOS/EOS; training adds them when it shifts the sequence."""
        return list(self._tgt.encode(valid_unicode(text), out_type=int))

    def decode_target(self, ids: Sequence[int]) -> str:
        """Detokenized text of ``ids`` up to the first EOS, special ids dropped."""
        kept: list[int] = []
        for i in ids:
            if i == EOS_ID:
                break
            if i > EOS_ID:
                kept.append(int(i))
        return str(self._tgt.decode(kept))

    def source_pieces(self, ids: Sequence[int]) -> list[str]:
        """The pieces of ``ids``, in one SentencePiece call: a call per id took 3.7x as long
        for a batch's sentences, on the thread whose Python a batch waits for."""
        return list(self._src.id_to_piece([int(i) for i in ids]))

    def target_pieces(self, ids: Sequence[int]) -> list[str]:
        return list(self._tgt.id_to_piece([int(i) for i in ids]))
