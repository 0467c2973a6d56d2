"""The tagger's forward pass for one sentence in numpy, for serving
``nlp(text)`` on the CPU: for a short sentence torch spends most of its time
in per-operation dispatch (embedding lookups, the char CNN, the emission
layer: ~25 small operations), while the numpy versions of the same
equations cost a few microseconds each.

Pure functions of arrays, equal to the torch modules of
:mod:`spacy_mat.network` up to float rounding (tests/test_host_forward.py);
the glue that reads a network's weights lives there. The BiLSTM is in
:mod:`spacy_mat.host_lstm`.
"""
from typing import List, NamedTuple, Optional

import numpy as np

from . import host_lstm


class HostTable(NamedTuple):
    """An embedding table split as :class:`~spacy_mat.network.NormalizedEmbedding`
    holds it (trainable rows first, then fixed rows), with its normalisation."""

    trained: np.ndarray  # [n_trained, D]
    fixed: np.ndarray  # [n_fixed, D]
    mean: Optional[np.ndarray]  # [D], None = no normalisation
    std: Optional[np.ndarray]  # [D]


class HostTagger(NamedTuple):
    """Everything the one-sentence forward pass reads."""

    words: HostTable
    chars: HostTable
    conv_weight: np.ndarray  # [F, C, k] (torch Conv1d layout)
    conv_bias: np.ndarray  # [F]
    lstm: List[host_lstm.HostLSTMWeights]
    emitters: List[tuple]  # per head: (weight [T, 2H], bias [T])


def lookup(table: HostTable, ids: np.ndarray) -> np.ndarray:
    """Normalised rows of ``ids`` (any shape) -> ``[..., D]``."""
    n = table.trained.shape[0]
    if table.fixed.shape[0] == 0:
        rows = table.trained[ids]
    else:
        low = ids < n
        rows = np.where(low[..., None], table.trained[np.minimum(ids, n - 1)],
                        table.fixed[np.maximum(ids - n, 0)])
    if table.mean is None:
        return rows
    return (rows - table.mean) / table.std


def char_cnn(vectors: np.ndarray, mask: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """:class:`~spacy_mat.network.CharCNN`: ``[N, W, C]`` vectors and
    ``[N, W]`` mask -> ``[N, F]``, convolution (zero padding ``k // 2`` each
    side, the first ``W`` positions) max-pooled over the real characters;
    rows without characters give zeros. One ``[N*W, k*C] @ [k*C, F]`` product."""
    n, width, c = vectors.shape
    filters, _, k = weight.shape
    pad = k // 2
    inputs = np.zeros((n, width + 2 * pad, c), dtype=vectors.dtype)
    inputs[:, pad: pad + width] = vectors * mask[:, :, None]
    windows = np.stack([inputs[:, j: j + width] for j in range(k)], axis=2)  # [N, W, k, C]
    kernel = weight.transpose(2, 1, 0).reshape(k * c, filters)  # [k*C, F]
    h = windows.reshape(n * width, k * c) @ kernel
    h = h.reshape(n, width, filters) + bias
    h = np.where(mask[:, :, None], h, -np.inf).max(axis=1)
    h[~mask.any(axis=1)] = 0.0
    return h


def emissions(weights: HostTagger, word_ids: np.ndarray, char_ids: np.ndarray) -> List[np.ndarray]:
    """Per-head emission scores ``[L, T_h]`` of one sentence: word ids ``[L]``
    and char ids ``[L, W]`` (0 = padding), no context features, no dropout."""
    words = lookup(weights.words, word_ids)
    chars = lookup(weights.chars, char_ids)
    feats = char_cnn(chars, char_ids != 0, weights.conv_weight, weights.conv_bias)
    hidden = host_lstm.bilstm(np.concatenate([words, feats.astype(words.dtype)], axis=1), weights.lstm)
    return [hidden @ w.T + b for w, b in weights.emitters]
