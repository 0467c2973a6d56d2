import random
import subprocess
import sys

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mat.architectures import get_network
from spacy_mat.tags import is_valid_bio

SENTS = [
    ("John lives in Paris .", [(0, 1, "PER"), (3, 4, "LOC")]),
    ("Mary Smith visited New York yesterday", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("Google hired Anna in Berlin", [(0, 1, "ORG"), (2, 3, "PER"), (4, 5, "LOC")]),
    ("the weather is fine", []),
]
TINY_MODEL = {"word_width": 16, "char_width": 8, "char_filters": 8, "hidden_width": 16}


def make_examples(nlp, target="ents", key="chunks"):
    examples = []
    for text, spans in SENTS:
        doc = Doc(nlp.vocab, words=text.split())
        gold = [Span(doc, s, e, label=label) for s, e, label in spans]
        if target == "ents":
            doc.ents = gold
        else:
            doc.spans[key] = gold
        examples.append(Example(Doc(nlp.vocab, words=text.split()), doc))
    return examples * 8


def fit(nlp, examples, steps, seed):
    """Initialize ``nlp`` on ``examples`` and train ``steps`` passes of batches
    of 8 (lr 0.01); returns the last update's losses."""
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    rng = random.Random(seed)
    losses = {}
    for _ in range(steps):
        rng.shuffle(examples)
        for i in range(0, len(examples), 8):
            losses = nlp.update(examples[i: i + 8], sgd=optimizer)
    return losses


def train_tiny(target="ents", steps=25, seed=0):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"target": target, "model": TINY_MODEL})
    examples = make_examples(nlp, target, key="chunks")
    losses = fit(nlp, examples, steps, seed)
    return nlp, examples, losses


@pytest.fixture(scope="module")
def trained():
    return train_tiny()


def ents(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def test_add_pipe_through_entry_points_without_import():
    code = ("import spacy, sys; nlp = spacy.blank('en'); nlp.add_pipe('mat_tagger'); "
            "assert 'spacy_mat' in sys.modules; print(nlp.pipe_names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "mat_tagger" in out.stdout


def test_labels_and_learning(trained):
    nlp, examples, losses = trained
    tagger = nlp.get_pipe("mat_tagger")
    assert tagger.labels == ("LOC", "ORG", "PER")
    assert tagger.tag_names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert losses["mat_tagger"] < 1.0
    scores = nlp.evaluate(examples)
    assert {"ents_f", "ents_p", "ents_r", "ents_per_type"} <= set(scores)
    assert scores["ents_f"] > 0.9
    assert ents(nlp("Mary Smith visited New York yesterday")) == [(0, 2, "PER"), (3, 5, "LOC")]


def test_bytes_and_disk_round_trip(trained, tmp_path):
    nlp, _, _ = trained
    texts = ["John visited Berlin .", "Anna Smith hired Google in New York", "x y z"]
    expected = [ents(d) for d in nlp.pipe(texts)]
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("mat_tagger", config={"model": TINY_MODEL})
    nlp2.from_bytes(nlp.to_bytes())
    assert [ents(d) for d in nlp2.pipe(texts)] == expected
    nlp.to_disk(tmp_path / "model")
    nlp3 = spacy.load(tmp_path / "model")
    assert [ents(d) for d in nlp3.pipe(texts)] == expected
    assert nlp3.get_pipe("mat_tagger").labels == nlp.get_pipe("mat_tagger").labels
    assert nlp3.get_pipe("mat_tagger").to_bytes() == nlp.get_pipe("mat_tagger").to_bytes()


def test_empty_and_long_docs(trained):
    nlp, _, _ = trained
    assert ents(nlp("")) == []
    words = ["John", "lives", "in", "Paris", "."] * 400
    doc = nlp(Doc(nlp.vocab, words=words))
    assert len(doc) == 2000
    tags = [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in doc]
    assert is_valid_bio(tags)


def test_processes_sentence_by_sentence(trained):
    nlp, _, _ = trained
    tagger = nlp.get_pipe("mat_tagger")
    words = "John lives in Paris . Mary Smith visited New York yesterday".split()
    doc = Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 4 + [True] + [False] * 5)
    assert [(s.start, s.end) for s in tagger.sequences(doc)] == [(0, 5), (5, 11)]
    assert [(s.start, s.end) for s in tagger.sequences(Doc(nlp.vocab, words=words))] == [(0, 11)]
    tagger.cfg["use_sents"] = False
    try:
        assert len(tagger.sequences(doc)) == 1
    finally:
        tagger.cfg["use_sents"] = True
    # each sentence is labelled on its own: the result equals labelling them apart
    together = ents(nlp(doc))
    first, second = nlp(Doc(nlp.vocab, words=words[:5])), nlp(Doc(nlp.vocab, words=words[5:]))
    assert together == ents(first) + [(s + 5, e + 5, l) for s, e, l in ents(second)]


def test_spans_target_writes_span_group_and_scores():
    nlp, examples, _ = train_tiny(target="spans:chunks", steps=15)
    doc = nlp(Doc(nlp.vocab, words="John lives in Paris .".split()))
    assert "chunks" in doc.spans and not doc.ents
    scores = nlp.evaluate(examples)
    assert {"spans_chunks_f", "spans_chunks_p", "spans_chunks_r", "spans_chunks_per_type"} <= set(scores)
    assert "ents_f" not in scores or scores["ents_f"] is None


def test_fixed_seed_is_deterministic():
    a, _, _ = train_tiny(steps=3, seed=7)
    b, _, _ = train_tiny(steps=3, seed=7)
    c, _, _ = train_tiny(steps=3, seed=8)
    params = lambda nlp: [p.detach().numpy() for p in get_network(nlp.get_pipe("mat_tagger").model).parameters()]
    assert all(np.array_equal(x, y) for x, y in zip(params(a), params(b)))
    assert not all(np.array_equal(x, y) for x, y in zip(params(a), params(c)))


def test_invalid_settings_raise():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="invalid target"):
        nlp.add_pipe("mat_tagger", config={"target": "chunks"})
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"target": "spans:np"})
    examples = make_examples(nlp, "ents")
    with pytest.raises(ValueError, match="no labels found"):
        nlp.initialize(lambda: examples)
    tagger = spacy.blank("en").add_pipe("mat_tagger")
    with pytest.raises(ValueError, match="not initialized"):
        tagger.predict([Doc(tagger.vocab, words=["a"])])


def test_static_vectors_initialise_word_rows():
    fix_random_seed(0)
    nlp = spacy.blank("en")
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=16).astype("float32") for w in ("John", "Paris", "Google")}
    for word, vec in vectors.items():
        nlp.vocab.set_vector(word, vec)
    nlp.add_pipe("mat_tagger", config={"model": {**TINY_MODEL, "include_static_vectors": True}})
    nlp.initialize(lambda: make_examples(nlp))
    model = nlp.get_pipe("mat_tagger").model
    tables, weight = model.attrs["tables"], get_network(model).word_embed.weight.detach().numpy()
    for word, vec in vectors.items():
        assert np.array_equal(weight[tables.word_id(word)], vec)
    assert not np.array_equal(weight[tables.word_id("Mary")][:3], np.zeros(3))
    with pytest.raises(ValueError, match="word_width"):
        wide = spacy.blank("en")
        wide.vocab.set_vector("John", np.ones(8, dtype="float32"))
        wide.add_pipe("mat_tagger", config={"model": {**TINY_MODEL, "include_static_vectors": True}})
        wide.initialize(lambda: make_examples(wide))


def test_gold_spans_identity_fast_path_and_realignment():
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("mat_tagger")
    words = ["I", "live", "in", "New", "York", "."]
    ref = Doc(nlp.vocab, words=words, ents=["O", "O", "O", "B-LOC", "I-LOC", "O"])
    same = Example(Doc(nlp.vocab, words=words), ref)
    spans = tagger._gold_spans(same)
    assert [(s.start, s.end, s.label_) for s in spans] == [(3, 5, "LOC")]
    assert spans[0].doc is same.predicted
    expected = same.get_aligned_spans_y2x(list(ref.ents))
    assert [(s.start, s.end, s.label_) for s in spans] == [(s.start, s.end, s.label_) for s in expected]
    # a different tokenization of the same text goes through spaCy's alignment
    pred = Doc(nlp.vocab, words=["I", "live", "in", "New York", "."],
               spaces=[True, True, True, False, False])
    ref_text = Doc(nlp.vocab, words=words, spaces=[True, True, True, True, False, False],
                   ents=["O", "O", "O", "B-LOC", "I-LOC", "O"])
    merged = Example(pred, ref_text)
    spans = tagger._gold_spans(merged)
    assert [(s.start, s.end, s.label_, s.text) for s in spans] == [(3, 4, "LOC", "New York")]
