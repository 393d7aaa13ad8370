"""The weight-left step kernels compute what nn.Linear / torch.lstm_cell compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model import step_kernels

ROWS = [1, 5, step_kernels.FEW_ROWS, step_kernels.FEW_ROWS + 1]  # both paths


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_nn_linear(rows: int, bias: bool) -> None:
    torch.manual_seed(rows)
    layer = nn.Linear(24, 40, bias=bias)
    x = torch.randn(rows, 24)
    out = step_kernels.linear(x, layer)
    assert out.is_contiguous() and out.shape == (rows, 40)
    torch.testing.assert_close(out, layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", ROWS)
def test_lstm_cell_matches_torch(rows: int) -> None:
    torch.manual_seed(rows)
    lstm = nn.LSTM(12, 16)
    x, h, c = torch.randn(rows, 12), torch.randn(rows, 16), torch.randn(rows, 16)
    weights = tuple(lstm.all_weights[0])
    h_next, c_next = step_kernels.lstm_cell(x, h, c, weights)  # type: ignore[arg-type]
    want_h, want_c = torch.lstm_cell(x, (h, c), *weights)
    assert h_next.is_contiguous() and c_next.is_contiguous()
    torch.testing.assert_close(h_next, want_h, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_next, want_c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("int8", [False, True])
def test_recurrent_cell_with_precomputed_input_gates_matches_torch(rows: int, int8: bool) -> None:
    torch.manual_seed(rows)
    lstm = nn.LSTM(12, 16)
    x, h, c = torch.randn(rows, 12), torch.randn(rows, 16), torch.randn(rows, 16)
    w_ih, w_hh, b_ih, b_hh = lstm.all_weights[0]
    x_gates = x @ w_ih.t() + b_ih + b_hh
    recurrent = step_kernels.pack_int8(w_hh, None) if int8 else w_hh
    h_next, c_next = step_kernels.recurrent_cell(x_gates, h, c, recurrent)
    want_h, want_c = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    tolerance = 0.03 if int8 else 1e-5  # int8: see test_int8_lstm_cell_is_close_to_the_float_cell
    assert h_next.is_contiguous() and c_next.is_contiguous()
    torch.testing.assert_close(h_next, want_h, rtol=0, atol=tolerance)
    torch.testing.assert_close(c_next, want_c, rtol=0, atol=tolerance)


@pytest.mark.parametrize("rows", [1, 3, 100])
def test_int8_layers_call_their_kernel_with_the_arguments_of_their_module(rows: int) -> None:
    """Bit for bit: the kernel without the module call must be the module's computation."""
    torch.manual_seed(rows)
    model = nn.Sequential(nn.Linear(24, 40))
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(rows, 24) * 3
    assert torch.equal(step_kernels.linear(x, quantized[0]), quantized(x))


@pytest.mark.parametrize("rows", [1, 5, 100])
def test_int8_lstm_cell_is_close_to_the_float_cell(rows: int) -> None:
    torch.manual_seed(rows)
    lstm = nn.LSTM(12, 16)
    x, h, c = torch.randn(rows, 12), torch.randn(rows, 16), torch.randn(rows, 16)
    weights = tuple(lstm.all_weights[0])
    packed = step_kernels.pack_lstm_cell_int8(weights)  # type: ignore[arg-type]
    h_next, c_next = step_kernels.lstm_cell_int8(x, h, c, packed)
    want_h, want_c = torch.lstm_cell(x, (h, c), *weights)
    # int8 weights and 7-bit activations: a few hundredths, not the float result exactly.
    torch.testing.assert_close(h_next, want_h, rtol=0, atol=0.03)
    torch.testing.assert_close(c_next, want_c, rtol=0, atol=0.05)


def test_int8_translator_steps_through_int8_cells(tiny_model: nn.Module) -> None:
    from model.placement import quantize_int8

    quantized = quantize_int8(tiny_model)
    assert quantized.decoder.step_weights is not None  # type: ignore[union-attr]
    assert isinstance(quantized.decoder.rnn, nn.LSTM)  # type: ignore[union-attr]
    assert not isinstance(quantized.encoder.rnn, nn.LSTM)  # type: ignore[union-attr]
    assert tiny_model.decoder.step_weights is None  # type: ignore[union-attr]
    assert not hasattr(tiny_model.decoder.rnn, "qconfig")  # type: ignore[union-attr]
