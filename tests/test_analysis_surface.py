"""The lowercase and typo probes keep tokens and gold spans aligned."""
import random

import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_mat.analysis.surface import EDITS, lowercase_docs, typo, typo_docs
from spacy_mat.analysis.tagging import target_spans


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment) distance."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@pytest.fixture
def docs():
    nlp = spacy.blank("en")
    out = []
    for words, ents in ((["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", "."],
                         [(0, 2, "PER"), (3, 5, "PER"), (6, 7, "LOC")]),
                        (["The", "EU", "said", "nothing"], [(1, 2, "ORG")])):
        doc = Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * (len(words) - 1))
        doc.ents = [Span(doc, s, e, label=l) for s, e, l in ents]
        out.append(doc)
    return out


def test_lowercase_keeps_spans(docs):
    lowered, changed = lowercase_docs(docs, "ents")
    assert [t.text for t in lowered[0]] == "angela merkel met emmanuel macron in paris .".split()
    assert changed == 7  # Angela Merkel Emmanuel Macron Paris The EU
    for a, b in zip(docs, lowered):
        assert len(a) == len(b) and target_spans(a, "ents") == target_spans(b, "ents")
        assert b.has_annotation("SENT_START")


def test_typo_is_one_edit_and_always_differs():
    rng = random.Random(0)
    for word in ["Merkel", "said", "abc", "Zürich", "aaaa"]:
        for _ in range(200):
            new = typo(word, rng)
            assert new != word and edit_distance(word, new) == 1, (word, new)
    assert len(EDITS) == 4


def test_typo_docs_share_seed_and_alignment(docs):
    same, changed = typo_docs(docs, "ents", share=0.0)
    assert changed == 0 and [t.text for t in same[0]] == [t.text for t in docs[0]]
    everything, changed = typo_docs(docs, "ents", share=1.0, seed=3)
    eligible = sum(t.text.isalpha() and len(t.text) >= 3 for d in docs for t in d)
    assert changed == eligible == 9
    for a, b in zip(docs, everything):
        assert len(a) == len(b) and target_spans(a, "ents") == target_spans(b, "ents")
        for x, y in zip(a, b):
            eligible_token = x.text.isalpha() and len(x.text) >= 3
            assert (x.text != y.text) == eligible_token
    again, _ = typo_docs(docs, "ents", share=1.0, seed=3)
    assert [[t.text for t in d] for d in again] == [[t.text for t in d] for d in everything]
    with pytest.raises(ValueError, match="typo share"):
        typo_docs(docs, "ents", share=1.5)
