"""Contextual input η from a frozen Hugging Face transformer encoder.

The registered thinc layer ``spacy_mat.TransformerFeatures.v1`` maps token
sequences (lists of token strings) to one vector per token: the encoder runs
on the tokens' wordpieces (``is_split_into_words``), its hidden layers
(embedding layer included) are mixed with fixed weights or kept as a stack
for the tagger's trainable :class:`~spacy_mat.network.ScalarMix`, and the
wordpieces of each token are pooled (mean or first piece).

The encoder is frozen: eval mode, ``requires_grad = False``, run under
``torch.no_grad()``, held in a model attr (not a shim), so thinc's optimizer
never sees it. Because it is frozen, the features of a sentence never change:
they are cached in memory by a hash of the token strings (and optionally on
disk, keyed by the model's fingerprint). The encoder's config, tokenizer and
weights are packed into the pipeline's bytes (``save_pretrained`` into a
temporary folder), so a saved pipeline loads without the original folder.

We run the encoder inside our own layer instead of a spaCy ``transformer``
component plus ``TransformerListener``: a frozen transformer component with a
listener fails in training (spaCy issue #11547), and our own layer can
recompute η for MAT's masked sentences and cache the rest.

Pure functions (pooling, windows, masked token strings, cache keys) come
first; the glue (:class:`FrozenTransformer`, the thinc layer) after.
"""
import hashlib
import io
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import srsly
import torch
from spacy.util import registry
from thinc.api import Model, deserialize_attr, serialize_attr
from thinc.util import get_torch_default_device
from torch import Tensor

from .network import ScalarMix

LAYER_NAME = "spacy_mat.TransformerFeatures.v1"
POOLINGS = ("mean", "first")
MIXES = ("fixed", "trainable")
UNSET_MESSAGE = (f"{LAYER_NAME}: no transformer given (name is null): set "
                 "--paths.transformer to a local model folder (or a Hugging Face model name)")


# -- pure functions ---------------------------------------------------------------

def pool_wordpieces(hidden: Tensor, word_index: Tensor, n_words: int, pooling: str = "mean",
                    check: bool = True) -> Tensor:
    """Token vectors from wordpiece vectors.

    ``hidden`` is ``[P, ...]`` (one row per wordpiece), ``word_index`` ``[P]``
    the token each piece belongs to (-1 for special and padding pieces).
    Returns ``[n_words, ...]``: the mean of each token's pieces, or its first
    piece. Every token must have at least one piece (``check``: raise
    otherwise; reading the check's result is a host sync on an accelerator).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    # pieces of no token go to a spare row n_words (no boolean indexing,
    # whose data-dependent size would be a host sync on an accelerator)
    idx = torch.where(word_index >= 0, word_index, n_words)
    counts = torch.zeros(n_words + 1, dtype=torch.long, device=hidden.device)
    counts.index_add_(0, idx, torch.ones_like(idx))
    counts = counts[:n_words]
    if check and bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"pool_wordpieces: tokens {missing} have no wordpiece")
    if pooling == "mean":
        out = hidden.new_zeros((n_words + 1, *hidden.shape[1:]))
        out.index_add_(0, idx, hidden)
        shape = (n_words,) + (1,) * (hidden.dim() - 1)
        return out[:n_words] / counts.reshape(shape).to(hidden.dtype)
    positions = torch.arange(hidden.shape[0], device=hidden.device)
    first = torch.full((n_words + 1,), hidden.shape[0], dtype=torch.long, device=hidden.device)
    first.scatter_reduce_(0, idx, positions, reduce="amin")
    return hidden[first[:n_words]]


def plan_windows(piece_counts: Sequence[int], max_pieces: int) -> List[Tuple[int, int]]:
    """Split a sentence into consecutive word windows ``[start, end)`` whose
    wordpieces fit ``max_pieces``, greedily, without overlap. A single word
    longer than ``max_pieces`` gets a window of its own (the encoder then
    keeps its first ``max_pieces`` pieces), so every word is in a window."""
    windows, start, used = [], 0, 0
    for i, count in enumerate(piece_counts):
        if i > start and used + count > max_pieces:
            windows.append((start, i))
            start, used = i, 0
        used += count
    if len(piece_counts):
        windows.append((start, len(piece_counts)))
    return windows


def corrupt_token_strings(sequences: Sequence[Sequence[str]], rows: Sequence[int],
                          positions: Sequence[int], substitutes: Sequence[Optional[str]],
                          mask_text: str) -> Dict[int, List[str]]:
    """The token strings of MAT's corrupted sentences: for each planned
    ``(row, position)``, the token becomes ``mask_text`` (substitute
    ``None``: a ``<Mask>``) or the substitute word. Returns ``{row: tokens}``
    for the affected rows only."""
    out: Dict[int, List[str]] = {}
    for row, pos, sub in zip(rows, positions, substitutes):
        tokens = out.setdefault(int(row), list(sequences[int(row)]))
        tokens[int(pos)] = mask_text if sub is None else sub
    return out


def sequence_key(tokens: Sequence[str], salt: str = "") -> str:
    """Cache key of a token sequence: a hash of its token strings (with token
    boundaries) and ``salt`` (the model fingerprint for the disk cache)."""
    h = hashlib.sha1(salt.encode("utf8"))
    for token in tokens:
        h.update(token.encode("utf8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def pad_features(features: Sequence[Tensor], device: Optional[torch.device] = None) -> Tensor:
    """``[B, L, ...]`` zero-padded batch of per-sequence ``[n_b, ...]`` features,
    built on ``device`` (default: the first feature's); host features are
    uploaded asynchronously."""
    n_max = max(f.shape[0] for f in features)
    device = features[0].device if device is None else torch.device(device)
    out = features[0].new_zeros((len(features), n_max, *features[0].shape[1:]), device=device)
    for b, f in enumerate(features):
        out[b, : f.shape[0]] = f.to(device, non_blocking=True)
    return out


# -- the frozen encoder -------------------------------------------------------------

@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    uncached: int = 0  # sequences computed with the cache bypassed (e.g. MAT's corrupted ones)
    evicted: int = 0  # entries dropped by the LRU size limit

    def to_dict(self) -> Dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "disk_hits": self.disk_hits,
                "uncached": self.uncached, "evicted": self.evicted}


@dataclass
class ContextSettings:
    name: Optional[str] = None
    pooling: str = "mean"
    mix: str = "fixed"
    layer_weights: Optional[List[float]] = None
    cache: bool = True
    cache_dir: Optional[str] = None
    max_length: int = 512
    batch_size: int = 32
    cache_size: int = 100_000
    cache_inference: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.cache_size < 0:
            raise ValueError(f"{LAYER_NAME}: cache_size must be >= 0 (0 = no in-memory cache), "
                             f"got {self.cache_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{LAYER_NAME}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.mix not in MIXES:
            raise ValueError(f"{LAYER_NAME}: mix must be one of {MIXES}, got {self.mix!r}")
        if self.max_length < 3 or self.batch_size < 1:
            raise ValueError(f"{LAYER_NAME}: max_length must be >= 3 and batch_size >= 1")
        if self.layer_weights is not None:
            self.layer_weights = [float(w) for w in self.layer_weights]


class FrozenTransformer:
    """A frozen HF encoder with its tokenizer, packed files and feature cache.

    ``features(sequences)`` gives per sequence ``[n, D]`` (fixed mix) or
    ``[n, K, D]`` (trainable mix: all K hidden layers, mixed in the tagger).
    """

    def __init__(self, settings: ContextSettings):
        self.settings = settings
        self.tokenizer: Any = None
        self.model: Any = None
        self.files: Dict[str, bytes] = {}
        self.fingerprint = ""
        self.fixed_mix: Optional[ScalarMix] = None
        self.cache: "OrderedDict[str, Tensor]" = OrderedDict()  # LRU: most recent last
        self.stats = CacheStats()
        # set by the layer's initialize(): this process is a training run, whose
        # evaluations may reuse the cache; a pipeline loaded from disk is not
        self.initialized_here = False

    # -- loading and packing --
    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self, name_or_path: str) -> "FrozenTransformer":
        """Load the tokenizer and encoder from a local folder or a model name."""
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True)
            model = AutoModel.from_pretrained(name_or_path)
        except OSError as err:
            raise ValueError(f"{LAYER_NAME}: cannot load transformer {name_or_path!r}: {err}. "
                             "Point --paths.transformer at a local model folder") from None
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{LAYER_NAME}: {name_or_path!r} has no fast tokenizer; word "
                             "alignment needs one (tokenizer.json)")
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        return self._set(tokenizer, model, files)

    def load_files(self, files: Mapping[str, bytes]) -> "FrozenTransformer":
        """Load from packed ``save_pretrained`` files (as written by :meth:`load`)."""
        from transformers import AutoModel, AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            for fname, data in files.items():
                (Path(tmp) / fname).write_bytes(data)
            tokenizer = AutoTokenizer.from_pretrained(tmp, use_fast=True)
            model = AutoModel.from_pretrained(tmp)
        return self._set(tokenizer, model, dict(files))

    def _set(self, tokenizer: Any, model: Any, files: Dict[str, bytes]) -> "FrozenTransformer":
        model.eval()
        model.requires_grad_(False)
        self.tokenizer, self.model = tokenizer, model.to(get_torch_default_device())
        self.files = files
        h = hashlib.sha1()
        for fname in sorted(files):
            h.update(fname.encode())
            h.update(hashlib.sha1(files[fname]).digest())
        s = self.settings
        if s.layer_weights is not None and len(s.layer_weights) != self.n_layers:
            raise ValueError(f"{LAYER_NAME}: layer_weights has {len(s.layer_weights)} entries but "
                             f"the transformer has {self.n_layers} hidden layers (embeddings "
                             "included); give one weight per layer or null")
        h.update(repr((s.pooling, s.mix, s.layer_weights, s.max_length)).encode())
        self.fingerprint = h.hexdigest()[:16]
        self.fixed_mix = (ScalarMix(self.n_layers, s.layer_weights, trainable=False)
                          if s.mix == "fixed" else None)
        self.cache.clear()
        return self

    def to_bytes(self) -> bytes:
        return srsly.msgpack_dumps({"files": self.files})

    def from_bytes(self, data: bytes) -> "FrozenTransformer":
        files = srsly.msgpack_loads(data)["files"]
        if files:
            self.load_files(files)
        return self

    # -- shapes --
    def _require(self) -> None:
        if not self.loaded:
            raise ValueError(f"{LAYER_NAME} is not initialized: call nlp.initialize() or load "
                             "a trained pipeline")

    @property
    def width(self) -> int:
        self._require()
        return int(self.model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        """Hidden layers returned with output_hidden_states (embeddings included)."""
        self._require()
        return int(self.model.config.num_hidden_layers) + 1

    @property
    def mask_text(self) -> str:
        """The text standing for MAT's ``<Mask>`` token in the encoder's input."""
        tok = self.tokenizer
        return tok.mask_token or tok.unk_token

    @property
    def max_length(self) -> int:
        limits = [self.settings.max_length, getattr(self.model.config, "max_position_embeddings", 10**9)]
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if model_max and model_max < 10**8:
            limits.append(model_max)
        return int(min(limits))

    # -- features --
    def uses_cache(self, is_train: bool) -> bool:
        """Whether a call reads and fills the cache: in training when
        ``cache``; in prediction per ``cache_inference``, whose default (None)
        caches prediction only in the process that ran ``initialize()`` (a
        training run, whose dev evaluations repeat the same sentences) and
        never in a pipeline loaded from disk, so that a service's memory does
        not grow with the number of texts it has seen."""
        s = self.settings
        if not s.cache:
            return False
        if is_train:
            return True
        return self.initialized_here if s.cache_inference is None else s.cache_inference

    def _remember(self, key: str, feats: Tensor) -> None:
        if self.settings.cache_size <= 0:
            return
        self.cache[key] = feats
        self.cache.move_to_end(key)
        while len(self.cache) > self.settings.cache_size:
            self.cache.popitem(last=False)
            self.stats.evicted += 1

    def features(self, sequences: Sequence[Sequence[str]], use_cache: Optional[bool] = None,
                 device: Optional[torch.device] = None) -> List[Tensor]:
        """Per-sequence features, from the cache where possible (``use_cache``
        None: the ``cache`` setting). Cached and cache-bound features are
        float32 CPU tensors; without the cache they stay on ``device`` (the
        encoder's by default), never copied to the host."""
        self._require()
        use_cache = self.settings.cache if use_cache is None else use_cache
        if not use_cache:
            self.stats.uncached += len(sequences)
            if device is None or torch.device(device).type == "cpu":
                return self.encode(sequences)
            return self._encode(sequences, torch.device(device))
        out: List[Optional[Tensor]] = [None] * len(sequences)
        todo: Dict[str, List[int]] = {}
        for i, seq in enumerate(sequences):
            key = sequence_key(seq)
            hit = self.cache.get(key)
            if hit is not None:
                self.cache.move_to_end(key)
            elif self.settings.cache_dir:
                hit = self._disk_get(seq)
                if hit is not None:
                    self.stats.disk_hits += 1
                    self._remember(key, hit)
            if hit is not None:
                self.stats.hits += 1
                out[i] = hit.clone()
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            keys = list(todo)
            self.stats.misses += len(keys)
            fresh = self.encode([sequences[todo[k][0]] for k in keys])
            for key, feats in zip(keys, fresh):
                self._remember(key, feats)
                if self.settings.cache_dir:
                    self._disk_put(sequences[todo[key][0]], feats)
                for i in todo[key]:
                    out[i] = feats.clone()
        return out  # type: ignore[return-value]

    def _disk_path(self, seq: Sequence[str]) -> Path:
        key = sequence_key(seq, salt=self.fingerprint)
        return Path(self.settings.cache_dir) / self.fingerprint / key[:2] / f"{key}.npy"  # type: ignore[arg-type]

    def _disk_get(self, seq: Sequence[str]) -> Optional[Tensor]:
        path = self._disk_path(seq)
        if not path.exists():
            return None
        return torch.from_numpy(np.load(path))

    def _disk_put(self, seq: Sequence[str], feats: Tensor) -> None:
        path = self._disk_path(seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, feats.numpy())
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)

    def tokenize(self, words_batch: Sequence[Sequence[str]]) -> Any:
        """The encoder's input for word windows (padded, truncated to max_length)."""
        return self.tokenizer([list(w) for w in words_batch], is_split_into_words=True,
                              padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def encode(self, sequences: Sequence[Sequence[str]]) -> List[Tensor]:
        """Fresh features (no cache) of non-empty token sequences, as CPU tensors."""
        return self._encode(sequences, torch.device("cpu"))

    def _encode(self, sequences: Sequence[Sequence[str]], out_device: torch.device) -> List[Tensor]:
        """:meth:`encode` with the features left on ``out_device``."""
        self._require()
        tok = self.tokenizer
        sequences = [list(seq) for seq in sequences]
        if any(len(seq) == 0 for seq in sequences):
            raise ValueError(f"{LAYER_NAME}: got an empty token sequence")
        pieces = tok(sequences, is_split_into_words=True, add_special_tokens=False)
        max_pieces = self.max_length - tok.num_special_tokens_to_add(pair=False)
        windows: List[Tuple[int, int, int]] = []  # (sequence, start word, end word)
        for b, seq in enumerate(sequences):
            counts = np.bincount([w for w in pieces.word_ids(b) if w is not None], minlength=len(seq))
            # a token the tokenizer drops (e.g. a zero-width space) is read as the unknown token
            for i in np.flatnonzero(counts == 0):
                seq[i] = tok.unk_token
                counts[i] = 1
            windows.extend((b, s, e) for s, e in plan_windows(counts.tolist(), max_pieces))
        order = sorted(range(len(windows)), key=lambda j: windows[j][2] - windows[j][1])
        results: Dict[int, List[Tensor]] = {b: [] for b in range(len(sequences))}
        pooled: Dict[int, Tensor] = {}
        model_device = next(self.model.parameters()).device
        size = self.settings.batch_size
        with torch.no_grad():
            for start in range(0, len(order), size):
                chunk = order[start: start + size]
                words = [sequences[windows[j][0]][windows[j][1]: windows[j][2]] for j in chunk]
                inputs = self.tokenize(words)
                hidden = self.model(**{k: v.to(model_device, non_blocking=True) for k, v in inputs.items()},
                                    output_hidden_states=True).hidden_states
                stack = torch.stack(hidden, dim=2).float()  # [b, P, K, D]
                if self.fixed_mix is not None:
                    stack = self.fixed_mix.to(stack.device)(stack)  # [b, P, D]
                for row, j in enumerate(chunk):
                    # every word has a piece (checked above), so pooling need
                    # not check on the device (a host sync per row)
                    index = torch.tensor([-1 if w is None else w for w in inputs.word_ids(row)],
                                         dtype=torch.long).to(stack.device, non_blocking=True)
                    pooled[j] = pool_wordpieces(stack[row], index, len(words[row]),
                                                self.settings.pooling, check=False).to(out_device)
        for j, (b, _, _) in enumerate(windows):  # windows are in sentence order
            results[b].append(pooled[j])
        return [torch.cat(results[b], dim=0).contiguous() for b in range(len(sequences))]


@serialize_attr.register(FrozenTransformer)
def _serialize_encoder(_: FrozenTransformer, value: FrozenTransformer, name: str, model: Model) -> bytes:
    return value.to_bytes()


@deserialize_attr.register(FrozenTransformer)
def _deserialize_encoder(_: FrozenTransformer, value: bytes, name: str, model: Model) -> FrozenTransformer:
    return model.attrs["encoder"].from_bytes(value)


# -- the thinc layer --------------------------------------------------------------------

@registry.layers(LAYER_NAME)
def transformer_features(
    name: Optional[str] = None,
    pooling: str = "mean",
    mix: str = "fixed",
    layer_weights: Optional[List[float]] = None,
    cache: bool = True,
    cache_dir: Optional[str] = None,
    max_length: int = 512,
    batch_size: int = 32,
    cache_size: int = 100_000,
    cache_inference: Optional[bool] = None,
) -> Model[List[List[str]], List[Tensor]]:
    """Frozen-transformer token features for ``spacy_mat.CharCNNBiLSTMCRF.v1``'s
    ``context`` argument.

    name: HF model name or local folder (loaded at ``initialize()``; a trained
        pipeline carries the model's files and does not need it).
    pooling: "mean" or "first" wordpiece of each token.
    mix: "fixed" (the weighted sum of all hidden layers, embeddings included,
        computed here: ELMo-fixed) or "trainable" (softmax-normalised scalars
        times gamma, learned in the tagger's network).
    layer_weights: one positive weight per hidden layer, or null = equal.
    cache: keep features per sentence in memory (keyed by the token strings)
        in training; cache_dir: also on disk, keyed by the model fingerprint.
    cache_size: most sentences kept in memory (least recently used dropped
        first; 0 = none in memory).
    cache_inference: whether prediction uses the cache too; null = only in
        the process that ran initialize() (a training run's evaluations), never
        in a pipeline loaded from disk (a service: memory does not grow with
        the texts it has tagged).
    max_length: wordpieces per encoder window (longer sentences are split into
        consecutive word windows); batch_size: windows per encoder call.
    """
    settings = ContextSettings(name=name, pooling=pooling, mix=mix, layer_weights=layer_weights,
                               cache=cache, cache_dir=cache_dir, max_length=max_length,
                               batch_size=batch_size, cache_size=cache_size,
                               cache_inference=cache_inference)
    return Model(LAYER_NAME, _forward, init=_init,
                 attrs={"encoder": FrozenTransformer(settings)})


def get_encoder(model: Model) -> FrozenTransformer:
    return model.attrs["encoder"]


def _init(model: Model, X: Any = None, Y: Any = None) -> Model:
    encoder = get_encoder(model)
    if encoder.settings.name is None:
        raise ValueError(UNSET_MESSAGE)
    encoder.load(encoder.settings.name)
    encoder.initialized_here = True
    return model


def _forward(model: Model, X: Sequence[Sequence[str]], is_train: bool) -> Tuple[List[Tensor], Callable]:
    encoder = get_encoder(model)
    feats = encoder.features(X, use_cache=encoder.uses_cache(is_train))

    def backprop(dY: Any) -> List[Any]:
        return []  # frozen: no gradient to the encoder or the token strings

    return feats, backprop


def context_hparams(model: Model) -> Dict[str, Any]:
    """The tagger network's context settings for this layer."""
    encoder = get_encoder(model)
    trainable = encoder.settings.mix == "trainable"
    return {"context_width": encoder.width,
            "context_layers": encoder.n_layers if trainable else 0,
            "context_mix_init": encoder.settings.layer_weights if trainable else None}


def context_batch(model: Model, sequences: Sequence[Sequence[str]], device: torch.device,
                  overrides: Optional[Mapping[int, Sequence[str]]] = None,
                  is_train: bool = True) -> Tensor:
    """Padded features ``[B, L, ...]`` of ``sequences`` on ``device``; rows in
    ``overrides`` (MAT's corrupted sentences) are recomputed from their new
    token strings, bypassing the cache. ``is_train``: a training step (the
    cache is used when ``cache``) or a prediction (see
    :meth:`FrozenTransformer.uses_cache`)."""
    encoder = get_encoder(model)
    feats = encoder.features(sequences, use_cache=encoder.uses_cache(is_train), device=device)
    if overrides:
        rows = sorted(overrides)
        fresh = encoder.features([overrides[r] for r in rows], use_cache=False, device=device)
        for row, f in zip(rows, fresh):
            feats[row] = f
    return pad_features(feats, device)
