"""Where and how a model runs: its device, int8 weights on the CPU, and the cores it may use.

The service, the CLI, training and the benchmarks all choose these the same way.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from model.errors import DeviceError

QUANTIZE_MODES = ("auto", "none", "int8")


def resolve_device(device: str, setting: str = "NMT_DEVICE") -> torch.device:
    """ "auto" picks CUDA when available; asking for CUDA without it is an error, not a fallback.

    ``setting``: where the user chose ``device``, named in the error.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available ({setting})")
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"unknown device {device!r}; use cpu, cuda or auto ({setting})")
    return torch.device(device)


def resolve_quantize(quantize: str, device: torch.device) -> str:
    """ "auto" is int8 on CPU (faster, test BLEU within 0.1 of float: bench/README.md) and
    none elsewhere (int8 dynamic quantization has CPU kernels only)."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize == "auto":
        return "int8" if device.type == "cpu" else "none"
    if quantize == "int8" and device.type != "cpu":
        raise ValueError("int8 quantization runs on CPU only; use quantize='none' on CUDA")
    return quantize


def allowed_cores() -> int:
    """The CPU cores this process may run on, which a cpuset or taskset can make fewer than
    the machine's."""
    return len(os.sched_getaffinity(0))


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every LSTM and Linear layer (CPU only).

    Weights are stored as int8 and activations are quantized on the fly. torch marks this API
    deprecated in favour of torchao, which has no dynamic LSTM path yet, so we keep it. The
    decoder's LSTM, which search runs one step at a time, gets our own int8 cells instead
    (``Decoder.prepare_search``): torch.ao's quantized LSTM is slow to call per step.
    """
    decoder = getattr(model, "decoder", None)
    if decoder is not None:
        decoder.rnn.qconfig = None  # left float by quantize_dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        quantized: nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.LSTM, nn.Linear}, dtype=torch.qint8
        )
    if decoder is not None:
        del decoder.rnn.qconfig
        quantized.decoder.prepare_search(int8=True)  # type: ignore[operator,union-attr]
    return quantized
