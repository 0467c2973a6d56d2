"""A registered spaCy corpus reader that yields gold-tokenized examples per
sentence (or per doc with gold sentence boundaries), keeping ``doc.ents``
*and* every span group.

spaCy's own ``spacy.Corpus.v1`` with ``gold_preproc = true`` splits docs into
sentences with ``Span.as_doc()``, which drops ``doc.spans``; chunking targets
live there, so training on sentences needs this reader.
"""
from pathlib import Path
from typing import Callable, Iterator, List, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import registry


@registry.readers("spacy_mat.SentenceCorpus.v1")
def create_sentence_corpus(path: Union[str, Path], per_sentence: bool = True,
                           limit: int = 0) -> Callable[[Language], Iterator[Example]]:
    """Examples from a ``.spacy`` file: one per gold sentence (``per_sentence``)
    or one per doc whose predicted side carries the gold sentence starts.
    ``limit`` > 0 stops after that many examples."""
    return SentenceCorpus(path, per_sentence=per_sentence, limit=limit)


class SentenceCorpus:
    def __init__(self, path: Union[str, Path], *, per_sentence: bool = True, limit: int = 0):
        self.path = Path(path)
        self.per_sentence = per_sentence
        self.limit = limit

    def __call__(self, nlp: Language) -> Iterator[Example]:
        if not self.path.exists():
            raise ValueError(f"corpus file not found: {self.path} (convert it with "
                             "`python -m spacy_mat convert`)")
        n = 0
        for doc in DocBin().from_disk(self.path).get_docs(nlp.vocab):
            for ref in (sentence_docs(doc) if self.per_sentence else [doc]):
                if not len(ref):
                    continue
                yield Example(input_doc(nlp, ref), ref)
                n += 1
                if self.limit and n >= self.limit:
                    return


def input_doc(nlp: Language, ref: Doc) -> Doc:
    """An unannotated copy of ``ref``'s tokens (and sentence starts)."""
    sent_starts = ([bool(t.is_sent_start) for t in ref]
                   if ref.has_annotation("SENT_START") else None)
    return Doc(nlp.vocab, words=[t.text for t in ref], spaces=[bool(t.whitespace_) for t in ref],
               sent_starts=sent_starts)


def sentence_docs(doc: Doc) -> List[Doc]:
    """One doc per sentence with its entities and span groups.

    Raises ValueError for a span that crosses a sentence boundary rather than
    dropping it.
    """
    if not doc.has_annotation("SENT_START"):
        return [doc]
    sents = list(doc.sents)
    out = []
    for sent in sents:
        sent_doc = sent.as_doc()
        for key, group in doc.spans.items():
            inside = [s for s in group if s.start >= sent.start and s.end <= sent.end]
            sent_doc.spans[key] = [Span(sent_doc, s.start - sent.start, s.end - sent.start,
                                        label=s.label_) for s in inside]
        out.append(sent_doc)
    for key, group in doc.spans.items():
        kept = sum(len(d.spans[key]) for d in out)
        if kept != len(group):
            raise ValueError(f"doc.spans[{key!r}] has {len(group) - kept} span(s) crossing a "
                             f"sentence boundary in doc starting {doc.text[:40]!r}; fix the "
                             "sentence boundaries or use per_sentence = false")
    return out
