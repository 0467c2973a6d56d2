"""The torch network: normalised word/char embeddings, a character CNN, a
BiLSTM with variational dropout, and one linear + CRF head per tag set.

Knows nothing of spaCy or thinc: it takes padded id tensors and returns
emission scores, losses and best paths.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .adversarial import weighted_moments
from .crf import CRF

Allowed = Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]


class NormalizedEmbedding(nn.Module):
    """Embedding table whose rows are normalised on the fly with the
    frequency-weighted mean and variance of the table (per dimension), as in
    Miyato et al. (2017). ``freq`` (a persistent buffer) holds the training
    frequencies; with all-zero counts the weighting is uniform."""

    def __init__(self, n_rows: int, width: int, counts: Optional[Sequence[int]] = None,
                 normalize: bool = True):
        super().__init__()
        bound = math.sqrt(3.0 / width)
        self.weight = nn.Parameter(torch.empty(n_rows, width).uniform_(-bound, bound))
        counts_t = torch.zeros(n_rows) if counts is None else torch.tensor(counts, dtype=torch.float32)
        self.register_buffer("freq", counts_t)
        self.normalize = normalize

    def stats(self) -> Tuple[Tensor, Tensor]:
        """Frequency-weighted mean and standard deviation, each ``[width]``."""
        return weighted_moments(self.weight, self.freq)

    def normalized_table(self) -> Tensor:
        mean, std = self.stats()
        return (self.weight - mean) / std

    def forward(self, ids: Tensor) -> Tensor:
        rows = nn.functional.embedding(ids, self.weight)
        if not self.normalize:
            return rows
        mean, std = self.stats()
        return (rows - mean) / std


class VariationalDropout(nn.Module):
    """Dropout with one mask per sequence shared over all time steps."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:  # x: [B, L, D]
        if not self.training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep
        return x * mask


class CharCNN(nn.Module):
    """Convolution over a word's character embeddings, max-pooled over positions."""

    def __init__(self, char_width: int, n_filters: int, window: int):
        super().__init__()
        self.conv = nn.Conv1d(char_width, n_filters, window, padding=window // 2)

    def forward(self, char_vectors: Tensor, char_mask: Tensor) -> Tensor:
        """``[N, W, C]`` vectors and ``[N, W]`` mask -> ``[N, n_filters]``;
        rows without characters (padding words) give zeros."""
        width = char_vectors.shape[1]
        # padding chars read as zeros, exactly like the convolution's own padding
        inputs = char_vectors * char_mask[:, :, None].to(char_vectors.dtype)
        h = self.conv(inputs.transpose(1, 2))[:, :, :width]
        h = h.masked_fill(~char_mask[:, None, :], float("-inf"))
        pooled = h.max(dim=2).values
        return pooled.masked_fill(~char_mask.any(dim=1, keepdim=True), 0.0)


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM over packed sequences, with variational
    dropout on the input of every layer and on the output of the last."""

    def __init__(self, input_width: int, hidden_width: int, depth: int, dropout: float):
        super().__init__()
        widths = [input_width] + [2 * hidden_width] * (depth - 1)
        self.layers = nn.ModuleList(
            nn.LSTM(w, hidden_width, batch_first=True, bidirectional=True) for w in widths
        )
        self.dropout = VariationalDropout(dropout)
        for lstm in self.layers:  # forget-gate bias 1 (Jozefowicz et al. 2015)
            for name, param in lstm.named_parameters():
                if name.startswith("bias_ih"):
                    param.data[hidden_width: 2 * hidden_width].fill_(1.0)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        total = x.shape[1]
        lengths_cpu = lengths.cpu()
        for lstm in self.layers:
            packed = pack_padded_sequence(self.dropout(x), lengths_cpu, batch_first=True,
                                          enforce_sorted=False)
            out, _ = lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        return self.dropout(x)


class ScalarMix(nn.Module):
    """Weighted sum over a stack of layers ``[..., K, D] -> [..., D]`` (Peters
    et al. 2018). Trainable: ``gamma * sum_k softmax(s)_k h_k`` with the
    scalars ``s`` and ``gamma`` as parameters, ``s`` starting at
    ``log(weights)``. Fixed: ``sum_k w_k h_k`` with ``weights`` normalised to
    sum to 1 and kept as a buffer (no gradient, never optimised).
    ``weights = None`` means equal weights."""

    def __init__(self, n_layers: int, weights: Optional[Sequence[float]] = None,
                 trainable: bool = True):
        super().__init__()
        w = torch.ones(n_layers) if weights is None else torch.tensor(list(weights), dtype=torch.float32)
        if w.shape != (n_layers,) or bool((w <= 0).any()):
            raise ValueError(f"ScalarMix: need {n_layers} positive layer weights, got {list(w.tolist())}")
        w = w / w.sum()
        self.trainable = trainable
        if trainable:
            self.scalars = nn.Parameter(torch.log(w))
            self.gamma = nn.Parameter(torch.ones(1))  # 1-d: thinc optimizers reject 0-d arrays
        else:
            self.register_buffer("weights", w)

    def normalized_weights(self) -> Tensor:
        return torch.softmax(self.scalars, dim=0) if self.trainable else self.weights

    def forward(self, layers: Tensor) -> Tensor:
        w = self.normalized_weights().to(layers.dtype)
        mixed = (layers * w[:, None]).sum(dim=-2)
        return mixed * self.gamma if self.trainable else mixed


class CharCNNBiLSTMCRF(nn.Module):
    """CNN-LSTM-CRF (Ma & Hovy 2016) with one emission layer and CRF per head.

    ``heads`` gives each head's tag count and optional allowed-transition
    masks. ``context_width`` > 0 adds an external feature vector per token
    (``[B, L, context_width]``); with ``context_layers`` > 0 the context comes
    as a stack of layers ``[B, L, context_layers, context_width]`` that a
    trainable :class:`ScalarMix` (initial weights ``context_mix_init``) mixes.
    """

    def __init__(
        self,
        n_words: int,
        n_chars: int,
        heads: Sequence[Tuple[int, Allowed]],
        *,
        word_width: int = 100,
        char_width: int = 30,
        char_filters: int = 30,
        char_window: int = 3,
        hidden_width: int = 200,
        depth: int = 1,
        dropout: float = 0.2,
        word_dropout: float = 0.0,
        normalize_embeddings: bool = True,
        context_width: int = 0,
        context_layers: int = 0,
        context_mix_init: Optional[Sequence[float]] = None,
        word_counts: Optional[Sequence[int]] = None,
        char_counts: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        self.word_dropout = word_dropout
        self.word_embed = NormalizedEmbedding(n_words, word_width, word_counts, normalize_embeddings)
        self.char_embed = NormalizedEmbedding(n_chars, char_width, char_counts, normalize_embeddings)
        self.char_cnn = CharCNN(char_width, char_filters, char_window)
        self.lstm = BiLSTM(word_width + char_filters + context_width, hidden_width, depth, dropout)
        self.emitters = nn.ModuleList(nn.Linear(2 * hidden_width, n) for n, _ in heads)
        self.crfs = nn.ModuleList(CRF(n, allowed) for n, allowed in heads)
        self.context_mix = ScalarMix(context_layers, context_mix_init) if context_layers else None

    def drop_words(self, word_ids: Tensor, unk_id: int, pad_id: int = 0) -> Tensor:
        """Replace words by ``unk_id`` at rate ``word_dropout`` (training only)."""
        if not self.training or self.word_dropout <= 0:
            return word_ids
        drop = torch.rand(word_ids.shape, device=word_ids.device) < self.word_dropout
        return word_ids.masked_fill(drop & (word_ids != pad_id), unk_id)

    def embed(self, word_ids: Tensor, char_ids: Tensor) -> Tuple[Tensor, Tensor]:
        """Normalised word ``[B, L, Dw]`` and char ``[B, L, W, Dc]`` vectors."""
        return self.word_embed(word_ids), self.char_embed(char_ids)

    def emissions(self, words: Tensor, chars: Tensor, char_ids: Tensor, lengths: Tensor,
                  context: Optional[Tensor] = None) -> List[Tensor]:
        """Per-head emission scores ``[B, L, T_h]`` from embedded inputs."""
        b, n, w, c = chars.shape
        char_mask = char_ids.reshape(b * n, w) != 0
        # the CNN runs on real tokens only: a random batch of sentences is
        # mostly padding (e.g. 64 x 78 slots for ~900 tokens), and padding
        # rows come out as zeros anyway
        rows = char_mask.any(dim=1).nonzero().squeeze(1)
        feats = self.char_cnn(chars.reshape(b * n, w, c).index_select(0, rows),
                              char_mask.index_select(0, rows))
        char_feats = feats.new_zeros(b * n, feats.shape[1]).index_copy(0, rows, feats)
        parts = [words, char_feats.reshape(b, n, -1)]
        if context is not None:
            parts.append(context if self.context_mix is None else self.context_mix(context))
        hidden = self.lstm(torch.cat(parts, dim=-1), lengths)
        return [emit(hidden) for emit in self.emitters]

    def nll(self, emissions: Sequence[Tensor], tags: Sequence[Tensor], mask: Tensor) -> Tensor:
        """Negative log-likelihood per sequence ``[B]``, summed over heads."""
        return sum(crf.nll(e, t, mask) for crf, e, t in zip(self.crfs, emissions, tags))

    def decode(self, emissions: Sequence[Tensor], mask: Tensor) -> List[Tensor]:
        """Best tag path per head, ``[B, L]`` each."""
        return [crf.decode(e, mask) for crf, e in zip(self.crfs, emissions)]


def length_mask(lengths: Tensor, total: int) -> Tensor:
    """``[B, total]`` bool mask, True at the first ``lengths[b]`` positions."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]
