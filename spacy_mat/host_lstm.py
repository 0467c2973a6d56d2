"""A bidirectional LSTM over one sequence in numpy, for serving one sentence
on the CPU (``nlp(text)``): torch's LSTM spends most of a short sentence in
per-step dispatch, while here both directions advance together, one batched
``[2, H] @ [2, H, 4H]`` product and a few in-place elementwise calls per
step, with the input projections of all steps computed up front.

Same gate layout and equations as ``torch.nn.LSTM`` (gates i, f, g, o):
``c = f * c + i * g``, ``h = o * tanh(c)``; outputs agree with it to float
rounding (tests/test_host_lstm.py). Pure functions of arrays; the glue that
reads the weights of a module lives in :mod:`spacy_mat.network`.
"""
from typing import List, NamedTuple

import numpy as np


class HostLSTMWeights(NamedTuple):
    """One bidirectional layer, directions stacked (0 = forward, 1 = backward),
    every gate's columns pre-scaled by :func:`gate_scale` (see :func:`bilstm_layer`)."""

    w_ih_t: np.ndarray  # [2, D, 4H]
    w_hh_t: np.ndarray  # [2, H, 4H]
    bias: np.ndarray  # [2, 4H] (b_ih + b_hh)


def gate_scale(hidden: int, dtype: np.dtype) -> np.ndarray:
    """``[4H]``: 1/2 for the sigmoid gates i, f, o and 1 for the cell input g,
    so that one ``tanh`` over all four gates gives ``2 sigmoid(x) - 1`` and
    ``tanh(x)`` (``sigmoid(x) = (1 + tanh(x / 2)) / 2``)."""
    scale = np.full(4 * hidden, 0.5, dtype=dtype)
    scale[2 * hidden: 3 * hidden] = 1.0
    return scale


def layer_weights(w_ih: List[np.ndarray], w_hh: List[np.ndarray], b_ih: List[np.ndarray],
                  b_hh: List[np.ndarray]) -> HostLSTMWeights:
    """Stack torch's per-direction parameters (``weight_ih_l0``,
    ``weight_ih_l0_reverse``, ...: ``[4H, D]``, ``[4H, H]``, ``[4H]``),
    transposed and gate-scaled (by powers of two: exact)."""
    scale = gate_scale(w_hh[0].shape[1], w_hh[0].dtype)
    return HostLSTMWeights(np.ascontiguousarray(np.stack([w.T for w in w_ih]) * scale),
                           np.ascontiguousarray(np.stack([w.T for w in w_hh]) * scale),
                           np.stack([a + b for a, b in zip(b_ih, b_hh)]) * scale)


def bilstm_layer(x: np.ndarray, weights: HostLSTMWeights) -> np.ndarray:
    """``x`` ``[L, D]`` -> ``[L, 2H]``: the forward direction's states, then
    the backward direction's, per position (``torch.nn.LSTM(...,
    bidirectional=True)`` on one unpadded sequence, zero initial state).

    Per step, for both directions at once: one ``[2, 1, H] @ [2, H, 4H]``
    product into a preallocated buffer, one ``tanh`` over the four
    (pre-scaled) gates, and in-place updates
    ``c = ((1 + t_f) c + (1 + t_i) t_g) / 2``, ``h = (1 + t_o) tanh(c) / 2``
    (``1 + t`` = ``2 sigmoid``): a dozen small numpy calls, no temporaries."""
    length = x.shape[0]
    hidden = weights.w_hh_t.shape[1]
    if length == 0:
        return np.zeros((0, 2 * hidden), dtype=x.dtype)
    # input projections of every step; the backward direction reads the sequence reversed
    pre = np.matmul(x[None], weights.w_ih_t) + weights.bias[:, None, :]  # [2, L, 4H]
    pre[1] = pre[1, ::-1].copy()
    out = np.empty((length, 2, hidden), dtype=x.dtype)
    buffer = np.empty((2, 1, 4 * hidden), dtype=x.dtype)
    gates = buffer[:, 0]
    sig_if, t_i, t_f = gates[:, : 2 * hidden], gates[:, :hidden], gates[:, hidden: 2 * hidden]
    t_g, t_o = gates[:, 2 * hidden: 3 * hidden], gates[:, 3 * hidden:]
    c = np.zeros((2, hidden), dtype=x.dtype)
    tmp = np.empty((2, hidden), dtype=x.dtype)
    h = np.zeros((2, 1, hidden), dtype=x.dtype)
    for t in range(length):
        np.matmul(h, weights.w_hh_t, out=buffer)
        gates += pre[:, t]
        np.tanh(gates, out=gates)
        sig_if += 1.0
        t_o += 1.0
        c *= t_f
        np.multiply(t_i, t_g, out=tmp)
        c += tmp
        c *= 0.5
        state = out[t]
        np.tanh(c, out=state)
        state *= t_o
        state *= 0.5
        h = state[:, None, :]
    return np.concatenate([out[:, 0], out[::-1, 1]], axis=1)


def bilstm(x: np.ndarray, layers: List[HostLSTMWeights]) -> np.ndarray:
    """Stacked bidirectional layers (no dropout: prediction)."""
    for weights in layers:
        x = bilstm_layer(x, weights)
    return x
