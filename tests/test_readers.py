import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from spacy_mat.readers import SentenceCorpus, sentence_docs


def make_doc(nlp):
    words = "John saw Paris . Mary left".split()
    doc = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, False, True, False])
    doc.ents = [Span(doc, 0, 1, "PER"), Span(doc, 2, 3, "LOC"), Span(doc, 4, 5, "PER")]
    doc.spans["chunks"] = [Span(doc, 0, 1, "NP"), Span(doc, 1, 2, "VP"), Span(doc, 4, 5, "NP")]
    return doc


def test_sentence_docs_keep_ents_and_span_groups():
    nlp = spacy.blank("en")
    sents = sentence_docs(make_doc(nlp))
    assert [[t.text for t in d] for d in sents] == [["John", "saw", "Paris", "."], ["Mary", "left"]]
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in sents] == [
        [(0, 1, "PER"), (2, 3, "LOC")], [(0, 1, "PER")]]
    assert [[(s.start, s.end, s.label_) for s in d.spans["chunks"]] for d in sents] == [
        [(0, 1, "NP"), (1, 2, "VP")], [(0, 1, "NP")]]


def test_crossing_span_is_an_error():
    nlp = spacy.blank("en")
    doc = make_doc(nlp)
    doc.spans["chunks"] = [Span(doc, 2, 5, "NP")]
    with pytest.raises(ValueError, match="crossing a sentence boundary"):
        sentence_docs(doc)


def test_corpus_modes_and_limit(tmp_path):
    nlp = spacy.blank("en")
    DocBin(docs=[make_doc(nlp), make_doc(nlp)]).to_disk(tmp_path / "c.spacy")
    per_sent = list(SentenceCorpus(tmp_path / "c.spacy")(nlp))
    assert len(per_sent) == 4
    assert all(len(eg.predicted.ents) == 0 and eg.predicted.text == eg.reference.text for eg in per_sent)
    per_doc = list(SentenceCorpus(tmp_path / "c.spacy", per_sentence=False, limit=1)(nlp))
    assert len(per_doc) == 1
    assert [len(s) for s in per_doc[0].predicted.sents] == [4, 2]
    with pytest.raises(ValueError, match="not found"):
        list(SentenceCorpus(tmp_path / "missing.spacy")(nlp))
