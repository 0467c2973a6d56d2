"""The ``mat_tagger`` pipeline component: spaCy lifecycle around the model.

It turns docs into token sequences (sentences, or whole docs), gold spans
into BIO tag ids, and predicted tag ids back into ``doc.ents`` or
``doc.spans[KEY]``. The math lives in the model (architectures/network).
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

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
        "use_sents": True,
        "scorer": {"@scorers": "spacy_mat.tagger_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_mat_tagger(nlp: Language, name: str, model: Model, target: str, use_sents: bool,
                    scorer: Optional[Callable]) -> "MatTagger":
    """A CNN-LSTM-CRF tagger writing ``doc.ents`` (``target = "ents"``) or
    ``doc.spans[KEY]`` (``target = "spans:KEY"``). For a spans target, set
    ``[training.score_weights] spans_KEY_f = 1.0`` in the training config."""
    return MatTagger(nlp.vocab, model, name, target=target, use_sents=use_sents, scorer=scorer)


class MatTagger(TrainablePipe):
    """Sequence labeller over BIO tags, one sequence per sentence (when the
    doc has sentence boundaries and ``use_sents``) or per doc."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "mat_tagger", *,
                 target: str = ENTS, use_sents: bool = True,
                 scorer: Optional[Callable] = score_target):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.kind, self.spans_key = parse_target(target)
        self.cfg: Dict = {"labels": [], "target": target, "use_sents": use_sents}
        self._n_updates = 0

    # -- labels ---------------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def tag_names(self) -> List[str]:
        return bio_tag_names(self.labels)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str) or not label or "-" in label and label.split("-")[0] in ("B", "I"):
            raise ValueError(f"[{self.name}] invalid label {label!r}")
        if label in self.cfg["labels"]:
            return 0
        if self.model.shims[0]._model is not None:
            raise ValueError(f"[{self.name}] cannot add label {label!r} to an initialized "
                             "model; re-initialize the pipeline with all labels")
        self.cfg["labels"] = sorted(self.cfg["labels"] + [label])
        return 1

    # -- sequences and gold -----------------------------------------------------
    def sequences(self, doc: Doc) -> List[Span]:
        """The token sequences the model labels: sentences or the whole doc."""
        if self.cfg["use_sents"] and doc.has_annotation("SENT_START"):
            return [s for s in doc.sents if len(s)]
        return [doc[:]] if len(doc) else []

    def _gold_spans(self, example: Example) -> List[Span]:
        ref = example.reference
        if self.kind == ENTS:
            gold = list(ref.ents)
        else:
            gold = list(ref.spans.get(self.spans_key, []))
        return list(example.get_aligned_spans_y2x(gold, allow_overlap=self.kind != ENTS))

    def _training_sequences(self, example: Example) -> List[Span]:
        pred, ref = example.predicted, example.reference
        if (self.cfg["use_sents"] and not pred.has_annotation("SENT_START")
                and ref.has_annotation("SENT_START") and [t.text for t in pred] == [t.text for t in ref]):
            return [pred[s.start: s.end] for s in ref.sents if len(s)]
        return self.sequences(pred)

    def gold_sequences(self, example: Example) -> List[Tuple[Span, np.ndarray]]:
        """Training sequences of the predicted doc with their gold tag ids."""
        pred = example.predicted
        spans = self._gold_spans(example)
        try:
            tags = spans_to_tags([(s.start, s.end, s.label_) for s in spans], len(pred))
        except ValueError as err:
            raise ValueError(f"[{self.name}] gold spans of doc {pred.text[:50]!r}...: {err}") from None
        index = {tag: i for i, tag in enumerate(self.tag_names)}
        unknown = {t for t in tags if t not in index}
        if unknown:
            raise ValueError(f"[{self.name}] gold tags {sorted(unknown)} use labels not in "
                             f"{self.labels}; initialize with all labels")
        ids = np.array([index[t] for t in tags], dtype=np.int64)
        return [(seq, ids[seq.start: seq.end]) for seq in self._training_sequences(example)]

    # -- lifecycle ------------------------------------------------------------------
    def initialize(self, get_examples: Callable[[], Iterable[Example]], *,
                   nlp: Optional[Language] = None, labels: Optional[Sequence[str]] = None) -> None:
        validate_get_examples(get_examples, "MatTagger.initialize")
        examples = list(get_examples())
        if labels is None:
            labels = sorted({s.label_ for eg in examples for s in self._gold_spans(eg)})
        if not labels:
            where = "doc.ents" if self.kind == ENTS else f"doc.spans[{self.spans_key!r}]"
            raise ValueError(f"[{self.name}] no labels found in the training data's {where}; "
                             f"check the target setting ({self.cfg['target']!r}) and the corpus")
        self.cfg["labels"] = []
        self.model.shims[0]._model = None
        for label in labels:
            self.add_label(label)
        self.model.attrs["tag_sets"] = [self.tag_names]
        sequences = [seq for eg in examples for seq, _ in self.gold_sequences(eg)]
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
        names = self.tag_names
        for doc, doc_pred in zip(docs, predictions):
            spans = []
            for offset, heads in doc_pred:
                tags = [names[i] for i in heads[0]]
                spans.extend(Span(doc, offset + s, offset + e, label=label)
                             for s, e, label in tags_to_spans(tags))
            if self.kind == ENTS:
                doc.set_ents(spans, default="outside")
            else:
                doc.spans[self.spans_key] = spans

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
        pairs = [pair for eg in examples for pair in self.gold_sequences(eg)]
        if not pairs:
            return losses
        step = train_step(self.model, [s for s, _ in pairs], [[g for _, g in pairs]])
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
