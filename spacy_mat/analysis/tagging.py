"""Gold sentences in, gold and predicted tag sequences out.

Reads gold sentence docs from a ``.spacy`` file (or a CoNLL file with a
format), runs a pipeline on unannotated copies of them (gold tokens and
sentence starts, as ``spacy_mat.SentenceCorpus.v1`` does in training), and
turns a target layer (``doc.ents`` or ``doc.spans[KEY]``) into IOB2 tags per
sentence. Also scores the same docs with spaCy's scorer, for a cross-check.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.vocab import Vocab

from ..component import MatTagger
from ..corpus import conll_to_doc, read_conll
from ..readers import input_doc, sentence_docs
from ..scoring import ENTS, parse_target, score_target
from ..tags import spans_to_tags
from .predictions import PredictionSentence

PathLike = Union[str, Path]


def read_sentence_docs(path: PathLike, vocab: Vocab, fmt: Optional[str] = None) -> List[Doc]:
    """One gold doc per non-empty sentence of a ``.spacy`` file, or of a CoNLL
    file when ``fmt`` (``conll2003`` / ``conll2000``) is given."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file not found (or not a file): {path}")
    if path.suffix == ".spacy":
        docs = list(DocBin().from_disk(path).get_docs(vocab))
    elif fmt is None:
        raise ValueError(f"{path}: not a .spacy file; for a CoNLL file give its format "
                         "(--format conll2003 or conll2000)")
    else:
        docs = [conll_to_doc(vocab, d) for d in read_conll(path, fmt)]
    return [sent for doc in docs for sent in sentence_docs(doc) if len(sent)]


def training_words(docs: Sequence[Doc]) -> set:
    """Every word form (``token.text``, case-sensitive) of the training docs."""
    return {token.text for doc in docs for token in doc}


def has_target(doc: Doc, target: str) -> bool:
    """Whether ``doc`` is annotated for the target layer."""
    kind, key = parse_target(target)
    return doc.has_annotation("ENT_IOB") if kind == ENTS else key in doc.spans


def target_spans(doc: Doc, target: str) -> List[Tuple[int, int, str]]:
    """``(start, end, label)`` of the target layer's spans, sorted."""
    kind, key = parse_target(target)
    spans = doc.ents if kind == ENTS else doc.spans.get(key, [])
    return sorted((s.start, s.end, s.label_) for s in spans)


def target_tags(doc: Doc, target: str) -> List[str]:
    """IOB2 tags of the target layer; overlapping spans are an error."""
    try:
        return spans_to_tags(target_spans(doc, target), len(doc))
    except ValueError as err:
        raise ValueError(f"{target} of doc {doc.text[:50]!r}: {err}") from None


def check_gold(docs: Sequence[Doc], target: str, where: str) -> None:
    """Raise if no doc carries the target annotation (e.g. NER on CoNLL-2000)."""
    if not docs:
        raise ValueError(f"{where}: no sentences")
    if not any(has_target(doc, target) for doc in docs):
        kind, key = parse_target(target)
        layer = "doc.ents" if kind == ENTS else f"doc.spans[{key!r}]"
        raise ValueError(f"{where}: no gold {layer} annotation; choose the target the data "
                         "has (--target ents or spans:chunks)")


def find_tagger(nlp: Language, target: Optional[str] = None) -> Tuple[str, MatTagger]:
    """The pipeline's ``mat_tagger`` (the one writing ``target`` if given)."""
    taggers = [(name, pipe) for name, pipe in nlp.pipeline if isinstance(pipe, MatTagger)]
    if not taggers:
        raise ValueError(f"the pipeline has no mat_tagger component (pipes: {nlp.pipe_names})")
    if target is None:
        if len(taggers) > 1:
            raise ValueError(f"the pipeline has several mat_taggers ({[n for n, _ in taggers]}); "
                             "choose one with --target")
        return taggers[0]
    wanted = parse_target(target)
    for name, pipe in taggers:
        if parse_target(pipe.cfg["target"]) == wanted:
            return name, pipe
    raise ValueError(f"no mat_tagger writes target {target!r}; the pipeline's taggers write "
                     f"{[p.cfg['target'] for _, p in taggers]}")


def predict_docs(nlp: Language, gold_docs: Sequence[Doc], batch_size: int = 256) -> List[Doc]:
    """The pipeline's output on unannotated copies (same tokens and sentence starts)."""
    return list(nlp.pipe((input_doc(nlp, doc) for doc in gold_docs), batch_size=batch_size))


def tag_sentences(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], target: str) -> List[PredictionSentence]:
    """Words, gold tags and predicted tags of each sentence doc."""
    if len(gold_docs) != len(pred_docs):
        raise ValueError(f"{len(gold_docs)} gold docs but {len(pred_docs)} predicted docs")
    out = []
    for gold, pred in zip(gold_docs, pred_docs):
        words = [t.text for t in gold]
        if [t.text for t in pred] != words:
            raise ValueError(f"predicted doc {pred.text[:50]!r} has other tokens than its gold doc")
        out.append(PredictionSentence(words, target_tags(gold, target), target_tags(pred, target)))
    return out


def spacy_score(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], target: str) -> Tuple[str, Any, Dict[str, Any]]:
    """``(key, F-score, all scores)`` from spaCy's scorer (``ents_f`` or
    ``spans_KEY_f``) on the same sentences; the F-score is None when neither
    side has a span."""
    kind, key = parse_target(target)
    examples = [Example(pred, gold) for gold, pred in zip(gold_docs, pred_docs)]
    scores = score_target(examples, target)
    name = "ents_f" if kind == ENTS else f"spans_{key}_f"
    return name, scores.get(name), scores


def build_doc(vocab: Vocab, words: Sequence[str], spaces: Sequence[bool],
              sent_starts: Optional[Sequence[bool]], spans: Sequence[Tuple[int, int, str]],
              target: str) -> Doc:
    """A new doc with the given tokens and only the target layer annotated."""
    doc = Doc(vocab, words=list(words), spaces=list(spaces),
              sent_starts=list(sent_starts) if sent_starts is not None else None)
    kind, key = parse_target(target)
    new_spans = [Span(doc, s, e, label=label) for s, e, label in spans]
    if kind == ENTS:
        doc.ents = new_spans
    else:
        doc.spans[key] = new_spans
    return doc


def sent_starts_of(doc: Doc) -> Optional[List[bool]]:
    """Sentence starts per token, or None when the doc has none."""
    if not doc.has_annotation("SENT_START"):
        return None
    return [bool(t.is_sent_start) for t in doc]
