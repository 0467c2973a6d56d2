"""The ``mat_tagger`` pipeline component: spaCy lifecycle around the model.

It turns docs into token sequences (sentences, or whole docs), gold spans
into BIO tag ids (-1 where the annotation is missing), preset entities into
decoding constraints, and predicted tag ids back into ``doc.ents`` or
``doc.spans[KEY]``, with the CRF marginal probability of each predicted span
in ``doc.spans[scores_key].attrs["scores"]``. With several ``targets`` it is
multi-task: one emission layer + CRF per target (head) on the shared
encoder, the loss summed over heads. The math lives in the model
(architectures/network/crf).
"""
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from .architectures import (ScoredPath, add_head_labels, add_words, predict_scored,
                            sync_optimizer_state, train_step)
from .features import UNK_ID
from .memory import release_freed_memory
from .scoring import ENTS, parse_target, score_target
from .tags import bio_tag_names, spans_to_tags, tags_to_spans

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_mat.CharCNNBiLSTMCRF.v1"
word_width = 100
char_width = 30
char_filters = 30
char_window = 3
hidden_width = 200
depth = 1
dropout = 0.2
word_dropout = 0.0
lowercase = false
normalize_digits = false
min_word_freq = 1
max_word_length = 50
include_static_vectors = false
normalize_embeddings = true
batch_size = 256
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

DEFAULT_SCORES_KEY = "mat_tagger_scores"
MISSING = -1  # gold tag id of a token whose annotation is missing


class DocPrediction(list):
    """Predictions for one doc: a list of ``(offset of the sequence in the
    doc, [tag ids per head])``; ``scored[i][head]`` holds the
    :class:`~spacy_mat.architectures.ScoredPath` of sequence i (spans and
    their probabilities), ``preset`` the preset entities kept as constraints."""

    def __init__(self, items: Iterable[Tuple[int, List[np.ndarray]]] = (),
                 scored: Optional[List[List[ScoredPath]]] = None, preset: Optional[List[Span]] = None):
        super().__init__(items)
        self.scored = scored or []
        self.preset = preset or []


# give freed heap memory back to the OS every this many updates (see memory.py)
TRIM_EVERY = 20


@Language.factory(
    "mat_tagger",
    assigns=["doc.ents", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "target": ENTS,
        "targets": None,
        "use_sents": True,
        "scores_key": DEFAULT_SCORES_KEY,
        "token_scores": False,
        "threshold": 0.0,
        "overwrite_ents": False,
        "grow_vocab": True,
        "scorer": {"@scorers": "spacy_mat.tagger_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_mat_tagger(nlp: Language, name: str, model: Model, target: str,
                    targets: Optional[List[str]], use_sents: bool, scores_key: Optional[str],
                    token_scores: bool, threshold: float, overwrite_ents: bool, grow_vocab: bool,
                    scorer: Optional[Callable]) -> "MatTagger":
    """A CNN-LSTM-CRF tagger writing ``doc.ents`` (``target = "ents"``) or
    ``doc.spans[KEY]`` (``target = "spans:KEY"``). For a spans target, set
    ``[training.score_weights] spans_KEY_f = 1.0`` in the training config.
    ``targets`` (e.g. ``["ents", "spans:chunks"]``) makes it multi-task, one
    head per target, and overrides ``target``; null means ``[target]``.

    ``use_sents``: label each sentence on its own when the doc has sentence
    boundaries (put a ``sentencizer`` or ``senter`` before the tagger for raw
    text); without boundaries the whole doc is one sequence, which is slower
    and less accurate on long texts. ``scores_key``: the span group that
    receives the predicted entities with ``attrs["scores"]``, the CRF
    marginal probability of each (null: no scores); for a spans target the
    scores go to ``doc.spans[KEY].attrs["scores"]``. ``token_scores``: also
    store each token's tag marginals (``attrs["token_probs"]``,
    ``attrs["tag_names"]``). ``threshold``: drop predicted entities whose
    probability is below it. ``overwrite_ents``: replace preset entities
    instead of keeping them as decoding constraints. ``grow_vocab``: on
    updates of a loaded (not freshly initialised) tagger, add words unseen at
    initialize to the word table once seen ``min_word_freq`` times."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"[{name}] threshold must be in [0, 1], got {threshold}")
    return MatTagger(nlp.vocab, model, name, target=target, targets=targets,
                     use_sents=use_sents, scores_key=scores_key, token_scores=token_scores,
                     threshold=threshold, overwrite_ents=overwrite_ents, grow_vocab=grow_vocab,
                     scorer=scorer)


class MatTagger(TrainablePipe):
    """Sequence labeller over BIO tags, one sequence per sentence (when the
    doc has sentence boundaries and ``use_sents``) or per doc."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "mat_tagger", *,
                 target: str = ENTS, targets: Optional[Sequence[str]] = None,
                 use_sents: bool = True, scores_key: Optional[str] = DEFAULT_SCORES_KEY,
                 token_scores: bool = False, threshold: float = 0.0, overwrite_ents: bool = False,
                 grow_vocab: bool = True, scorer: Optional[Callable] = score_target):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.targets: List[str] = list(targets) if targets else [target]
        self.parsed_targets = [parse_target(t) for t in self.targets]
        if len(set(self.parsed_targets)) != len(self.targets):
            raise ValueError(f"[{self.name}] duplicate targets in {self.targets}")
        self.kind, self.spans_key = self.parsed_targets[0]
        self.cfg: Dict = {"labels": [], "target": target,
                          "targets": list(targets) if targets else None, "use_sents": use_sents}
        # inference options: attributes, not cfg (cfg is saved with the
        # pipeline and would override the config on loading)
        self.scores_key = scores_key
        self.token_scores = token_scores
        self.threshold = threshold
        self.overwrite_ents = overwrite_ents
        self.grow_vocab = grow_vocab
        self._n_updates = 0
        self._has_gradient = False  # a training step ran since the last finish_update
        # a copy of the model made by nlp.resume_training(), the teacher of rehearse()
        self._rehearsal_model: Optional[Model] = None
        # whether updates add unseen words to the word table: yes for a loaded
        # tagger (or one initialised without annotated data), no after
        # initialize() on training data (whose word table is already complete)
        self._grow_vocab = False
        self._pending_words: Counter = Counter()

    # -- labels ---------------------------------------------------------------
    # cfg["labels"]: the first head's labels (as in single-target pipelines,
    # including those saved before multi-task); cfg["head_labels"]: all heads'.
    @property
    def labels(self) -> Tuple[str, ...]:
        """The first target's labels (see :attr:`head_labels` for all targets)."""
        return tuple(self.cfg["labels"])

    @property
    def head_labels(self) -> List[Tuple[str, ...]]:
        """Labels per target, in ``targets`` order."""
        heads = self.cfg.get("head_labels")
        if not heads or len(heads) != len(self.targets):
            heads = [self.cfg["labels"]] + [[] for _ in self.targets[1:]]
        return [tuple(h) for h in heads]

    @property
    def tag_names(self) -> List[str]:
        """The first target's BIO tag names."""
        return bio_tag_names(self.labels)

    @property
    def head_tag_names(self) -> List[List[str]]:
        return [bio_tag_names(labels) for labels in self.head_labels]

    @property
    def label_data(self) -> Union[List[str], Dict[str, List[str]]]:
        """The labels, as ``spacy init labels`` saves them and
        ``initialize(labels=...)`` reads them back: a list for a single
        target, ``{target: labels}`` for a multi-task tagger."""
        if len(self.targets) == 1:
            return list(self.labels)
        return {t: list(h) for t, h in zip(self.targets, self.head_labels)}

    @property
    def is_initialized(self) -> bool:
        return self.model.shims[0]._model is not None

    def add_label(self, label: str, head: int = 0) -> int:
        """Add a label to head ``head``. Before ``initialize`` the label is
        kept (``initialize`` adds those found in the data); after it, the
        head's emission layer and CRF grow by the label's B/I tags, like
        spaCy's ``ner`` resizes its output layer. Returns 1 if added, 0 if
        already there."""
        if not isinstance(label, str) or not label or "-" in label and label.split("-")[0] in ("B", "I"):
            raise ValueError(f"[{self.name}] invalid label {label!r}")
        heads = [list(h) for h in self.head_labels]
        if label in heads[head]:
            return 0
        if self.is_initialized:
            heads[head] = heads[head] + [label]  # appended: the trained tag ids stay
            add_head_labels(self.model, head, bio_tag_names(heads[head]))
        else:
            heads[head] = sorted(heads[head] + [label])
        self.cfg["head_labels"] = heads
        self.cfg["labels"] = heads[0]
        return 1

    # -- sequences and gold -----------------------------------------------------
    def sequences(self, doc: Doc) -> List[Span]:
        """The token sequences the model labels: sentences or the whole doc."""
        if self.cfg["use_sents"] and doc.has_annotation("SENT_START"):
            return [s for s in doc.sents if len(s)]
        return [doc[:]] if len(doc) else []

    def _gold_spans(self, example: Example, head: int = 0) -> List[Span]:
        ref = example.reference
        kind, key = self.parsed_targets[head]
        gold = list(ref.ents) if kind == ENTS else list(ref.spans.get(key, []))
        pred = example.predicted
        if _same_tokens(pred, ref):
            # the usual case in training (gold-tokenized corpora): the token
            # alignment is the identity, and building spaCy's Alignment costs
            # ~0.5 ms per example (15% of a baseline training step)
            return [Span(pred, s.start, s.end, label=s.label, kb_id=s.kb_id) for s in gold]
        return list(example.get_aligned_spans_y2x(gold, allow_overlap=kind != ENTS))

    def _training_sequences(self, example: Example) -> List[Span]:
        pred, ref = example.predicted, example.reference
        if (self.cfg["use_sents"] and not pred.has_annotation("SENT_START")
                and ref.has_annotation("SENT_START") and _same_tokens(pred, ref)):
            return [pred[s.start: s.end] for s in ref.sents if len(s)]
        return self.sequences(pred)

    def _missing(self, example: Example, head: int) -> np.ndarray:
        """``[len(predicted)]`` bool: tokens whose gold annotation for the
        head's target is missing (NER: ``ent_iob`` 0, "-" in BILUO; spans: no
        ``doc.spans[KEY]`` at all), to be trained as unknown, as ``ner`` does."""
        pred, ref = example.predicted, example.reference
        kind, key = self.parsed_targets[head]
        if kind != ENTS:
            return np.full(len(pred), key not in ref.spans)
        if _same_tokens(pred, ref):
            return ref.to_array("ENT_IOB").reshape(-1) == 0 if len(ref) else np.zeros(0, dtype=bool)
        aligned = example.get_aligned_ner()
        return np.array([tag is None or tag == "-" for tag in aligned], dtype=bool)

    def _gold_ids(self, example: Example, head: int) -> np.ndarray:
        """Gold tag ids of the predicted doc's tokens, ``MISSING`` (-1) where
        the annotation is missing."""
        pred = example.predicted
        spans = self._gold_spans(example, head)
        try:
            tags = spans_to_tags([(s.start, s.end, s.label_) for s in spans], len(pred))
        except ValueError as err:
            raise ValueError(f"[{self.name}] gold spans ({self.targets[head]}) of doc "
                             f"{pred.text[:50]!r}...: {err}") from None
        index = {tag: i for i, tag in enumerate(self.head_tag_names[head])}
        unknown = {t for t in tags if t not in index}
        if unknown:
            raise ValueError(f"[{self.name}] gold tags {sorted(unknown)} ({self.targets[head]}) use "
                             f"labels not in {self.head_labels[head]}; initialize with all labels")
        ids = np.array([index[t] for t in tags], dtype=np.int64)
        ids[self._missing(example, head) & (ids == index["O"])] = MISSING
        return ids

    def gold_sequences(self, example: Example) -> List[Tuple[Span, np.ndarray]]:
        """Training sequences of the predicted doc with the first target's gold tag ids."""
        return [(seq, ids[0]) for seq, ids in self.gold_sequences_all(example)]

    def gold_sequences_all(self, example: Example) -> List[Tuple[Span, List[np.ndarray]]]:
        """Training sequences of the predicted doc with the gold tag ids of
        every target (``MISSING`` = -1 where the annotation is missing). A
        sequence whose every tag is missing in every target is left out: it
        contributes nothing to the loss."""
        ids = [self._gold_ids(example, h) for h in range(len(self.targets))]
        pairs = [(seq, [i[seq.start: seq.end] for i in ids])
                 for seq in self._training_sequences(example)]
        return [(seq, gold) for seq, gold in pairs if any((g != MISSING).any() for g in gold)]

    # -- lifecycle ------------------------------------------------------------------
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *,
                   nlp: Optional[Language] = None,
                   labels: Optional[Union[Sequence[str], Mapping[str, Sequence[str]]]] = None) -> None:
        """``labels``: a list (the first target's) or ``{target: labels}``;
        missing targets take their labels from the training data."""
        validate_get_examples(get_examples, "MatTagger.initialize")
        examples = list(get_examples())
        given = dict(labels) if isinstance(labels, Mapping) else {} if labels is None else {self.targets[0]: labels}
        added = self.head_labels  # labels added before initialize are kept, as in ner
        self.cfg["labels"], self.cfg["head_labels"] = [], [[] for _ in self.targets]
        self.model.shims[0]._model = None
        for head, (target, (kind, key)) in enumerate(zip(self.targets, self.parsed_targets)):
            head_labels = given.get(target)
            if head_labels is None:
                head_labels = {s.label_ for eg in examples for s in self._gold_spans(eg, head)}
            head_labels = sorted(set(head_labels) | set(added[head]))
            if not head_labels:
                where = "doc.ents" if kind == ENTS else f"doc.spans[{key!r}]"
                raise ValueError(f"[{self.name}] no labels found in the training data's {where}; "
                                 f"check the target setting ({target!r}) and the corpus, or "
                                 "give [initialize.components.NAME.labels]")
            for label in head_labels:
                self.add_label(label, head)
        self.model.attrs["tag_sets"] = self.head_tag_names
        # the word table comes from annotated sequences only: spaCy's dummy
        # examples (`spacy assemble`, nlp.initialize() without data) carry
        # none, and the table then starts empty and grows on update
        sequences = [seq for eg in examples for seq, _ in self.gold_sequences_all(eg)]
        self._grow_vocab = not sequences
        self._pending_words.clear()
        self.model.initialize(X=sequences or [Doc(self.vocab, words=[])[:]])

    # -- prediction ---------------------------------------------------------------
    @property
    def _wants_span_probs(self) -> bool:
        return self.scores_key is not None or self.threshold > 0

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Best tag paths of every sequence, decoded under the constraints of
        the docs' preset entities (unless ``overwrite_ents``), with span and
        token probabilities as configured."""
        docs = list(docs)
        per_doc = [self.sequences(doc) for doc in docs]
        flat = [seq for seqs in per_doc for seq in seqs]
        ents_heads = [h for h, (kind, _) in enumerate(self.parsed_targets) if kind == ENTS]
        presets: List[Tuple[List[Span], Optional[np.ndarray]]] = [
            self._preset_constraints(doc, seqs) if ents_heads and not self.overwrite_ents else ([], None)
            for doc, seqs in zip(docs, per_doc)]
        constrained = any(allowed is not None for _, allowed in presets)
        if not flat:
            scored: List[List[ScoredPath]] = [[] for _ in self.targets]
        elif constrained or self._wants_span_probs or self.token_scores:
            allowed: List[List[Optional[np.ndarray]]] = [[None] * len(flat) for _ in self.targets]
            i = 0
            for seqs, (_, doc_allowed) in zip(per_doc, presets):
                for j, seq in enumerate(seqs):
                    if doc_allowed is not None:
                        for h in ents_heads:
                            allowed[h][i + j] = doc_allowed[seq.start: seq.end]
                i += len(seqs)
            scored = predict_scored(self.model, flat, allowed if constrained else None,
                                    span_probs=self._wants_span_probs, token_probs=self.token_scores)
        else:  # the plain forward pass: tag paths only
            names = self.head_tag_names
            scored = [[_unscored(path, names[h]) for path in head]
                      for h, head in enumerate(self.model.predict(flat))]
        out: List[DocPrediction] = []
        i = 0
        for seqs, (preset, _) in zip(per_doc, presets):
            rows = [[head[i + j] for head in scored] for j in range(len(seqs))]
            out.append(DocPrediction([(seq.start, [sp.tags for sp in row]) for seq, row in zip(seqs, rows)],
                                     scored=rows, preset=preset))
            i += len(seqs)
        return out

    def _preset_constraints(self, doc: Doc, seqs: Sequence[Span]) -> Tuple[List[Span], Optional[np.ndarray]]:
        """The doc's preset entities and the tags they allow per token of the
        ents head (``[len(doc), T]``), or ``([], None)`` if it has none. As in
        spaCy's ``ner``: a preset entity is kept (B-X, then I-X, and the next
        token may not continue it; a label the tagger does not know is kept
        and its tokens are O for the tagger); a blocked token (``ent_iob_``
        "B" with no type) is O; "O" and missing tokens are free."""
        if not len(doc) or not doc.has_annotation("ENT_IOB"):
            return [], None
        iob_type = doc.to_array(["ENT_IOB", "ENT_TYPE"]).reshape(len(doc), 2)
        blocked = (iob_type[:, 0] == 3) & (iob_type[:, 1] == 0)
        preset = list(doc.ents)
        if not preset and not blocked.any():
            return [], None
        head = next(h for h, (kind, _) in enumerate(self.parsed_targets) if kind == ENTS)
        index = {t: i for i, t in enumerate(self.head_tag_names[head])}
        n_tags = len(index)
        only = np.eye(n_tags, dtype=bool)
        allowed = np.ones((len(doc), n_tags), dtype=bool)
        allowed[blocked] = only[index["O"]]
        starts = np.array(sorted(seq.start for seq in seqs), dtype=np.int64)
        for ent in preset:
            b, i = index.get(f"B-{ent.label_}"), index.get(f"I-{ent.label_}")
            if b is None:
                allowed[ent.start: ent.end] = only[index["O"]]
                continue
            # the part of an entity that crosses into the next sequence is O there
            inner = starts[(starts > ent.start) & (starts < ent.end)]
            cut = int(inner[0]) if len(inner) else ent.end
            allowed[ent.start] = only[b]
            allowed[ent.start + 1: cut] = only[i]
            allowed[cut: ent.end] = only[index["O"]]
            if ent.end < len(doc):
                allowed[ent.end, i] = False
        return preset, allowed

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        head_names = self.head_tag_names
        for doc, doc_pred in zip(docs, predictions):
            preset = doc_pred.preset
            occupied = np.zeros(len(doc), dtype=bool)
            for ent in preset:
                occupied[ent.start: ent.end] = True
            for head, ((kind, key), names) in enumerate(zip(self.parsed_targets, head_names)):
                spans, probs = [], []
                for (offset, _), row in zip(doc_pred, doc_pred.scored):
                    scored = row[head]
                    for (s, e, label), p in zip(scored.spans, scored.span_probs):
                        if kind == ENTS and occupied[offset + s: offset + e].any():
                            continue  # a preset entity (kept below) or the part of one
                        if self.threshold > 0 and not p >= self.threshold:
                            continue
                        spans.append(Span(doc, offset + s, offset + e, label=label))
                        probs.append(p)
                attrs = self._score_attrs(doc, doc_pred, head, names, probs)
                if kind == ENTS:
                    doc.set_ents(sorted(preset + spans, key=lambda sp: sp.start), default="outside")
                    if self.scores_key is not None:
                        doc.spans[self.scores_key] = SpanGroup(doc, name=self.scores_key, attrs=attrs,
                                                               spans=spans)
                else:
                    doc.spans[key] = SpanGroup(doc, name=key, attrs=attrs, spans=spans)

    def _score_attrs(self, doc: Doc, doc_pred: DocPrediction, head: int, names: List[str],
                     probs: List[float]) -> Dict[str, Any]:
        """Span-group attrs: ``scores`` (span probabilities) and, with
        ``token_scores``, ``token_probs`` ``[len(doc), T]`` and ``tag_names``."""
        if self.scores_key is None:
            return {}
        attrs: Dict[str, Any] = {"scores": np.asarray(probs, dtype=np.float32)}
        if self.token_scores:
            token_probs = np.zeros((len(doc), len(names)), dtype=np.float32)
            for (offset, _), row in zip(doc_pred, doc_pred.scored):
                if row[head].token_probs is not None:
                    token_probs[offset: offset + len(row[head].tags)] = row[head].token_probs
            attrs["token_probs"] = token_probs
            attrs["tag_names"] = list(names)
        return attrs

    @property
    def adv_loss_key(self) -> str:
        """Key of the adversarial loss in the losses dict (the clean CRF loss is
        under the component's name)."""
        return f"{self.name}_adv"

    @property
    def loss_keys(self) -> List[str]:
        """The losses this component reports (read by spacy_mat.ConsoleLogger.v1)."""
        mode = self.model.attrs.get("adversarial", {}).get("mode", "none")
        return [self.name] if mode == "none" else [self.name, self.adv_loss_key]

    def update(self, examples: Iterable[Example], *, drop: float = 0.0,
               sgd: Optional[Optimizer] = None, losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """One gradient step on the training objective (CRF loss, plus the
        adversarial loss in an adversarial mode, reported under
        ``{name}_adv``). The model's own dropout settings apply; spaCy's
        ``drop`` argument is not used."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "MatTagger.update")
        pairs = [pair for eg in examples for pair in self.gold_sequences_all(eg)]
        if not pairs:
            return losses
        if self._grows_vocab:
            self._grow_vocab_from([seq for seq, _ in pairs])
        gold = [[g[head] for _, g in pairs] for head in range(len(self.targets))]
        step = train_step(self.model, [s for s, _ in pairs], gold)
        self._has_gradient = True
        losses[self.name] += step["label"]
        if "adv" in step:
            losses[self.adv_loss_key] = losses.get(self.adv_loss_key, 0.0) + step["adv"]
        self._after_step(sgd)
        return losses

    def rehearse(self, examples: Iterable[Example], *, drop: float = 0.0,
                 sgd: Optional[Optimizer] = None, losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """A step towards the predictions of the model as it was at
        ``nlp.resume_training()`` (the teacher), on the docs of ``examples``
        (raw text is enough): it keeps the tagger from forgetting what it
        knew while ``nlp.update`` teaches it new data, as ``ner.rehearse``
        does. A no-op before ``resume_training``. The loss is reported under
        ``{name}`` like update's."""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        if self._rehearsal_model is None:
            return losses
        examples = list(examples)
        validate_examples(examples, "MatTagger.rehearse")
        seqs = [seq for eg in examples for seq in self.sequences(eg.predicted)]
        if not seqs:
            return losses
        if self._grows_vocab:
            self._grow_vocab_from(seqs)
        teacher = self._rehearsal_model.predict(seqs)
        step = train_step(self.model, seqs, teacher)
        self._has_gradient = True
        losses[self.name] += step["label"]
        self._after_step(sgd)
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply the accumulated gradients; the optimizer state of parameters
        that grew (new labels, new words) is padded first. Without a training
        step since the last call (e.g. a batch of unannotated docs), nothing
        changes: no optimizer step, no weight decay."""
        if not self._has_gradient:
            return
        sync_optimizer_state(self.model, sgd)
        super().finish_update(sgd)
        self._has_gradient = False

    def _after_step(self, sgd: Optional[Optimizer]) -> None:
        if sgd is not None:
            self.finish_update(sgd)
        self._n_updates += 1
        if self._n_updates % TRIM_EVERY == 0:
            release_freed_memory()

    # -- growing the word table on update ----------------------------------------------
    @property
    def _grows_vocab(self) -> bool:
        return self.grow_vocab and (self._grow_vocab or self._rehearsal_model is not None)

    def _grow_vocab_from(self, seqs: Sequence[Span]) -> int:
        """Count the words of ``seqs`` missing from the word table; add those
        seen ``min_word_freq`` times (and every new character). Returns how
        many words were added."""
        tables = self.model.attrs["tables"]
        min_freq = self.model.attrs.get("min_word_freq", 1)
        new_words, new_chars = [], set()
        for seq in seqs:
            for token in seq:
                text = token.text
                if tables.word_id(text) == UNK_ID:
                    key = tables.word_key(text)
                    self._pending_words[key] += 1
                    if self._pending_words[key] >= min_freq:
                        new_words.append(key)
                new_chars.update(c for c in text[: tables.max_word_length] if c not in tables._char_index)
        for key in new_words:
            self._pending_words.pop(key, None)
        return add_words(self.model, new_words, sorted(new_chars))

    # -- serialization: a loaded tagger grows its word table on update -----------------
    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "MatTagger":
        super().from_bytes(bytes_data, exclude=exclude)
        self._grow_vocab = True
        return self

    def from_disk(self, path: Any, *, exclude: Iterable[str] = tuple()) -> "MatTagger":
        super().from_disk(path, exclude=exclude)
        self._grow_vocab = True
        return self

    def get_loss(self, examples, scores):
        raise NotImplementedError(f"[{self.name}] the loss is computed inside update()")


def _unscored(path: np.ndarray, names: Sequence[str]) -> ScoredPath:
    spans = tags_to_spans([names[t] for t in path])
    return ScoredPath(path, spans, np.full(len(spans), np.nan, dtype=np.float32), None)


def _same_tokens(a: Doc, b: Doc) -> bool:
    """Whether two docs have the same token strings."""
    return len(a) == len(b) and all(x.text == y.text for x, y in zip(a, b))
