"""A bidirectional LSTM over one sequence in numpy, for serving one sentence
on the CPU (``nlp(text)``): torch's LSTM spends most of a short sentence in
per-step dispatch, while here both directions advance together, one batched
``[2, H] @ [2, H, 4H]`` product and a few elementwise calls per step, with
the input projections of all steps computed up front.

Same gate layout and equations as ``torch.nn.LSTM`` (gates i, f, g, o):
``c = f * c + i * g``, ``h = o * tanh(c)``; outputs agree with it to float
rounding (tests/test_host_lstm.py). Pure functions of arrays; the glue that
reads the weights of a module lives in :mod:`spacy_mat.network`.
"""
from typing import List, NamedTuple

import numpy as np


class HostLSTMWeights(NamedTuple):
    """One bidirectional layer, directions stacked (0 = forward, 1 = backward)."""

    w_ih_t: np.ndarray  # [2, D, 4H]
    w_hh_t: np.ndarray  # [2, H, 4H]
    bias: np.ndarray  # [2, 4H] (b_ih + b_hh)


def layer_weights(w_ih: List[np.ndarray], w_hh: List[np.ndarray], b_ih: List[np.ndarray],
                  b_hh: List[np.ndarray]) -> HostLSTMWeights:
    """Stack torch's per-direction parameters (``weight_ih_l0``,
    ``weight_ih_l0_reverse``, ...: ``[4H, D]``, ``[4H, H]``, ``[4H]``)."""
    return HostLSTMWeights(np.ascontiguousarray(np.stack([w.T for w in w_ih])),
                           np.ascontiguousarray(np.stack([w.T for w in w_hh])),
                           np.stack([a + b for a, b in zip(b_ih, b_hh)]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5  # no overflow warning for large |x|


def bilstm_layer(x: np.ndarray, weights: HostLSTMWeights) -> np.ndarray:
    """``x`` ``[L, D]`` -> ``[L, 2H]``: the forward direction's states, then
    the backward direction's, per position (``torch.nn.LSTM(...,
    bidirectional=True)`` on one unpadded sequence, zero initial state)."""
    length = x.shape[0]
    hidden = weights.w_hh_t.shape[1]
    out = np.zeros((2, length, hidden), dtype=x.dtype)
    if length == 0:
        return out.transpose(1, 0, 2).reshape(0, 2 * hidden)
    # input projections of every step; the backward direction reads the sequence reversed
    pre = np.matmul(x[None], weights.w_ih_t) + weights.bias[:, None, :]  # [2, L, 4H]
    pre[1] = pre[1, ::-1].copy()
    h = np.zeros((2, 1, hidden), dtype=x.dtype)
    c = np.zeros((2, hidden), dtype=x.dtype)
    for t in range(length):
        gates = pre[:, t] + np.matmul(h, weights.w_hh_t)[:, 0]  # [2, 4H]
        act = _sigmoid(gates)
        c = act[:, hidden: 2 * hidden] * c + act[:, :hidden] * np.tanh(gates[:, 2 * hidden: 3 * hidden])
        state = act[:, 3 * hidden:] * np.tanh(c)
        out[:, t] = state
        h = state[:, None, :]
    return np.concatenate([out[0], out[1, ::-1]], axis=1)


def bilstm(x: np.ndarray, layers: List[HostLSTMWeights]) -> np.ndarray:
    """Stacked bidirectional layers (no dropout: prediction)."""
    for weights in layers:
        x = bilstm_layer(x, weights)
    return x
