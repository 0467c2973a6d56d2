"""The ``mat_tagger`` pipeline component: spaCy lifecycle around the model.

It turns docs into token sequences (sentences, or whole docs), gold spans
into BIO tag ids, and predicted tag ids back into ``doc.ents`` or
``doc.spans[KEY]``. With several ``targets`` it is multi-task: one emission
layer + CRF per target (head) on the shared encoder, the loss summed over
heads. The math lives in the model (architectures/network).
"""
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from .architectures import train_step
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
word_dropout = 0.05
lowercase = false
normalize_digits = false
min_word_freq = 1
max_word_length = 50
include_static_vectors = false
normalize_embeddings = true
batch_size = 256
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

# predictions per doc: (offset of the sequence in the doc, tag ids per head)
DocPrediction = List[Tuple[int, List[np.ndarray]]]
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
        "scorer": {"@scorers": "spacy_mat.tagger_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_mat_tagger(nlp: Language, name: str, model: Model, target: str,
                    targets: Optional[List[str]], use_sents: bool,
                    scorer: Optional[Callable]) -> "MatTagger":
    """A CNN-LSTM-CRF tagger writing ``doc.ents`` (``target = "ents"``) or
    ``doc.spans[KEY]`` (``target = "spans:KEY"``). For a spans target, set
    ``[training.score_weights] spans_KEY_f = 1.0`` in the training config.
    ``targets`` (e.g. ``["ents", "spans:chunks"]``) makes it multi-task, one
    head per target, and overrides ``target``; null means ``[target]``."""
    return MatTagger(nlp.vocab, model, name, target=target, targets=targets,
                     use_sents=use_sents, scorer=scorer)


class MatTagger(TrainablePipe):
    """Sequence labeller over BIO tags, one sequence per sentence (when the
    doc has sentence boundaries and ``use_sents``) or per doc."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "mat_tagger", *,
                 target: str = ENTS, targets: Optional[Sequence[str]] = None,
                 use_sents: bool = True, scorer: Optional[Callable] = score_target):
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
        self._n_updates = 0

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

    def add_label(self, label: str, head: int = 0) -> int:
        if not isinstance(label, str) or not label or "-" in label and label.split("-")[0] in ("B", "I"):
            raise ValueError(f"[{self.name}] invalid label {label!r}")
        heads = [list(h) for h in self.head_labels]
        if label in heads[head]:
            return 0
        if self.model.shims[0]._model is not None:
            raise ValueError(f"[{self.name}] cannot add label {label!r} to an initialized "
                             "model; re-initialize the pipeline with all labels")
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

    def _gold_ids(self, example: Example, head: int) -> np.ndarray:
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
        return np.array([index[t] for t in tags], dtype=np.int64)

    def gold_sequences(self, example: Example) -> List[Tuple[Span, np.ndarray]]:
        """Training sequences of the predicted doc with the first target's gold tag ids."""
        return [(seq, ids[0]) for seq, ids in self.gold_sequences_all(example)]

    def gold_sequences_all(self, example: Example) -> List[Tuple[Span, List[np.ndarray]]]:
        """Training sequences of the predicted doc with the gold tag ids of every target."""
        ids = [self._gold_ids(example, h) for h in range(len(self.targets))]
        return [(seq, [i[seq.start: seq.end] for i in ids])
                for seq in self._training_sequences(example)]

    # -- lifecycle ------------------------------------------------------------------
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *,
                   nlp: Optional[Language] = None,
                   labels: Optional[Union[Sequence[str], Mapping[str, Sequence[str]]]] = None) -> None:
        """``labels``: a list (the first target's) or ``{target: labels}``;
        missing targets take their labels from the training data."""
        validate_get_examples(get_examples, "MatTagger.initialize")
        examples = list(get_examples())
        given = dict(labels) if isinstance(labels, Mapping) else {} if labels is None else {self.targets[0]: labels}
        self.cfg["labels"], self.cfg["head_labels"] = [], [[] for _ in self.targets]
        self.model.shims[0]._model = None
        for head, (target, (kind, key)) in enumerate(zip(self.targets, self.parsed_targets)):
            head_labels = given.get(target)
            if head_labels is None:
                head_labels = sorted({s.label_ for eg in examples for s in self._gold_spans(eg, head)})
            if not head_labels:
                where = "doc.ents" if kind == ENTS else f"doc.spans[{key!r}]"
                raise ValueError(f"[{self.name}] no labels found in the training data's {where}; "
                                 f"check the target setting ({target!r}) and the corpus")
            for label in head_labels:
                self.add_label(label, head)
        self.model.attrs["tag_sets"] = self.head_tag_names
        sequences = [seq for eg in examples for seq, _ in self.gold_sequences_all(eg)]
        self.model.initialize(X=sequences)

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        docs = list(docs)
        per_doc = [self.sequences(doc) for doc in docs]
        flat = [seq for seqs in per_doc for seq in seqs]
        paths = self.model.predict(flat) if flat else []
        out: List[DocPrediction] = []
        i = 0
        for seqs in per_doc:
            out.append([(seq.start, [head[i + j] for head in paths]) for j, seq in enumerate(seqs)])
            i += len(seqs)
        return out

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        head_names = self.head_tag_names
        for doc, doc_pred in zip(docs, predictions):
            for head, ((kind, key), names) in enumerate(zip(self.parsed_targets, head_names)):
                spans = []
                for offset, heads in doc_pred:
                    tags = [names[i] for i in heads[head]]
                    spans.extend(Span(doc, offset + s, offset + e, label=label)
                                 for s, e, label in tags_to_spans(tags))
                if kind == ENTS:
                    doc.set_ents(spans, default="outside")
                else:
                    doc.spans[key] = spans

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
        gold = [[g[head] for _, g in pairs] for head in range(len(self.targets))]
        step = train_step(self.model, [s for s, _ in pairs], gold)
        losses[self.name] += step["label"]
        if "adv" in step:
            losses[self.adv_loss_key] = losses.get(self.adv_loss_key, 0.0) + step["adv"]
        if sgd is not None:
            self.finish_update(sgd)
        self._n_updates += 1
        if self._n_updates % TRIM_EVERY == 0:
            release_freed_memory()
        return losses

    def get_loss(self, examples, scores):
        raise NotImplementedError(f"[{self.name}] the loss is computed inside update()")


def _same_tokens(a: Doc, b: Doc) -> bool:
    """Whether two docs have the same token strings."""
    return len(a) == len(b) and all(x.text == y.text for x, y in zip(a, b))
