"""lstm-nmt model core: the network, tokenizer, search and bundle (no training or serving code)."""

from model.beam import beam_search
from model.bundle import FORMAT_VERSION, Bundle, load_bundle, save_bundle
from model.config import ModelConfig
from model.decoder import DecoderState, EncoderOutput
from model.errors import (
    BundleError,
    DeviceError,
    InputTooLong,
    ModelError,
    TranslationFailed,
    UnknownFormatVersion,
)
from model.search import (
    DecodeOptions,
    Hypothesis,
    SpaceRule,
    greedy_search,
    length_penalty,
)
from model.seq2seq import Seq2Seq
from model.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from model.translator import Candidate, ModelView, Result, Translator, load_on_cores

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "FORMAT_VERSION",
    "PAD_ID",
    "UNK_ID",
    "Bundle",
    "BundleError",
    "Candidate",
    "DecodeOptions",
    "DecoderState",
    "DeviceError",
    "EncoderOutput",
    "Hypothesis",
    "InputTooLong",
    "ModelConfig",
    "ModelError",
    "Result",
    "Seq2Seq",
    "SpaceRule",
    "Tokenizer",
    "TranslationFailed",
    "ModelView",
    "Translator",
    "UnknownFormatVersion",
    "beam_search",
    "greedy_search",
    "length_penalty",
    "load_on_cores",
    "load_bundle",
    "save_bundle",
]
