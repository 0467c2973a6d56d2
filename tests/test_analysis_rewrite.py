"""Context-robustness rewriting and the word-masking probe: labels stay
aligned, no training-set entity is ever inserted, runs are seeded."""
import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_mat.analysis.masking import mask_tokens, unknown_word
from spacy_mat.analysis.rewrite import (ReplacementPool, all_surfaces, replace_entities,
                                        span_surfaces)
from spacy_mat.analysis.tagging import read_sentence_docs, target_spans, target_tags, training_words
from spacy_mat.corpus import ConllFormatError
from spacy_mat.tags import tags_to_spans


def make_doc(nlp, text, spans, target="ents"):
    doc = Doc(nlp.vocab, words=text.split(), sent_starts=[True] + [False] * (len(text.split()) - 1))
    new = [Span(doc, s, e, label=label) for s, e, label in spans]
    if target == "ents":
        doc.ents = new
    else:
        doc.spans[target.split(":")[1]] = new
    return doc


def skeleton(doc, target):
    """The words outside spans, with each span replaced by its label: what a
    rewrite must keep."""
    words, out, i = [t.text for t in doc], [], 0
    for start, end, label in target_spans(doc, target):
        out += words[i:start] + [("SPAN", label)]
        i = end
    return out + words[i:]


def check_rewrite(original, result, target, forbidden):
    assert len(result.docs) == len(original)
    for old, new in zip(original, result.docs):
        assert skeleton(new, target) == skeleton(old, target)
        # the gold tags of the new words give back exactly the new spans
        assert tags_to_spans(target_tags(new, target)) == target_spans(new, target)
        assert new[0].is_sent_start
    for r in result.replacements:
        doc = result.docs[r.doc]
        assert tuple(t.text for t in doc[r.start: r.end]) == r.replacement
        assert (r.start, r.end, r.label) in target_spans(doc, target)
        assert r.replacement not in forbidden and r.replacement != r.original


@pytest.fixture
def nlp():
    return spacy.blank("en")


@pytest.mark.parametrize("target", ["ents", "spans:chunks"])
def test_replacements_keep_alignment_and_avoid_training_entities(nlp, target):
    train = [make_doc(nlp, "John Smith visited Paris", [(0, 2, "PER"), (3, 4, "LOC")], target),
             make_doc(nlp, "New York is big", [(0, 2, "LOC")], target)]
    test = [make_doc(nlp, "Anna met Bob in Rome .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")], target),
            make_doc(nlp, "nothing here", [], target),
            make_doc(nlp, "Lake Como Town", [(0, 3, "LOC")], target)]
    forbidden = all_surfaces(span_surfaces(train, target))
    # the pool offers training entities too (Paris, New York, John Smith): they must be dropped
    pool = ReplacementPool({"PER": [("John", "Smith"), ("Ana", "Maria", "Popescu"), ("Ion",)],
                            "LOC": [("Paris",), ("New", "York"), ("Sao", "Paulo"), ("Cluj",)]})
    clean = pool.excluding(forbidden)
    assert clean.sizes() == {"PER": 2, "LOC": 2}
    result = replace_entities(test, target, clean, seed=1)
    check_rewrite(test, result, target, forbidden)
    assert len(result.replacements) == 4 and result.skipped == 0
    assert [len(d) for d in result.docs] != [len(d) for d in test]  # token counts changed
    # the same seed gives the same rewrite
    again = replace_entities(test, target, clean, seed=1)
    assert [[t.text for t in d] for d in again.docs] == [[t.text for t in d] for d in result.docs]


def test_no_candidate_leaves_the_span(nlp):
    test = [make_doc(nlp, "Anna works at Acme", [(0, 1, "PER"), (3, 4, "ORG")])]
    result = replace_entities(test, "ents", ReplacementPool({"PER": [("Anna",)], "LOC": [("Rome",)]}))
    assert result.replacements == [] and result.skipped == 2 and result.chosen == 2
    assert [t.text for t in result.docs[0]] == ["Anna", "works", "at", "Acme"]
    assert target_spans(result.docs[0], "ents") == [(0, 1, "PER"), (3, 4, "ORG")]


def test_on_conll_slice_with_share_and_seeds(ner_slice):
    nlp = spacy.blank("en")
    train = read_sentence_docs(ner_slice / "train.spacy", nlp.vocab)
    test = read_sentence_docs(ner_slice / "dev.spacy", nlp.vocab)
    forbidden = all_surfaces(span_surfaces(train, "ents"))
    pool = ReplacementPool.from_docs(test, "ents").excluding(forbidden)
    n_spans = sum(len(d.ents) for d in test)
    full = replace_entities(test, "ents", pool, seed=0)
    check_rewrite(test, full, "ents", forbidden)
    assert len(full.replacements) + full.skipped == n_spans and len(full.replacements) > 0.8 * n_spans
    half = replace_entities(test, "ents", pool, share=0.5, seed=0)
    check_rewrite(test, half, "ents", forbidden)
    assert half.chosen == round(0.5 * n_spans)
    other = replace_entities(test, "ents", pool, share=0.5, seed=1)
    assert [r.to_dict() for r in other.replacements] != [r.to_dict() for r in half.replacements]


@pytest.mark.parametrize("mode", ["non-entity", "entity", "any"])
def test_masking_one_token_per_sentence(nlp, mode):
    docs = [make_doc(nlp, "Anna met Bob in Rome .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
            make_doc(nlp, "Rome", [(0, 1, "LOC")]),
            make_doc(nlp, "all quiet", [])]
    word = unknown_word({"<unk>", "<unk>1"})
    assert word == "<unk>2"
    masked, positions = mask_tokens(docs, "ents", mode=mode, seed=3, word=word)
    for old, new, pos in zip(docs, masked, positions):
        assert target_spans(new, "ents") == target_spans(old, "ents")
        changed = [i for i, (a, b) in enumerate(zip(old, new)) if a.text != b.text]
        assert len(new) == len(old) and changed == ([] if pos is None else [pos])
        if pos is not None:
            assert new[pos].text == word
            inside = any(s <= pos < e for s, e, _ in target_spans(old, "ents"))
            assert mode == "any" or inside == (mode == "entity")
    expected_none = {"non-entity": [1], "entity": [2], "any": []}[mode]
    assert [i for i, p in enumerate(positions) if p is None] == expected_none
    assert mask_tokens(docs, "ents", mode=mode, seed=3, word=word)[1] == positions


def test_unknown_word_is_unseen_in_training(ner_slice):
    nlp = spacy.blank("en")
    words = training_words(read_sentence_docs(ner_slice / "train.spacy", nlp.vocab))
    assert unknown_word(words) not in words


def test_replacement_list_file(tmp_path):
    path = tmp_path / "repl.txt"
    path.write_text("# candidates\nPER\tAna Maria\n\nLOC  Cluj\nPER Ion\n", encoding="utf8")
    pool = ReplacementPool.from_file(path)
    assert pool.by_label == {"LOC": [("Cluj",)], "PER": [("Ana", "Maria"), ("Ion",)]}
    path.write_text("PER Ana\nLOC\n", encoding="utf8")
    with pytest.raises(ConllFormatError, match=f"{path}:2:"):
        ReplacementPool.from_file(path)
    path.write_text("B-PER Ana\n", encoding="utf8")
    with pytest.raises(ConllFormatError, match=f"{path}:1: .*looks like a tag"):
        ReplacementPool.from_file(path)
