"""The torch network: normalised word/char embeddings, a character CNN, a
BiLSTM with variational dropout, and one linear + CRF head per tag set.

Knows nothing of spaCy or thinc: it takes padded id tensors and returns
emission scores, losses and best paths.
"""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import host_forward, host_lstm
from .adversarial import weighted_moments
from .crf import CRF
from .weights_key import weights_key

Allowed = Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]


class NormalizedEmbedding(nn.Module):
    """Embedding table whose rows are normalised on the fly with the
    frequency-weighted mean and variance of the table (per dimension), as in
    Miyato et al. (2017). ``freq`` (a persistent buffer) holds the training
    frequencies; with all-zero counts the weighting is uniform.

    Only the first ``n_trainable`` rows are a parameter (``weight``); the
    rest (``fixed``, a persistent buffer) get no gradient and no optimizer
    state: with 400,000 pretrained-only GloVe rows, a dense gradient and Adam
    over all of them would cost as much as the rest of the step. The moments
    are taken over the first ``n_counted`` rows (the rows with training
    counts; the others weigh 0 anyway), so their gradient stays small too.
    """

    def __init__(self, n_rows: int, width: int, counts: Optional[Sequence[int]] = None,
                 normalize: bool = True, n_trainable: Optional[int] = None,
                 n_counted: Optional[int] = None):
        super().__init__()
        n_trainable = n_rows if n_trainable is None else n_trainable
        if not 0 < n_trainable <= n_rows:
            raise ValueError(f"NormalizedEmbedding: n_trainable={n_trainable} not in [1, {n_rows}]")
        bound = math.sqrt(3.0 / width)
        self.weight = nn.Parameter(torch.empty(n_trainable, width).uniform_(-bound, bound))
        self.register_buffer("fixed", torch.empty(n_rows - n_trainable, width).uniform_(-bound, bound))
        counts_t = torch.zeros(n_rows) if counts is None else torch.tensor(counts, dtype=torch.float32)
        self.register_buffer("freq", counts_t)
        self.normalize = normalize
        self.n_counted = n_rows if n_counted is None else min(n_counted, n_trainable)

    @property
    def n_rows(self) -> int:
        return self.weight.shape[0] + self.fixed.shape[0]

    def table(self) -> Tensor:
        """All rows ``[n_rows, width]`` (un-normalised); a copy when some are fixed."""
        return self.weight if self.fixed.shape[0] == 0 else torch.cat([self.weight, self.fixed])

    def stats(self) -> Tuple[Tensor, Tensor]:
        """Frequency-weighted mean and standard deviation, each ``[width]``."""
        n = self.n_counted
        return weighted_moments(self.weight[:n], self.freq[:n])

    def normalized_table(self) -> Tensor:
        mean, std = self.stats()
        return (self.table() - mean) / std

    def lookup(self, ids: Tensor) -> Tensor:
        """Un-normalised rows of ``ids`` (any shape) -> ``[..., width]``."""
        n = self.weight.shape[0]
        if self.fixed.shape[0] == 0:
            return nn.functional.embedding(ids, self.weight)
        trained = nn.functional.embedding(ids.clamp_max(n - 1), self.weight)
        fixed = nn.functional.embedding((ids - n).clamp_min(0), self.fixed)
        return torch.where((ids < n).unsqueeze(-1), trained, fixed)

    def forward(self, ids: Tensor) -> Tensor:
        rows = self.lookup(ids)
        if not self.normalize:
            return rows
        mean, std = self.stats()
        return (rows - mean) / std

    def set_rows(self, rows: Tensor, values: Tensor) -> None:
        """Overwrite rows (trainable or fixed) without recording gradients."""
        n = self.weight.shape[0]
        with torch.no_grad():
            low = rows < n
            self.weight[rows[low]] = values[low].to(self.weight.dtype)
            self.fixed[rows[~low] - n] = values[~low].to(self.fixed.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # pipelines saved before the fixed rows existed: none are fixed
        state_dict.setdefault(prefix + "fixed", self.fixed.new_zeros(0, self.weight.shape[1]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class VariationalDropout(nn.Module):
    """Dropout with one mask per sequence shared over all time steps."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor, order: Optional[Tensor] = None) -> Tensor:  # x: [B, L, D]
        """``order``: ``x``'s rows are the batch's rows in this order; the
        masks are drawn in batch order and permuted alike, so that a sorted
        batch gets the same masks per sequence as the unsorted one."""
        if not self.training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep) / keep
        if order is not None:
            mask = mask.index_select(0, order)
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
        self.host_single = True  # one sentence in prediction: the numpy loop (see _runs_on_host)
        self._host_cache: Optional[Tuple[tuple, List[host_lstm.HostLSTMWeights]]] = None
        for lstm in self.layers:  # forget-gate bias 1 (Jozefowicz et al. 2015)
            for name, param in lstm.named_parameters():
                if name.startswith("bias_ih"):
                    param.data[hidden_width: 2 * hidden_width].fill_(1.0)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``x`` ``[B, L, D]``, ``lengths`` ``[B]`` -> ``[B, L, 2H]`` (zeros at padding).

        Packing reads the lengths on the host: pass them as a CPU tensor (a
        host copy of the batch's lengths) and no value is copied from the
        device. Rows are sorted by length on the host once for all layers (and
        unsorted once at the end), so packing never moves indices between
        host and device; a batch without padding (e.g. one sentence) runs
        unpacked."""
        total = x.shape[1]
        host = lengths.cpu()  # no copy when the caller passes host lengths
        if bool((host == total).all()):
            if self._runs_on_host(x):
                out = host_lstm.bilstm(x[0].numpy(), self._host_weights())
                return torch.from_numpy(out).unsqueeze(0)
            for lstm in self.layers:
                x, _ = lstm(self.dropout(x))
            return self.dropout(x)
        order = torch.argsort(host, descending=True, stable=True)
        sorted_lengths = host.index_select(0, order)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        if x.device.type != "cpu":
            order = order.to(x.device, non_blocking=True)
            inverse = inverse.to(x.device, non_blocking=True)
        x = x.index_select(0, order)
        for lstm in self.layers:
            packed = pack_padded_sequence(self.dropout(x, order), sorted_lengths, batch_first=True,
                                          enforce_sorted=True)
            out, _ = lstm(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        return self.dropout(x.index_select(0, inverse))

    def _runs_on_host(self, x: Tensor) -> bool:
        """One sequence on the CPU in prediction (eval mode, no autograd):
        :mod:`spacy_mat.host_lstm` is ~1.5x faster than torch's LSTM there
        (0.85 vs 1.25 ms for a 13-token sentence; serving ``nlp(text)``)."""
        return (self.host_single and not self.training and x.shape[0] == 1 and x.device.type == "cpu"
                and x.dtype in (torch.float32, torch.float64)
                and not (torch.is_grad_enabled() and x.requires_grad))

    def _host_weights(self) -> List[host_lstm.HostLSTMWeights]:
        """The layers' weights as numpy arrays, cached; dropped by :meth:`train`
        (thinc's optimizer updates weights in place) and keyed by the
        parameters' storage and version counters."""
        key = weights_key(self.parameters())
        if self._host_cache is None or self._host_cache[0] != key:
            layers = []
            for lstm in self.layers:
                get = [[getattr(lstm, f"{name}_l0{suffix}").detach().numpy() for suffix in ("", "_reverse")]
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                layers.append(host_lstm.layer_weights(*get))
            self._host_cache = (key, layers)
        return self._host_cache[1]

    def train(self, mode: bool = True) -> "BiLSTM":
        self._host_cache = None
        return super().train(mode)


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
        n_trainable_words: Optional[int] = None,
        n_counted_words: Optional[int] = None,
    ):
        super().__init__()
        self.word_dropout = word_dropout
        self.word_embed = NormalizedEmbedding(n_words, word_width, word_counts, normalize_embeddings,
                                              n_trainable=n_trainable_words,
                                              n_counted=n_counted_words)
        self.char_embed = NormalizedEmbedding(n_chars, char_width, char_counts, normalize_embeddings)
        self.char_cnn = CharCNN(char_width, char_filters, char_window)
        self.lstm = BiLSTM(word_width + char_filters + context_width, hidden_width, depth, dropout)
        self.emitters = nn.ModuleList(nn.Linear(2 * hidden_width, n) for n, _ in heads)
        self.crfs = nn.ModuleList(CRF(n, allowed) for n, allowed in heads)
        self.context_mix = ScalarMix(context_layers, context_mix_init) if context_layers else None
        self._stats_cache: Dict[int, Tuple[Any, Tuple[Tensor, Tensor]]] = {}
        self._host_cache: Optional[Tuple[List[Tensor], tuple, Optional[host_forward.HostTagger]]] = None

    def drop_words(self, word_ids: Tensor, unk_id: int, pad_id: int = 0) -> Tensor:
        """Replace words by ``unk_id`` at rate ``word_dropout`` (training only)."""
        if not self.training or self.word_dropout <= 0:
            return word_ids
        drop = torch.rand(word_ids.shape, device=word_ids.device) < self.word_dropout
        return word_ids.masked_fill(drop & (word_ids != pad_id), unk_id)

    def embed(self, word_ids: Tensor, char_ids: Tensor) -> Tuple[Tensor, Tensor]:
        """Normalised word ``[B, L, Dw]`` and char ``[B, L, W, Dc]`` vectors.

        In eval mode without autograd (prediction), the normalisation
        statistics of each table (a pass over all its rows, e.g. 23k x 100
        words: most of the cost of tagging one short sentence) are computed
        once and reused; see :meth:`frozen_stats`."""
        if self.training or torch.is_grad_enabled():
            return self.word_embed(word_ids), self.char_embed(char_ids)
        return self._frozen_embed(self.word_embed, word_ids), self._frozen_embed(self.char_embed, char_ids)

    def _frozen_embed(self, table: NormalizedEmbedding, ids: Tensor) -> Tensor:
        if not table.normalize:
            return table(ids)
        mean, std = self.frozen_stats(table)
        return (table.lookup(ids) - mean) / std

    def frozen_stats(self, table: NormalizedEmbedding) -> Tuple[Tensor, Tensor]:
        """``table.stats()``, cached for prediction. The cache is dropped by
        :meth:`train` (every training step calls ``train()``; thinc's
        optimizer then updates the weights in place, which torch cannot
        see) and keyed by the storage and version counter of the table's
        tensors (a new or resized table, ``load_state_dict``, in-place torch
        edits). Call :meth:`train` or :meth:`clear_caches` after changing the
        weights any other way."""
        key = (weights_key((table.weight, table.fixed, table.freq)), getattr(table, "n_counted", None))
        hit = self._stats_cache.get(id(table))
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = (key, table.stats())
            self._stats_cache[id(table)] = hit
        return hit[1]

    def clear_caches(self) -> None:
        self._stats_cache.clear()
        self._host_cache = None

    def train(self, mode: bool = True) -> "CharCNNBiLSTMCRF":
        self.clear_caches()
        return super().train(mode)

    def host_weights(self) -> Optional[host_forward.HostTagger]:
        """The weights for :func:`spacy_mat.host_forward.emissions` (numpy
        views of the parameters, plus the stacked LSTM matrices and the
        normalisation statistics), or None where that path does not apply:
        training mode, the BiLSTM's host loop off, context features, weights
        not on the CPU in float32/64 (its arrays are detached: autograd
        may be on).

        Cached, and checked per call against the storage and version
        counters of the tensors it was built from (as :meth:`frozen_stats`):
        a move to another device or dtype, ``load_state_dict`` and in-place
        edits rebuild it; :meth:`train` and :meth:`clear_caches` drop it. A
        parameter *replaced* by a new tensor (growing a table or a head:
        :func:`spacy_mat.architectures.add_words` and ``add_head_labels``
        call :meth:`clear_caches`) is not seen: call :meth:`clear_caches`."""
        if self.training or not self.lstm.host_single or self.context_mix is not None:
            return None
        cached = getattr(self, "_host_cache", None)
        if cached is None or cached[1] != weights_key(cached[0]):
            cached = self._host_cache = self._build_host_weights()
        return cached[2]

    def _build_host_weights(self) -> Tuple[List[Tensor], tuple, Optional[host_forward.HostTagger]]:
        tensors = [self.word_embed.weight, self.word_embed.fixed, self.word_embed.freq,
                   self.char_embed.weight, self.char_embed.fixed, self.char_embed.freq,
                   *self.char_cnn.conv.parameters(), *self.lstm.parameters(), *self.emitters.parameters()]
        key = weights_key(tensors)
        weight = self.word_embed.weight
        if (weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64)
                or any(t.device != weight.device or t.dtype != weight.dtype for t in tensors)
                or self.lstm.layers[0].input_size != weight.shape[1] + self.char_cnn.conv.out_channels):
            return tensors, key, None
        with torch.no_grad():
            tables = []
            for table in (self.word_embed, self.char_embed):
                mean = std = None
                if table.normalize:
                    mean, std = (t.numpy() for t in self.frozen_stats(table))
                tables.append(host_forward.HostTable(table.weight.detach().numpy(), table.fixed.numpy(),
                                                     mean, std))
            weights = host_forward.HostTagger(
                *tables, self.char_cnn.conv.weight.detach().numpy(), self.char_cnn.conv.bias.detach().numpy(),
                self.lstm._host_weights(),
                [(e.weight.detach().numpy(), e.bias.detach().numpy()) for e in self.emitters])
        return tensors, key, weights

    def emissions(self, words: Tensor, chars: Tensor, char_ids: Tensor, lengths: Tensor,
                  context: Optional[Tensor] = None) -> List[Tensor]:
        """Per-head emission scores ``[B, L, T_h]`` from embedded inputs.

        ``lengths`` ``[B]`` is read on the host (which tokens are real, and
        packing): pass a CPU tensor, a host copy of the batch's lengths, and
        nothing is copied back from the device."""
        b, n, w, c = chars.shape
        char_mask = char_ids.reshape(b * n, w) != 0
        # the CNN runs on real tokens only: a random batch of sentences is
        # mostly padding (e.g. 64 x 78 slots for ~900 tokens), and padding
        # rows come out as zeros anyway
        host_lengths = lengths.cpu()  # no copy for host lengths
        rows = length_mask(host_lengths, n).reshape(-1).nonzero().squeeze(1)
        if chars.device.type != "cpu":
            rows = rows.to(chars.device, non_blocking=True)
        n_real = len(rows)
        cnn_rows, cnn_chars, cnn_mask = rows, chars.reshape(b * n, w, c), char_mask
        if not self.training:
            # prediction sees endless (tokens, word width) shapes, and each new
            # one adds an entry to oneDNN's primitive cache (resident memory
            # creeping up with every batch): round both up to a few sizes
            # (repeated rows are dropped below; padding chars are masked)
            cnn_rows = torch.cat([rows, rows.new_zeros(shape_bucket(n_real) - n_real)])
            extra = -w % 4
            if extra:
                cnn_chars = torch.nn.functional.pad(cnn_chars, (0, 0, 0, extra))
                cnn_mask = torch.nn.functional.pad(cnn_mask, (0, extra))
        feats = self.char_cnn(cnn_chars.index_select(0, cnn_rows),
                              cnn_mask.index_select(0, cnn_rows))[:n_real]
        char_feats = feats.new_zeros(b * n, feats.shape[1]).index_copy(0, rows, feats)
        parts = [words, char_feats.reshape(b, n, -1)]
        if context is not None:
            parts.append(context if self.context_mix is None else self.context_mix(context))
        hidden = self.lstm(torch.cat(parts, dim=-1), host_lengths)
        return [emit(hidden) for emit in self.emitters]

    def nll(self, emissions: Sequence[Tensor], tags: Sequence[Tensor], mask: Tensor,
            partial: Optional[Sequence[bool]] = None) -> Tensor:
        """Negative log-likelihood per sequence ``[B]``, summed over heads.
        ``partial[h]``: whether head h's tags have unknown (``< 0``) entries,
        when known on the host (see :meth:`CRF.nll`)."""
        flags = [None] * len(self.crfs) if partial is None else list(partial)
        return sum(crf.nll(e, t, mask, partial=p)
                   for crf, e, t, p in zip(self.crfs, emissions, tags, flags))

    def decode(self, emissions: Sequence[Tensor], mask: Tensor) -> List[Tensor]:
        """Best tag path per head, ``[B, L]`` each."""
        return [crf.decode(e, mask) for crf, e in zip(self.crfs, emissions)]


def shape_bucket(n: int) -> int:
    """``n`` rounded up to the next of 1..8, then sizes growing by 1.25x
    (8, 10, 13, 17, 22, ...): at most 25% padding, a few dozen sizes up to
    thousands of rows."""
    if n <= 8:
        return n
    size = 8
    while size < n:
        size = math.ceil(size * 1.25)
    return size


def length_mask(lengths: Tensor, total: int) -> Tensor:
    """``[B, total]`` bool mask, True at the first ``lengths[b]`` positions."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]
