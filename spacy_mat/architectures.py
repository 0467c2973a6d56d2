"""Registered thinc models that wrap the torch network.

The thinc model holds the index tables and tag sets as attrs and the torch
network in a PyTorchShim; its forward pass featurizes token sequences
(spaCy ``Doc``/``Span`` objects) and returns the best tag path per head.
Training goes through :func:`train_step`, which runs the torch loss and
backward pass; ``model.finish_update(sgd)`` then applies thinc's optimizer.
"""
import io
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import srsly
import torch
from spacy.tokens import Doc, Span
from spacy.util import registry
from thinc.api import Model, PyTorchShim, deserialize_attr, serialize_attr
from thinc.util import get_torch_default_device

from .adversarial import (AdversarialSettings, perturbation, plan_masking, random_probs,
                          sample_substitutes, similarity_probs)
from .contextual import context_batch, context_hparams, corrupt_token_strings, get_encoder
from .features import MASK_ID, PAD_ID, SPECIALS, UNK_ID, Batch, IndexTables
from .network import CharCNNBiLSTMCRF, length_mask
from .tags import allowed_transitions

TokenSeq = Union[Doc, Span]
ARCH_NAME = "spacy_mat.CharCNNBiLSTMCRF.v1"


@registry.architectures(ARCH_NAME)
def build_charcnn_bilstm_crf(
    word_width: int = 100,
    char_width: int = 30,
    char_filters: int = 30,
    char_window: int = 3,
    hidden_width: int = 200,
    depth: int = 1,
    dropout: float = 0.2,
    word_dropout: float = 0.05,
    lowercase: bool = False,
    normalize_digits: bool = False,
    min_word_freq: int = 1,
    max_word_length: int = 50,
    include_static_vectors: bool = False,
    normalize_embeddings: bool = True,
    batch_size: int = 256,
    adversarial: Optional[Dict[str, Any]] = None,
    context: Optional[Model] = None,
) -> Model[List[TokenSeq], List[List[np.ndarray]]]:
    """CNN-LSTM-CRF sequence labeller (Ma & Hovy 2016).

    The word vocabulary is built at ``initialize()`` from the training
    sequences; with ``include_static_vectors`` its rows start from the
    pipeline's static vectors. ``batch_size`` is the number of sequences per
    forward pass at prediction time (sorted by length to limit padding).
    ``adversarial`` is the training objective's block (see
    :class:`spacy_mat.adversarial.AdversarialSettings`; default: plain CRF loss).
    ``context`` is an optional frozen feature layer (e.g.
    ``spacy_mat.TransformerFeatures.v1``) whose per-token vectors η are
    concatenated to the word and character features before the BiLSTM; η
    gets no adversarial perturbation, and MAT's masked/replaced words are
    masked/replaced in η's input too.
    """
    settings = AdversarialSettings.from_config(adversarial)
    if depth < 1:
        raise ValueError(f"{ARCH_NAME}: depth must be >= 1, got {depth}")
    if not 0.0 <= dropout < 1.0 or not 0.0 <= word_dropout < 1.0:
        raise ValueError(f"{ARCH_NAME}: dropout rates must be in [0, 1)")
    hparams = {
        "word_width": word_width, "char_width": char_width, "char_filters": char_filters,
        "char_window": char_window, "hidden_width": hidden_width, "depth": depth,
        "dropout": dropout, "word_dropout": word_dropout,
        "normalize_embeddings": normalize_embeddings,
    }
    table_settings = {"lowercase": lowercase, "normalize_digits": normalize_digits,
                      "max_word_length": max_word_length}
    holder: List[Model] = []
    shim = PyTorchShim(
        None,
        serialize_model=_serialize_network,
        deserialize_model=lambda _net, data, device: _deserialize_network(holder[0], data, device),
    )
    model = Model(
        ARCH_NAME,
        forward,
        init=init,
        shims=[shim],
        layers=[context] if context is not None else [],
        attrs={
            "hparams": hparams,
            "table_settings": table_settings,
            "min_word_freq": min_word_freq,
            "include_static_vectors": include_static_vectors,
            "batch_size": batch_size,
            "tables": IndexTables(**table_settings),
            "tag_sets": [],
            "adversarial": settings.to_dict(),
            # multiplier of the adversarial weight, driven by
            # spacy_mat.adversarial_schedule.v1 (1.0 = the paper's setting)
            "adversarial_scale": 1.0,
        },
    )
    holder.append(model)
    return model


# -- serialization of the attrs and the network ------------------------------

@serialize_attr.register(IndexTables)
def _serialize_tables(_: IndexTables, value: IndexTables, name: str, model: Model) -> bytes:
    return srsly.msgpack_dumps(value.to_dict())


@deserialize_attr.register(IndexTables)
def _deserialize_tables(_: IndexTables, value: bytes, name: str, model: Model) -> IndexTables:
    return IndexTables.from_dict(srsly.msgpack_loads(value))


def _serialize_network(network: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


def _deserialize_network(model: Model, data: bytes, device: torch.device) -> torch.nn.Module:
    network = build_network(model).to(device)
    state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    network.load_state_dict(state)
    return network


def build_network(model: Model) -> CharCNNBiLSTMCRF:
    """A torch network sized by the model's index tables and tag sets."""
    tables: IndexTables = model.attrs["tables"]
    tag_sets = model.attrs["tag_sets"]
    if not tag_sets:
        raise ValueError(f"{ARCH_NAME}: no tag sets; the component must set labels before "
                         "initializing the model")
    heads = [(len(tags), allowed_transitions(tags)) for tags in tag_sets]
    return CharCNNBiLSTMCRF(
        len(tables.words), len(tables.chars), heads,
        word_counts=tables.word_counts, char_counts=tables.char_counts,
        **model.attrs["hparams"],
    )


def get_context(model: Model) -> Optional[Model]:
    """The contextual feature layer, or None."""
    return model.layers[0] if model.layers else None


def get_network(model: Model) -> CharCNNBiLSTMCRF:
    network = model.shims[0]._model
    if network is None:
        raise ValueError(f"{ARCH_NAME} is not initialized: call nlp.initialize() or load "
                         "a trained pipeline")
    return network


# -- initialization ------------------------------------------------------------

def init(model: Model, X: Optional[List[TokenSeq]] = None, Y: Any = None) -> Model:
    """Build the index tables from the training sequences ``X`` and the network."""
    if not X:
        raise ValueError(f"{ARCH_NAME}.initialize() needs the training sequences as X")
    vectors = X[0].doc.vocab.vectors if model.attrs["include_static_vectors"] else None
    if vectors is not None and vectors.shape[0] == 0:
        raise ValueError(
            f"{ARCH_NAME}: include_static_vectors is true but the pipeline has no vectors; "
            "add them with `spacy init vectors` and [initialize] vectors, or set it to false")
    tables = IndexTables.from_sequences(
        ([t.text for t in seq] for seq in X),
        min_freq=model.attrs["min_word_freq"], **model.attrs["table_settings"],
    )
    model.attrs["tables"] = tables
    context = get_context(model)
    if context is not None:
        context.initialize()
        model.attrs["hparams"].update(context_hparams(context))
    network = build_network(model)
    if vectors is not None:
        _copy_static_vectors(network, tables, X[0].doc.vocab)
    shim = model.shims[0]
    shim._model = network.to(get_torch_default_device())
    return model


def _copy_static_vectors(network: CharCNNBiLSTMCRF, tables: IndexTables, vocab) -> int:
    """Initialise word rows from static vectors; returns how many rows were set."""
    width = vocab.vectors.shape[1]
    weight = network.word_embed.weight
    if width != weight.shape[1]:
        raise ValueError(f"{ARCH_NAME}: word_width={weight.shape[1]} but the static vectors "
                         f"have width {width}; set word_width = {width}")
    rows, values = [], []
    for i, word in enumerate(tables.words):
        if vocab.has_vector(word):
            rows.append(i)
            values.append(vocab.get_vector(word))
    if rows:
        with torch.no_grad():
            weight[torch.tensor(rows)] = torch.tensor(np.asarray(values), dtype=weight.dtype)
    return len(rows)


# -- forward (prediction) and training ------------------------------------------

def tensors(batch: Batch, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.as_tensor(a, device=device) for a in batch)  # type: ignore[return-value]


@contextmanager
def _eval_mode(network: torch.nn.Module) -> Iterator[None]:
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        network.train(was_training)


def predict_emissions(model: Model, sequences: Sequence[Sequence[str]]) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Per-head emission scores ``[B, L, T]`` and the ``[B, L]`` padding mask
    of non-empty token-string sequences, in eval mode without gradients."""
    network = get_network(model)
    device = next(network.parameters()).device
    word_ids, char_ids, lengths = tensors(model.attrs["tables"].featurize(sequences), device)
    context = get_context(model)
    ctx = context_batch(context, sequences, device) if context is not None else None
    with _eval_mode(network):
        words, chars = network.embed(word_ids, char_ids)
        emissions = network.emissions(words, chars, char_ids, lengths, ctx)
    return emissions, length_mask(lengths, word_ids.shape[1])


def forward(model: Model, X: List[TokenSeq], is_train: bool) -> Tuple[List[List[np.ndarray]], Callable]:
    """Best tag ids per head and sequence: ``Y[head][i]`` has ``len(X[i])`` ids."""
    network = get_network(model)
    Y: List[List[np.ndarray]] = [[np.zeros(0, dtype=np.int64)] * len(X) for _ in network.crfs]
    order = [i for i in sorted(range(len(X)), key=lambda i: len(X[i])) if len(X[i])]
    batch_size = model.attrs["batch_size"]
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        emissions, mask = predict_emissions(model, [[t.text for t in X[i]] for i in chunk])
        with torch.no_grad():
            paths = network.decode(emissions, mask)
        for h, path in enumerate(paths):
            path_np = path.cpu().numpy()
            for row, i in enumerate(chunk):
                Y[h][i] = path_np[row, : len(X[i])]

    def backprop(dY: Any) -> Any:
        raise NotImplementedError(f"{ARCH_NAME} is trained through spacy_mat.architectures.train_step")

    return Y, backprop


def train_step(model: Model, X: Sequence[TokenSeq], gold: Sequence[Sequence[np.ndarray]]) -> Dict[str, float]:
    """Forward and backward passes of the training objective on one batch.

    ``gold[head][i]`` holds the gold tag ids of ``X[i]``. The clean CRF loss
    L_label is backpropagated once, which gives both the parameter gradients
    and the gradients w.r.t. the normalised embeddings; with an adversarial
    mode, a second pass on perturbed and/or masked inputs adds
    ``weight * scale * L_adv``. Gradients accumulate in the torch parameters
    until ``model.finish_update(optimizer)``. Returns the batch's losses
    (mean negative log-likelihood per sequence): ``label`` and, when the
    adversarial pass ran, ``adv``.
    """
    keep = [i for i, seq in enumerate(X) if len(seq)]
    if not keep:
        return {"label": 0.0}
    network = get_network(model)
    tables: IndexTables = model.attrs["tables"]
    settings = AdversarialSettings.from_config(model.attrs["adversarial"])
    adv_weight = settings.weight * model.attrs["adversarial_scale"]
    run_adversarial = settings.mode != "none" and adv_weight > 0
    perturb = run_adversarial and settings.perturbs

    device = next(network.parameters()).device
    strings = [[t.text for t in X[i]] for i in keep]
    batch = tables.featurize(strings)
    word_ids, char_ids, lengths = tensors(batch, device)
    context = get_context(model)
    ctx = context_batch(context, strings, device) if context is not None else None
    mask = length_mask(lengths, word_ids.shape[1])
    gold_t = [_pad_tags([gold_h[i] for i in keep], word_ids.shape[1], device) for gold_h in gold]
    network.train()
    word_ids = network.drop_words(word_ids, UNK_ID)
    words, chars = network.embed(word_ids, char_ids)
    if perturb:
        words.retain_grad()
        chars.retain_grad()
    label_loss = network.nll(network.emissions(words, chars, char_ids, lengths, ctx), gold_t, mask).mean()
    label_loss.backward()
    losses = {"label": float(label_loss.detach())}
    if not run_adversarial:
        return losses

    if settings.masks:
        word_ids, char_ids, corruption = corrupt_inputs(network, tables, word_ids, char_ids,
                                                        lengths, settings)
        if context is not None and len(corruption.rows):
            ctx = context_batch(context, strings, device,
                                overrides=corrupted_strings(context, strings, corruption))
    adv_words, adv_chars = network.embed(word_ids, char_ids)
    if perturb:
        adv_words = adv_words + perturbation(words.grad, settings.delta_word)
        d_chars = perturbation(chars.grad, settings.delta_char)
        extra = adv_chars.shape[2] - d_chars.shape[2]
        adv_chars = adv_chars + torch.nn.functional.pad(d_chars, (0, 0, 0, extra))
    adv_loss = network.nll(network.emissions(adv_words, adv_chars, char_ids, lengths, ctx), gold_t, mask).mean()
    (adv_weight * adv_loss).backward()
    losses["adv"] = float(adv_loss.detach())
    return losses


class Corruption(NamedTuple):
    """What :func:`corrupt_inputs` changed: one entry per corrupted token."""

    rows: List[int]
    positions: List[int]
    substitutes: List[Optional[str]]  # the substitute word, None for <Mask>


def mask_inputs(network: CharCNNBiLSTMCRF, tables: IndexTables, word_ids: torch.Tensor,
                char_ids: torch.Tensor, lengths: torch.Tensor,
                settings: AdversarialSettings) -> Tuple[torch.Tensor, torch.Tensor]:
    """MAT's input corruption of the word and char ids (see :func:`corrupt_inputs`)."""
    word_ids, char_ids, _ = corrupt_inputs(network, tables, word_ids, char_ids, lengths, settings)
    return word_ids, char_ids


def corrupted_strings(context: Model, strings: Sequence[Sequence[str]],
                      corruption: Corruption) -> Dict[int, List[str]]:
    """The token strings the context encoder reads for the corrupted rows:
    ``<Mask>`` becomes the encoder's mask token, a substitute its own text."""
    return corrupt_token_strings(strings, corruption.rows, corruption.positions,
                                 corruption.substitutes, get_encoder(context).mask_text)


def corrupt_inputs(network: CharCNNBiLSTMCRF, tables: IndexTables, word_ids: torch.Tensor,
                   char_ids: torch.Tensor, lengths: torch.Tensor,
                   settings: AdversarialSettings) -> Tuple[torch.Tensor, torch.Tensor, Corruption]:
    """MAT's input corruption: in each selected sentence one token becomes
    ``<Mask>`` (word id, and a single ``<Mask>`` character) or a sampled
    substitute word (its id and its own characters). Also returns the
    :class:`Corruption` (rows, positions, substitute words)."""
    plan = plan_masking(lengths, settings.select_rate, settings.mask_rate)
    if len(plan.rows) == 0:
        return word_ids, char_ids, Corruption([], [], [])
    n_special = len(SPECIALS)
    replace = ~plan.masked
    originals = word_ids[plan.rows[replace], plan.positions[replace]]
    if settings.replacement == "similarity":
        probs = similarity_probs(network.word_embed.weight, originals, n_special, mu=settings.mu,
                                 sigma=settings.sigma, softmax_over=settings.softmax_over)
    else:
        probs = random_probs(len(tables.words), originals, n_special)
    substitutes = sample_substitutes(probs)
    sub_chars = [tables.char_ids(tables.words[i]) for i in substitutes.tolist()]
    width = max([char_ids.shape[2]] + [len(c) for c in sub_chars])

    word_ids = word_ids.clone()
    new_chars = char_ids.new_full((*char_ids.shape[:2], width), PAD_ID)
    new_chars[:, :, : char_ids.shape[2]] = char_ids
    rows, positions = plan.rows[plan.masked], plan.positions[plan.masked]
    word_ids[rows, positions] = MASK_ID
    new_chars[rows, positions] = PAD_ID
    new_chars[rows, positions, 0] = MASK_ID
    rows, positions = plan.rows[replace], plan.positions[replace]
    word_ids[rows, positions] = substitutes
    for row, pos, chars in zip(rows.tolist(), positions.tolist(), sub_chars):
        new_chars[row, pos] = PAD_ID
        new_chars[row, pos, : len(chars)] = torch.as_tensor(chars, device=char_ids.device)
    sub_words = iter([tables.words[i] for i in substitutes.tolist()])
    corruption = Corruption(plan.rows.tolist(), plan.positions.tolist(),
                            [None if m else next(sub_words) for m in plan.masked.tolist()])
    return word_ids, new_chars, corruption


def _pad_tags(rows: Sequence[np.ndarray], total: int, device: torch.device) -> torch.Tensor:
    out = np.zeros((len(rows), total), dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return torch.as_tensor(out, device=device)
