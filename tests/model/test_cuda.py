"""The Translator on CUDA gives what the float Translator gives on the CPU: the same tokens, the
same scores and attention to float precision, with and without a shortlist (skipped without a
GPU; see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import DecodeOptions, Result, Translator, load_bundle

pytestmark = pytest.mark.gpu

SHIPPED_MODEL = Path(__file__).resolve().parents[2] / "models" / "en-de-multi30k"
TINY_TEXTS = ["mo na pa ta sa de do", "ku", "ba be ki", "de do di du da de go ka", "", "sa le"]
ENGLISH = [
    "A man in an orange hat starring at something.",
    "Two young children are playing in the water at the beach.",
    "A group of people stand in front of an igloo.",
    "A dog runs across the grass with a red ball in its mouth.",
    "The woman is riding her bike down a busy street while talking on the phone.",
    "Hi",
]
SEARCHES = {
    "greedy": DecodeOptions(beam_size=1),
    "beam": DecodeOptions(beam_size=5, n_best=3),
    "attention": DecodeOptions(beam_size=3, return_attention=True),
}


def assert_same_results(gpu: list[Result], cpu: list[Result], tolerance: float) -> None:
    """Tokens exactly; scores and attention within ``tolerance``, relative or absolute: the GPU
    sums in another order, and cuDNN's LSTM may use TF32 (torch.backends.cudnn.allow_tf32)."""
    assert len(gpu) == len(cpu)
    for g, c in zip(gpu, cpu, strict=True):
        assert g.error is None and c.error is None
        assert [x.token_ids for x in g.candidates] == [x.token_ids for x in c.candidates]
        for a, b in zip(g.candidates, c.candidates, strict=True):
            assert a.score == pytest.approx(b.score, rel=tolerance, abs=tolerance)
            if b.attention is not None:
                assert a.attention is not None
                torch.testing.assert_close(
                    torch.tensor(a.attention),
                    torch.tensor(b.attention),
                    rtol=tolerance,
                    atol=tolerance,
                )


@pytest.mark.parametrize("options", SEARCHES.values(), ids=SEARCHES.keys())
def test_tiny_model_on_cuda_equals_float_on_cpu(tiny_bundle: Path, options: DecodeOptions) -> None:
    bundle = load_bundle(tiny_bundle)
    gpu = Translator(bundle, device="cuda", quantize="auto")
    assert gpu.device.type == "cuda" and gpu.quantize == "none"  # no int8 kernels on CUDA
    assert gpu.compiled_search is None  # the compiled loops are for int8 on the CPU
    cpu = Translator(bundle, device="cpu", quantize="none")
    assert_same_results(
        gpu.translate(TINY_TEXTS, options), cpu.translate(TINY_TEXTS, options), 1e-4
    )


@pytest.mark.parametrize("shortlist", [True, False], ids=["shortlist", "full-vocabulary"])
@pytest.mark.parametrize("options", SEARCHES.values(), ids=SEARCHES.keys())
def test_shipped_model_on_cuda_equals_float_on_cpu(shortlist: bool, options: DecodeOptions) -> None:
    """The shipped model's shortlist tables stay on the CPU; its results move to the GPU."""
    bundle = load_bundle(SHIPPED_MODEL)
    assert bundle.shortlist is not None
    gpu = Translator(bundle, device="cuda", shortlist=shortlist)
    cpu = Translator(bundle, device="cpu", shortlist=shortlist)
    assert_same_results(gpu.translate(ENGLISH, options), cpu.translate(ENGLISH, options), 2e-3)


def test_auto_device_picks_cuda_when_present(tiny_bundle: Path) -> None:
    translator = Translator.from_dir(tiny_bundle, device="auto", quantize="auto")
    assert (translator.device.type, translator.quantize) == ("cuda", "none")
    assert next(translator.model.parameters()).is_cuda
