"""Matmuls for one search step, shaped for the few rows a step has on CPU.

A search step multiplies a few rows (sentences x beam) by large weights. For these shapes
MKL's sgemm is faster with the weight as the left operand, ``(W @ x.T).T``, than with the
``x @ W.T`` that ``nn.Linear`` computes: 1.1 vs 1.6 ms for 16 x 256 x 8000 and 1.9 vs 3.3 ms
for 32 rows on the 2-core dev machine, while from about 160 rows on it is slower
(``bench/decode.py --kernels`` prints both). The arithmetic is the same dot products; only
the loop order inside the library differs. Large batches, other devices and int8-quantized
layers take the ordinary path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    PackedLinear = Any
else:  # the type TorchScript needs for prepacked int8 weights
    PackedLinear = torch.classes.quantized.LinearPackedParamsBase

FEW_ROWS = 64  # at most this many rows take the weight-left path (bench/decode.py --kernels)


def weight_left(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 2 and x.size(0) <= FEW_ROWS


def linear(x: Tensor, layer: nn.Module) -> Tensor:
    """``layer(x)`` for (N, in) ``x``; ``layer`` may be nn.Linear or torch.ao's dynamic int8
    Linear, whose kernel is called directly: the module's call costs 13 us more per step
    than the kernel (38 against 25 us at batch 1 on the dev machine)."""
    packed = int8_weights(layer)
    if packed is not None:  # the arguments torch.ao's Linear.forward passes on x86 CPUs
        out: Tensor = torch.ops.quantized.linear_dynamic(x, packed, True)
        return out
    if not isinstance(layer, nn.Linear):
        out = layer(x)
        return out
    return matmul(x, layer.weight, layer.bias)


def int8_weights(layer: nn.Module) -> Any:
    """torch.ao's dynamic int8 Linear -> its prepacked weights, the argument of
    ``torch.ops.quantized.linear_dynamic``; None for any other layer."""
    packed = getattr(layer, "_packed_params", None)
    return None if packed is None else packed._packed_params


def matmul(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` for (N, in) ``x`` and (out, in) ``weight``."""
    if not weight_left(x):
        return torch.nn.functional.linear(x, weight, bias)
    if bias is None:
        return torch.mm(weight, x.t()).t().contiguous()
    return torch.addmm(bias.unsqueeze(1), weight, x.t()).t().contiguous()


def lstm_cell(
    x: Tensor, h: Tensor, c: Tensor, weights: tuple[Tensor, Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """One LSTM step, (N, in), (N, H), (N, H) -> h', c'; same maths as ``torch.lstm_cell``.

    ``weights`` are nn.LSTM's (w_ih, w_hh, b_ih, b_hh) for one layer, gates in i, f, g, o order.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    if not weight_left(x):
        h_next, c_next = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
        return h_next, c_next
    gates = torch.addmm((b_ih + b_hh).unsqueeze(1), w_ih, x.t())  # (4H, N)
    gates.addmm_(w_hh, h.t())
    return _transposed_update(gates, c)


def recurrent_cell(x_gates: Tensor, h: Tensor, c: Tensor, w_hh: Any) -> tuple[Tensor, Tensor]:
    """One LSTM step whose input side, W_ih x + b_ih + b_hh (N, 4H), is already computed.

    ``w_hh`` is the float (4H, H) recurrent weight or its int8 rows from ``pack_int8``.
    """
    if not isinstance(w_hh, Tensor):
        gates = torch.ops.quantized.linear_dynamic(h, w_hh, True).add_(x_gates)
    elif weight_left(h):
        return _transposed_update(torch.addmm(x_gates.t(), w_hh, h.t()), c)
    else:
        gates = torch.addmm(x_gates, h, w_hh.t())
    return _update(gates, c)


def _update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(N, 4H) gate pre-activations and (N, H) cell -> h', c'."""
    in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)  # (N, H) each
    c_next = forget_gate.sigmoid() * c + in_gate.sigmoid() * cell_gate.tanh()
    h_next = out_gate.sigmoid() * c_next.tanh()
    return h_next, c_next


def _transposed_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``_update`` for the weight-left layout, (4H, N) gates; returns (N, H) again."""
    h_next, c_next = _update(gates.t(), c)
    return h_next.contiguous(), c_next.contiguous()


def pack_int8(weight: Tensor, bias: Tensor | None) -> Any:
    """(out, in) float weight -> int8 rows (one symmetric scale per row), prepacked for
    ``torch.ops.quantized.linear_dynamic``, the kernel torch.ao's dynamic Linear runs."""
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.size(0), dtype=torch.long)
    rows = torch.quantize_per_channel(weight.float(), scales, zero_points, 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(rows, bias)


def pack_lstm_cell_int8(weights: tuple[Tensor, Tensor, Tensor, Tensor]) -> Any:
    """nn.LSTM's (w_ih, w_hh, b_ih, b_hh) of one layer -> one int8 matmul over [x; h]."""
    w_ih, w_hh, b_ih, b_hh = weights
    return pack_int8(torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh)


def lstm_cell_int8(x: Tensor, h: Tensor, c: Tensor, packed: Any) -> tuple[Tensor, Tensor]:
    """``lstm_cell`` with int8 weights from ``pack_lstm_cell_int8``: one matmul per step.

    torch.ao's quantized nn.LSTM costs about 0.5 ms of bookkeeping per call whatever the batch,
    more than the arithmetic of a search step with a few rows.
    """
    gates = torch.ops.quantized.linear_dynamic(torch.cat([x, h], dim=1), packed, True)
    return _update(gates, c)
