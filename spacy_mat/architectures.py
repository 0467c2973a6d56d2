"""Registered thinc models that wrap the torch network.

The thinc model holds the index tables and tag sets as attrs and the torch
network in a PyTorchShim; its forward pass featurizes token sequences
(spaCy ``Doc``/``Span`` objects) and returns the best tag path per head.
Training goes through :func:`train_step`, which runs the torch loss and
backward pass; ``model.finish_update(sgd)`` then applies thinc's optimizer.
"""
import functools
import io
import logging
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import srsly
import torch
from spacy.tokens import Doc, Span
from spacy.util import registry
from thinc.api import Model, PyTorchShim, deserialize_attr, serialize_attr
from thinc.util import get_torch_default_device
from wasabi import msg

from .adversarial import (AdversarialSettings, effective_support, expand_to_spans, perturbation,
                          plan_masking, random_probs, sample_substitutes, similarity_probs,
                          span_continuation)
from .contextual import context_batch, context_hparams, corrupt_token_strings, get_encoder
from .crf import CRF, DISALLOWED, restrict_emissions, span_log_probs_numpy, viterbi_numpy
from . import host_forward
from .features import MASK_ID, PAD_ID, SPECIALS, UNK_ID, Batch, IndexTables
from .vectors import find_row, vocab_vectors
from .network import CharCNNBiLSTMCRF, length_mask
from .tags import allowed_transitions, parse_tag, tags_to_spans

TokenSeq = Union[Doc, Span]
ARCH_NAME = "spacy_mat.CharCNNBiLSTMCRF.v1"
PRETRAINED_ROWS = ("all", "train")
logger = logging.getLogger("spacy_mat")


@registry.architectures(ARCH_NAME)
def build_charcnn_bilstm_crf(
    word_width: int = 100,
    char_width: int = 30,
    char_filters: int = 30,
    char_window: int = 3,
    hidden_width: int = 200,
    depth: int = 1,
    dropout: float = 0.2,
    word_dropout: float = 0.0,
    lowercase: bool = False,
    normalize_digits: bool = False,
    min_word_freq: int = 1,
    max_word_length: int = 50,
    include_static_vectors: bool = False,
    pretrained_rows: str = "all",
    train_pretrained_rows: bool = False,
    drop_vocab_vectors: bool = True,
    normalize_embeddings: bool = True,
    batch_size: int = 256,
    adversarial: Optional[Dict[str, Any]] = None,
    context: Optional[Model] = None,
) -> Model[List[TokenSeq], List[List[np.ndarray]]]:
    """CNN-LSTM-CRF sequence labeller (Ma & Hovy 2016).

    The word vocabulary is built at ``initialize()`` from the training
    sequences; with ``include_static_vectors`` its rows start from the
    pipeline's static vectors (each training word looked up exact, then
    lowercased, then with digits normalised; rows without a vector are drawn
    at the vectors' scale), and with ``pretrained_rows = "all"`` every
    pretrained word gets a row too (``"train"``: only the training words), so
    that a word seen only in the vectors is not ``<UNK>`` at test time.
    Pretrained-only rows are fixed unless ``train_pretrained_rows`` (a dense
    gradient and Adam over all 400k GloVe rows: about 2x the step time).
    ``drop_vocab_vectors`` empties the vocab's copy of the vectors once the
    table holds them, so a saved pipeline does not store them twice. ``batch_size`` is the number of sequences per
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
    if pretrained_rows not in PRETRAINED_ROWS:
        raise ValueError(f"{ARCH_NAME}: pretrained_rows must be one of {PRETRAINED_ROWS}, "
                         f"got {pretrained_rows!r}")
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
        deserialize_model=NetworkDeserializer(holder),
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
            "vector_settings": {"pretrained_rows": pretrained_rows,
                                "train_pretrained_rows": train_pretrained_rows,
                                "drop_vocab_vectors": drop_vocab_vectors},
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


class NetworkDeserializer:
    """The shim's ``deserialize_model``: rebuilds the network from the model's
    attrs. A module-level class (not a lambda), so that the model, and with
    it ``nlp``, can be pickled (``nlp.pipe(n_process=2)`` under spawn)."""

    def __init__(self, holder: List[Model]):
        self.holder = holder

    def __call__(self, _net: Any, data: bytes, device: torch.device) -> Optional[torch.nn.Module]:
        return _deserialize_network(self.holder[0], data, device)


def _serialize_network(network: Optional[torch.nn.Module]) -> bytes:
    if network is None:  # an uninitialised model serialises as "no network"
        return b""
    buffer = io.BytesIO()
    torch.save(network.state_dict(), buffer)
    return buffer.getvalue()


def _deserialize_network(model: Model, data: bytes, device: torch.device) -> Optional[torch.nn.Module]:
    if not data:
        return None
    network = build_network(model).to(device)
    state = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    network.load_state_dict(state)
    # a loaded pipeline predicts: eval mode, so that prediction does not
    # switch modes per call (train_step switches to training mode itself)
    return network.eval()


def build_network(model: Model) -> CharCNNBiLSTMCRF:
    """A torch network sized by the model's index tables and tag sets."""
    tables: IndexTables = model.attrs["tables"]
    tag_sets = model.attrs["tag_sets"]
    if not tag_sets:
        raise ValueError(f"{ARCH_NAME}: no tag sets; the component must set labels before "
                         "initializing the model")
    heads = [(len(tags), allowed_transitions(tags)) for tags in tag_sets]
    train_all = model.attrs.get("vector_settings", {}).get("train_pretrained_rows", False)
    return CharCNNBiLSTMCRF(
        len(tables.words), len(tables.chars), heads,
        word_counts=tables.word_counts, char_counts=tables.char_counts,
        n_trainable_words=len(tables.words) if train_all else tables.n_trained,
        n_counted_words=tables.n_trained,
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
    """Build the index tables from the training sequences ``X`` (plus the
    pretrained words, see the architecture) and the network."""
    if not X:
        raise ValueError(f"{ARCH_NAME}.initialize() needs the training sequences as X")
    vocab = X[0].doc.vocab
    use_vectors = model.attrs["include_static_vectors"]
    settings = model.attrs.get("vector_settings", {})
    if use_vectors and vocab.vectors.shape[0] == 0:
        raise ValueError(
            f"{ARCH_NAME}: include_static_vectors is true but the pipeline has no vectors; "
            "write them with `python -m spacy_mat vectors vectors/glove-6b-50d` and set "
            "[paths] vectors (--paths.vectors vectors/glove-6b-50d), or use a *_novec config "
            "(include_static_vectors = false)")
    words, vectors = vocab_vectors(vocab) if use_vectors else ([], None)
    extra = words if use_vectors and settings.get("pretrained_rows", "all") == "all" else ()
    tables = IndexTables.from_sequences(
        ([t.text for t in seq] for seq in X),
        min_freq=model.attrs["min_word_freq"], extra_words=extra, fallbacks=use_vectors,
        **model.attrs["table_settings"],
    )
    model.attrs["tables"] = tables
    context = get_context(model)
    if context is not None:
        context.initialize()
        model.attrs["hparams"].update(context_hparams(context))
    network = build_network(model)
    if vectors is not None:
        found = copy_static_vectors(network, tables, words, vectors)
        _report(f"word table: {len(tables):,} rows ({tables.n_trained:,} from training, "
                f"{len(tables) - tables.n_trained:,} pretrained-only, "
                f"{'trained' if settings.get('train_pretrained_rows') else 'fixed'}); "
                f"{found:,} of the {tables.n_trained - len(SPECIALS):,} training words have "
                "a pretrained vector")
        if settings.get("drop_vocab_vectors", True):
            vocab.reset_vectors(shape=(0, vectors.shape[1]))
    shim = model.shims[0]
    shim._model = network.to(get_torch_default_device())
    if use_vectors:
        log_substitutes(model)
    return model


def copy_static_vectors(network: CharCNNBiLSTMCRF, tables: IndexTables, words: Sequence[str],
                        vectors: np.ndarray, seed: int = 0) -> int:
    """Set the word rows from pretrained ``vectors`` (row i of ``vectors`` is
    ``words[i]``): each table entry is looked up exact, then lowercased, then
    with digits normalised (:func:`spacy_mat.vectors.find_row`). Rows with no
    vector are drawn uniformly at the vectors' scale (same standard
    deviation), so that they are neither tiny nor huge next to the
    pretrained ones. Returns how many training words (of ``n_trained``) have
    a vector."""
    embed = network.word_embed
    width = embed.weight.shape[1]
    if vectors.shape[1] != width:
        raise ValueError(f"{ARCH_NAME}: word_width={width} but the static vectors have width "
                         f"{vectors.shape[1]}; set word_width = {vectors.shape[1]}")
    index = {w: i for i, w in enumerate(words)}
    source = np.full(len(tables.words), -1, dtype=np.int64)
    for i, word in enumerate(tables.words[len(SPECIALS):], start=len(SPECIALS)):
        row = find_row(index, word)
        if row is not None:
            source[i] = row
    bound = float(np.sqrt(3.0) * vectors.std())
    rng = np.random.default_rng(seed)
    values = rng.uniform(-bound, bound, size=(len(tables.words), width)).astype(np.float32)
    have = source >= 0
    values[have] = vectors[source[have]]
    device = embed.weight.device
    embed.set_rows(torch.arange(len(values), device=device), torch.as_tensor(values, device=device))
    return int(have[len(SPECIALS): tables.n_trained].sum())


def _report(text: str) -> None:
    """An initialise-time message: to the ``spacy_mat`` logger and, like
    spaCy's own training messages, to the console."""
    logger.info(text)
    msg.info(text)


def log_substitutes(model: Model, n_words: int = 5, n_samples: int = 6) -> Dict[str, Any]:
    """Log what MAT's similarity sampler does with the current table: for a few
    frequent training words, the effective support (exp of the entropy) of
    the substitute distribution and sample substitutes. Returns the same as
    a dict (empty when the row does not sample by similarity)."""
    settings = AdversarialSettings.from_config(model.attrs["adversarial"])
    if not (settings.masks and settings.replacement == "similarity"):
        return {}
    tables: IndexTables = model.attrs["tables"]
    network = get_network(model)
    n_special = len(SPECIALS)
    # the most frequent capitalised and lowercase training words
    ranked = list(range(n_special, tables.n_trained))
    picks = [i for i in ranked if tables.words[i][:1].isupper()][: (n_words + 1) // 2]
    picks += [i for i in ranked if tables.words[i].isalpha() and tables.words[i].islower()][: n_words // 2]
    if not picks:
        return {}
    originals = torch.tensor(picks, device=network.word_embed.weight.device)
    probs = substitute_probs(network, tables, originals, settings)
    support = effective_support(probs)
    generator = torch.Generator(device=probs.device).manual_seed(0)
    out = {}
    for word_id, row, sup in zip(picks, probs, support.tolist()):
        draws = torch.multinomial(row, n_samples, replacement=True, generator=generator).tolist()
        out[tables.words[word_id]] = {"support": round(sup, 1),
                                      "samples": [tables.words[j] for j in draws]}
        _report(f"MAT substitutes for {tables.words[word_id]!r}: effective support {sup:.1f}, "
                f"e.g. {', '.join(tables.words[j] for j in draws)}")
    return out


# -- forward (prediction) and training ------------------------------------------

def tensors(batch: Batch, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's arrays as tensors on ``device`` (no copy on the CPU; on
    an accelerator an asynchronous upload, which does not wait for the
    device). ``torch.from_numpy(batch.lengths)`` is the host copy of the
    lengths that ``network.emissions`` reads without a device sync."""
    return tuple(_upload(a, device) for a in batch)  # type: ignore[return-value]


def _upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if tensor.device == torch.device(device) else tensor.to(device, non_blocking=True)


@contextmanager
def _eval_mode(network: torch.nn.Module) -> Iterator[None]:
    """Eval mode and ``torch.inference_mode`` (cheaper than ``no_grad``);
    the mode of a network already in eval mode is left alone (switching
    walks every submodule)."""
    was_training = network.training
    if was_training:
        network.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            network.train()


def predict_emissions(model: Model, sequences: Sequence[Sequence[str]]) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Per-head emission scores ``[B, L, T]`` and the ``[B, L]`` padding mask
    of non-empty token-string sequences, in eval mode without gradients (the
    tensors are inference tensors: read them, do not backpropagate)."""
    network = get_network(model)
    device = next(network.parameters()).device
    batch = model.attrs["tables"].featurize(sequences)
    word_ids, char_ids, lengths = tensors(batch, device)
    host_lengths = torch.from_numpy(batch.lengths)
    context = get_context(model)
    ctx = context_batch(context, sequences, device, is_train=False) if context is not None else None
    with _eval_mode(network):
        words, chars = network.embed(word_ids, char_ids)
        emissions = network.emissions(words, chars, char_ids, host_lengths, ctx)
        mask = length_mask(lengths, word_ids.shape[1])
    return emissions, mask


def host_emissions(model: Model, sequences: Sequence[Sequence[str]]) -> Optional[List[np.ndarray]]:
    """Per-head emissions ``[L, T]`` (numpy) of one non-empty sequence,
    computed without torch (:mod:`spacy_mat.host_forward`: serving one
    sentence on the CPU), or None where that path does not apply
    (several sequences, context features, an accelerator, training mode)."""
    if len(sequences) != 1 or get_context(model) is not None:
        return None
    weights = get_network(model).host_weights()
    if weights is None:
        return None
    batch = model.attrs["tables"].featurize(sequences)
    return host_forward.emissions(weights, batch.word_ids[0], batch.char_ids[0])


def forward(model: Model, X: List[TokenSeq], is_train: bool) -> Tuple[List[List[np.ndarray]], Callable]:
    """Best tag ids per head and sequence: ``Y[head][i]`` has ``len(X[i])`` ids."""
    network = get_network(model)
    Y: List[List[np.ndarray]] = [[np.zeros(0, dtype=np.int64)] * len(X) for _ in network.crfs]
    order = [i for i in sorted(range(len(X)), key=lambda i: len(X[i])) if len(X[i])]
    batch_size = model.attrs["batch_size"]
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        if len(chunk) == 1:
            host = host_emissions(model, [[t.text for t in X[chunk[0]]]])
            if host is not None:
                for h, (crf, em) in enumerate(zip(network.crfs, host)):
                    Y[h][chunk[0]] = viterbi_numpy(em, len(em), *crf.host_scores())[0]
                continue
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
    host_lengths = torch.from_numpy(batch.lengths)  # packing reads these: no device round trip
    context = get_context(model)
    ctx = context_batch(context, strings, device) if context is not None else None
    mask = length_mask(lengths, word_ids.shape[1])
    gold_t = [_pad_tags([gold_h[i] for i in keep], word_ids.shape[1], device) for gold_h in gold]
    # unknown gold tags (< 0, missing annotation) read on the host, not from the device
    partial = [any(bool((np.asarray(gold_h[i]) < 0).any()) for i in keep) for gold_h in gold]
    network.train()
    word_ids = network.drop_words(word_ids, UNK_ID)
    words, chars = network.embed(word_ids, char_ids)
    if perturb:
        words.retain_grad()
        chars.retain_grad()
    label_loss = network.nll(network.emissions(words, chars, char_ids, host_lengths, ctx), gold_t, mask,
                             partial=partial).mean()
    label_loss.backward()
    if not run_adversarial:
        return {"label": float(label_loss.detach())}  # the step's one read of a device value

    if settings.case_augmentation > 0:  # extension: lowercased sentences in the adversarial pass
        word_ids, char_ids, _ = lowercase_rows(tables, strings, word_ids, char_ids,
                                               settings.case_augmentation)
    if settings.masks:
        continuation = (span_continuation(gold_t[0], *tag_kinds(model.attrs["tag_sets"][0], device))
                        if settings.mask_span else None)
        word_ids, char_ids, corruption = corrupt_inputs(network, tables, word_ids, char_ids,
                                                        host_lengths, settings, gold=gold_t[0],
                                                        strings=strings, continuation=continuation)
        if context is not None and len(corruption.rows) and settings.mask_context:
            ctx = context_batch(context, strings, device,
                                overrides=corrupted_strings(context, strings, corruption))
    adv_words, adv_chars = network.embed(word_ids, char_ids)
    if perturb:
        adv_words = adv_words + perturbation(words.grad, settings.delta_word)
        d_chars = perturbation(chars.grad, settings.delta_char)
        extra = adv_chars.shape[2] - d_chars.shape[2]
        adv_chars = adv_chars + torch.nn.functional.pad(d_chars, (0, 0, 0, extra))
    adv_loss = network.nll(network.emissions(adv_words, adv_chars, char_ids, host_lengths, ctx), gold_t, mask,
                           partial=partial).mean()
    (adv_weight * adv_loss).backward()
    # both losses read at the end, in one transfer (no stall between the passes)
    label, adv = torch.stack([label_loss.detach(), adv_loss.detach()]).tolist()
    return {"label": label, "adv": adv}


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
                   settings: AdversarialSettings, gold: Optional[torch.Tensor] = None,
                   strings: Optional[Sequence[Sequence[str]]] = None,
                   continuation: Optional[torch.Tensor] = None,
                   ) -> Tuple[torch.Tensor, torch.Tensor, Corruption]:
    """MAT's input corruption: in each selected sentence one token becomes
    ``<Mask>`` (word id, and a single ``<Mask>`` character; with
    ``mask_token = "unk"``, the ``<UNK>`` word id and its own characters, as
    an unknown word at test time) or a sampled substitute word (its id and
    its own characters). With ``entity_selection`` > 0 and the gold tag ids
    ``gold`` ``[B, L]`` (0 = O), the token is drawn among the gold entity
    tokens at that rate. Also returns the :class:`Corruption` (rows,
    positions, substitute words; ``strings``, the batch's tokens, give the
    original word of an ``<UNK>``-masked token). With ``mask_span`` and
    ``continuation`` (:func:`span_continuation` of the gold tags), a masked
    token inside a gold span masks the whole span."""
    # the plan is drawn where ``lengths`` live (pass the host copy: its row
    # and position lists are then read without a device sync)
    preferred = ((gold > 0).to(lengths.device) if gold is not None and settings.entity_selection > 0
                 else None)
    plan = plan_masking(lengths, settings.select_rate, settings.mask_rate, preferred=preferred,
                        prefer_rate=settings.entity_selection)
    if len(plan.rows) == 0:
        return word_ids, char_ids, Corruption([], [], [])
    if settings.mask_span and continuation is not None:
        plan = expand_to_spans(plan, continuation, lengths)
    replace = ~plan.masked
    if bool(replace.any()):  # a host read when the plan was drawn on the host
        originals = word_ids[plan.rows[replace], plan.positions[replace]]
        substitutes = sample_substitutes(substitute_probs(network, tables, originals, settings))
        # the step's one read of sampled values: the substitutes' characters are looked up by word
        sub_words = [tables.words[i] for i in substitutes.tolist()]
    else:
        substitutes, sub_words = word_ids.new_zeros(0), []
    sub_chars = [tables.char_ids(w) for w in sub_words]
    width = max([char_ids.shape[2]] + [len(c) for c in sub_chars])

    word_ids = word_ids.clone()
    new_chars = char_ids.new_full((*char_ids.shape[:2], width), PAD_ID)
    new_chars[:, :, : char_ids.shape[2]] = char_ids
    rows, positions = plan.rows[plan.masked], plan.positions[plan.masked]
    unk = settings.mask_token == "unk"
    word_ids[rows, positions] = UNK_ID if unk else MASK_ID
    if not unk:
        new_chars[rows, positions] = PAD_ID
        new_chars[rows, positions, 0] = MASK_ID
    rows, positions = plan.rows[replace], plan.positions[replace]
    word_ids[rows, positions] = substitutes
    if sub_chars:  # one upload for all substitutes' characters
        block = np.full((len(sub_chars), width), PAD_ID, dtype=np.int64)
        for k, chars in enumerate(sub_chars):
            block[k, : len(chars)] = chars
        new_chars[rows, positions] = torch.as_tensor(block, device=char_ids.device)
    subs = iter(sub_words)
    masked_as = ([strings[r][q] for r, q in zip(plan.rows.tolist(), plan.positions.tolist())]
                 if unk and strings is not None else [None] * len(plan.rows))
    corruption = Corruption(plan.rows.tolist(), plan.positions.tolist(),
                            [kept if m else next(subs)
                             for m, kept in zip(plan.masked.tolist(), masked_as)])
    return word_ids, new_chars, corruption


def lowercase_rows(tables: IndexTables, strings: Sequence[Sequence[str]], word_ids: torch.Tensor,
                   char_ids: torch.Tensor, rate: float,
                   generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor, List[int]]:
    """Case augmentation: a share ``rate`` of the sentences re-featurized
    lowercased (word and char ids); the other rows keep their ids. Returns
    the ids and the lowercased rows."""
    chosen = (torch.rand(len(strings), generator=generator) < rate).nonzero(as_tuple=True)[0].tolist()
    if not chosen:
        return word_ids, char_ids, []
    lowered = tables.featurize([[t.lower() for t in strings[r]] for r in chosen])
    width = max(char_ids.shape[2], lowered.char_ids.shape[2])
    new_chars = char_ids.new_full((*char_ids.shape[:2], width), PAD_ID)
    new_chars[:, :, : char_ids.shape[2]] = char_ids
    word_ids = word_ids.clone()
    rows = torch.as_tensor(chosen, device=word_ids.device)
    n = lowered.word_ids.shape[1]
    word_ids[rows, :n] = torch.as_tensor(lowered.word_ids, device=word_ids.device)
    new_chars[rows, :n] = PAD_ID
    new_chars[rows, :n, : lowered.char_ids.shape[2]] = torch.as_tensor(lowered.char_ids,
                                                                       device=char_ids.device)
    return word_ids, new_chars, chosen


def substitute_probs(network: CharCNNBiLSTMCRF, tables: IndexTables, originals: torch.Tensor,
                     settings: AdversarialSettings) -> torch.Tensor:
    """``[K, V]`` probabilities of MAT's substitutes for the word ids
    ``originals`` over the candidate rows (``candidates``: the training words,
    ids below ``n_trained``, or every row), by embedding distance
    (``similarity``) or uniformly (``random``). With
    ``exclude_case_variants``, candidates whose lowercase form is the
    original's (its casing variants: "GERMANY" for "Germany", which share
    one pretrained vector) are excluded."""
    embed = network.word_embed
    n_candidates = tables.n_trained if settings.candidates == "train" else len(tables.words)
    device = originals.device
    groups = query_groups = None
    if settings.exclude_case_variants:
        all_groups = tables.case_groups_on(device)
        groups, query_groups = all_groups[:n_candidates], all_groups[originals]
    if settings.replacement == "similarity":
        if n_candidates <= embed.weight.shape[0]:
            vectors = embed.weight[:n_candidates]
        else:
            vectors = embed.table()[:n_candidates]
        return similarity_probs(vectors, originals, len(SPECIALS), mu=settings.mu,
                                sigma=settings.sigma, mu_quantile=settings.mu_quantile,
                                sigma_quantile=settings.sigma_quantile,
                                softmax_over=settings.softmax_over,
                                queries=embed.lookup(originals), groups=groups,
                                query_groups=query_groups)
    return random_probs(n_candidates, originals, len(SPECIALS), groups=groups,
                        query_groups=query_groups)


def _pad_tags(rows: Sequence[np.ndarray], total: int, device: torch.device) -> torch.Tensor:
    out = np.zeros((len(rows), total), dtype=np.int64)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return torch.as_tensor(out, device=device)


# -- prediction with constraints and confidence scores ----------------------------

class ScoredPath(NamedTuple):
    """One head's prediction for one sequence."""

    tags: np.ndarray  # [n] tag ids of the best (allowed) path
    spans: List[Tuple[int, int, str]]  # the path's labelled spans (start, end, label)
    span_probs: np.ndarray  # [len(spans)] marginal probability of each span (NaN if not computed)
    token_probs: Optional[np.ndarray]  # [n, T] tag marginals, or None


def predict_scored(
    model: Model,
    X: Sequence[TokenSeq],
    allowed: Optional[Sequence[Sequence[Optional[np.ndarray]]]] = None,
    span_probs: bool = True,
    token_probs: bool = False,
) -> List[List[ScoredPath]]:
    """Best paths per head and sequence (``Y[head][i]``), like :func:`forward`,
    optionally decoded under per-token constraints and scored.

    ``allowed[head][i]``: None or a bool ``[len(X[i]), T]`` array of the tags
    allowed at each token (the best path consistent with them is decoded,
    and the probabilities are conditioned on them). ``span_probs``: the CRF
    marginal probability of each predicted span (forward-backward over the
    constrained lattice); ``token_probs``: the tag marginals of each token.
    """
    network = get_network(model)
    tag_sets = model.attrs["tag_sets"]
    n_heads = len(network.crfs)
    empty = [ScoredPath(np.zeros(0, dtype=np.int64), [], np.zeros(0, dtype=np.float32),
                        np.zeros((0, len(tags)), dtype=np.float32) if token_probs else None)
             for tags in tag_sets]
    Y: List[List[ScoredPath]] = [[empty[h]] * len(X) for h in range(n_heads)]
    order = [i for i in sorted(range(len(X)), key=lambda i: len(X[i])) if len(X[i])]
    batch_size = model.attrs["batch_size"]
    span_tags = [_span_tag_ids(tags) for tags in tag_sets]
    for first in range(0, len(order), batch_size):
        chunk = order[first: first + batch_size]
        host = None
        if len(chunk) == 1 and not token_probs:
            host = host_emissions(model, [[t.text for t in X[chunk[0]]]])
        if host is not None:
            i = chunk[0]
            for h, (crf, em) in enumerate(zip(network.crfs, host)):
                Y[h][i] = _host_scored_path(crf, em, allowed[h][i] if allowed is not None else None,
                                            tag_sets[h], span_tags[h], span_probs)
            continue
        emissions, mask = predict_emissions(model, [[t.text for t in X[i]] for i in chunk])
        with torch.no_grad():
            for h, (crf, em) in enumerate(zip(network.crfs, emissions)):
                rows_allowed = [allowed[h][i] if allowed is not None else None for i in chunk]
                if any(a is not None for a in rows_allowed):
                    em = restrict_emissions(em, _allowed_tensor(rows_allowed, em, mask))
                paths = crf.decode(em, mask).cpu().numpy()
                spans = [tags_to_spans([tag_sets[h][t] for t in paths[row, : len(X[i])]])
                         for row, i in enumerate(chunk)]
                probs = _span_probs(crf, em, mask, spans, span_tags[h]) if span_probs else None
                marg = crf.marginals(em, mask).float().cpu().numpy() if token_probs else None
                for row, i in enumerate(chunk):
                    n = len(X[i])
                    Y[h][i] = ScoredPath(
                        paths[row, :n], spans[row],
                        probs[row] if probs is not None else np.full(len(spans[row]), np.nan, np.float32),
                        marg[row, :n] if marg is not None else None)
    return Y


def _host_scored_path(crf: CRF, emissions: np.ndarray, allowed: Optional[np.ndarray],
                      tag_names: Sequence[str], span_tags: Dict[str, Tuple[int, int]],
                      span_probs: bool) -> ScoredPath:
    """One head's :class:`ScoredPath` for one sentence from numpy emissions
    ``[n, T]``: the same numpy loops the torch entry points take for a
    single row (:func:`~spacy_mat.crf.viterbi_numpy`,
    :func:`~spacy_mat.crf.span_log_probs_numpy`), without the tensors."""
    n = len(emissions)
    if allowed is not None:
        emissions = np.where(allowed, emissions, np.asarray(DISALLOWED, emissions.dtype))
    trans, start, end = crf.host_scores()
    path = viterbi_numpy(emissions, n, trans, start, end)[0]
    spans = tags_to_spans([tag_names[t] for t in path])
    if not span_probs:
        return ScoredPath(path, spans, np.full(len(spans), np.nan, np.float32), None)
    if not spans:
        return ScoredPath(path, spans, np.zeros(0, dtype=np.float32), None)
    columns = _span_columns([spans], span_tags)
    log_probs = span_log_probs_numpy(emissions, n, trans, start, end, *columns).astype(emissions.dtype)
    return ScoredPath(path, spans, np.minimum(np.exp(log_probs), 1.0).astype(np.float32), None)


def tag_kinds(tag_names: Sequence[str], device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per tag id: whether it is an ``I-X`` tag, and its span type's index
    (-1 for ``O``), the tables :func:`span_continuation` reads, on ``device``
    (default: the CPU). Built once per tag set and device (the training step
    asks for them every step); read-only."""
    return _tag_kinds(tuple(tag_names), torch.device("cpu") if device is None else torch.device(device))


@functools.lru_cache(maxsize=16)
def _tag_kinds(tag_names: Tuple[str, ...], device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    parsed = [parse_tag(t) for t in tag_names]
    types = sorted({label for _, label in parsed if label})
    inside = torch.tensor([prefix == "I" for prefix, _ in parsed], dtype=torch.bool, device=device)
    kind = torch.tensor([types.index(label) if label else -1 for _, label in parsed], dtype=torch.long,
                        device=device)
    return inside, kind


def _span_tag_ids(tag_names: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    """``label -> (id of B-label, id of I-label)``."""
    index = {t: i for i, t in enumerate(tag_names)}
    return {t[2:]: (i, index[f"I-{t[2:]}"]) for t, i in index.items() if t.startswith("B-")}


def _allowed_tensor(rows: Sequence[Optional[np.ndarray]], emissions: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    out = np.ones(tuple(emissions.shape), dtype=bool)
    for row, a in enumerate(rows):
        if a is not None:
            out[row, : len(a)] = a
    return torch.as_tensor(out, device=emissions.device) | ~mask.unsqueeze(-1)


def _span_columns(spans: Sequence[Sequence[Tuple[int, int, str]]],
                  tag_ids: Dict[str, Tuple[int, int]]) -> np.ndarray:
    """``[5, K]`` int64 columns (row, start, end, B id, I id) of the ``K``
    spans of all rows, row by row: the arguments of ``span_log_probs``."""
    return np.array([(row, s, e, *tag_ids[label]) for row, row_spans in enumerate(spans)
                     for s, e, label in row_spans], dtype=np.int64).reshape(-1, 5).T


def _span_probs(crf: Any, emissions: torch.Tensor, mask: torch.Tensor,
                spans: Sequence[Sequence[Tuple[int, int, str]]],
                tag_ids: Dict[str, Tuple[int, int]]) -> List[np.ndarray]:
    """Marginal probability of every span of every row, in one batched call."""
    if not any(spans):
        return [np.zeros(0, dtype=np.float32) for _ in spans]
    columns = torch.as_tensor(_span_columns(spans, tag_ids), device=emissions.device)
    probs = crf.span_log_probs(emissions, mask, *columns).exp().clamp(max=1.0).float().cpu().numpy()
    out, k = [], 0
    for row_spans in spans:
        out.append(probs[k: k + len(row_spans)])
        k += len(row_spans)
    return out


# -- growing the model after initialize (new labels, new words) --------------------

def add_head_labels(model: Model, head: int, tag_names: Sequence[str]) -> None:
    """Resize head ``head`` of an initialised model to ``tag_names``, which
    must extend the current tag names (new tags appended): the trained rows
    of the emission layer and CRF are kept, the new ones start at 0 (weights,
    bias, transitions), as spaCy's ``ner`` resizes its output layer."""

    old = list(model.attrs["tag_sets"][head])
    new = list(tag_names)
    if new[: len(old)] != old:
        raise ValueError(f"{ARCH_NAME}: new tag names must extend {old}, got {new}")
    if len(new) == len(old):
        return
    network = get_network(model)
    emitter, crf = network.emitters[head], network.crfs[head]
    n_old, n_new = len(old), len(new)
    bigger = torch.nn.Linear(emitter.in_features, n_new).to(emitter.weight.device)
    bigger_crf = CRF(n_new, allowed_transitions(new)).to(emitter.weight.device)
    with torch.no_grad():
        bigger.weight[:n_old] = emitter.weight
        bigger.weight[n_old:] = 0.0  # as ner's resize: the new tags start neutral
        bigger.bias[:n_old] = emitter.bias
        bigger.bias[n_old:] = 0.0
        bigger_crf.transitions[:n_old, :n_old] = crf.transitions
        bigger_crf.start_transitions[:n_old] = crf.start_transitions
        bigger_crf.end_transitions[:n_old] = crf.end_transitions
    network.emitters[head] = bigger
    network.crfs[head] = bigger_crf
    network.clear_caches()  # the prediction caches hold the replaced tensors
    tag_sets = [list(t) for t in model.attrs["tag_sets"]]
    tag_sets[head] = new
    model.attrs["tag_sets"] = tag_sets


def add_words(model: Model, words: Sequence[str], chars: Sequence[str] = ()) -> int:
    """Append ``words`` (word-table keys) and ``chars`` to the index tables of
    an initialised model and grow the embedding tables to match (new rows
    random and trainable, count 0, so the frequency-weighted normalisation
    statistics do not move). Words are not added to a table with
    pretrained-only rows (``n_trained < len(words)``: those use their
    vectors and lookup fallbacks instead). Returns the number of words added."""
    tables: IndexTables = model.attrs["tables"]
    if tables.n_trained != len(tables.words):
        words = []
    words = [w for w in dict.fromkeys(words) if w not in tables._word_index]
    chars = [c for c in dict.fromkeys(chars) if c not in tables._char_index]
    if not words and not chars:
        return 0
    network = get_network(model)
    model.attrs["tables"] = IndexTables(
        tables.words + words, tables.word_counts + [0] * len(words),
        tables.chars + chars, tables.char_counts + [0] * len(chars),
        lowercase=tables.lowercase, normalize_digits=tables.normalize_digits,
        max_word_length=tables.max_word_length, n_trained=len(tables.words) + len(words),
        fallbacks=tables.fallbacks)
    for embed, n in ((network.word_embed, len(words)), (network.char_embed, len(chars))):
        if n:
            _grow_embedding(embed, n)
    network.clear_caches()  # the prediction caches hold the replaced tensors
    return len(words)


def _grow_embedding(embed: torch.nn.Module, n: int) -> None:
    """Append ``n`` trainable rows to a NormalizedEmbedding without fixed rows."""
    weight = embed.weight
    bound = float(np.sqrt(3.0 / weight.shape[1]))
    with torch.no_grad():
        rows = torch.empty(n, weight.shape[1], dtype=weight.dtype, device=weight.device).uniform_(-bound, bound)
        embed.weight = torch.nn.Parameter(torch.cat([weight.detach(), rows]))
        embed.freq = torch.cat([embed.freq, embed.freq.new_zeros(n)])
    embed.n_counted = embed.weight.shape[0]  # as build_network() sizes it on reload


def sync_optimizer_state(model: Model, optimizer: Any) -> None:
    """Zero-pad the optimizer's per-parameter state (Adam moments, averages)
    of parameters that grew since the last update (:func:`add_words`,
    :func:`add_head_labels` append rows, or rows and columns for the CRF
    transitions), so the trained entries keep their state."""
    network = get_network(model)
    shim_id = model.shims[0].id
    for name, param in network.named_parameters():
        key = (shim_id, name)
        for attr in ("mom1", "mom2", "averages"):
            state = getattr(optimizer, attr, None)
            if not isinstance(state, dict) or key not in state or state[key].size == param.numel():
                continue
            old = state[key]
            shape = tuple(param.shape)
            if name.endswith("transitions") and len(shape) == 2:
                n = int(round(old.size ** 0.5))
                old_shape = (n, n)
            else:
                old_shape = (old.size // int(np.prod(shape[1:])),) + shape[1:] if len(shape) > 1 else (old.size,)
            grown = old.reshape(old_shape)
            pad = [(0, new - was) for new, was in zip(shape, old_shape)]
            xp = np if isinstance(old, np.ndarray) else __import__("cupy")  # numpy or cupy state
            grown = xp.pad(grown, pad)
            state[key] = grown.reshape(grown.size) if old.ndim == 1 else grown
