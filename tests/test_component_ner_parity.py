"""mat_tagger behaves like spaCy's ``ner`` where a spaCy user relies on it
(issue 13): confidence scores, preset entities, missing annotation, pickling
and multiprocessing, uninitialised/assembled pipelines, labels, updating a
trained model."""
import itertools
import math
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mat.architectures import get_network, predict_emissions
from test_component import TINY_MODEL, ents, fit, make_examples, train_tiny

TEXT = "Mary Smith visited New York yesterday"


@pytest.fixture(scope="module")
def trained():
    nlp, examples, _ = train_tiny(steps=15)
    return nlp, examples


@pytest.fixture(scope="module")
def trained_ner():
    """spaCy's own ner on the same data, for side-by-side checks."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    examples = make_examples(nlp)
    fit(nlp, examples, 15, 0)
    return nlp


def doc_of(nlp, text=TEXT):
    return Doc(nlp.vocab, words=text.split())


# -- 1. confidence scores ------------------------------------------------------------

def brute_force_span_prob(nlp, words, span):
    """P(exactly this labelled span) by enumerating every tag path of the model's CRF."""
    tagger = nlp.get_pipe("mat_tagger")
    names = tagger.tag_names
    emissions, mask = predict_emissions(tagger.model, [words])
    crf = get_network(tagger.model).crfs[0]
    trans, start, end = (x.detach().double() for x in crf.scores(torch.float32))
    e = emissions[0][0].detach().double()
    s, t, label = span
    total, match = [], []
    for path in itertools.product(range(len(names)), repeat=len(words)):
        score = start[path[0]] + end[path[-1]] + sum(e[i, k] for i, k in enumerate(path))
        score = float(score + sum(trans[a, b] for a, b in zip(path, path[1:])))
        total.append(score)
        tags = [names[k] for k in path]
        if (tags[s] == f"B-{label}" and all(x == f"I-{label}" for x in tags[s + 1: t])
                and (t == len(words) or tags[t] != f"I-{label}")):
            match.append(score)
    lse = lambda v: max(v) + math.log(sum(math.exp(x - max(v)) for x in v))
    return math.exp(lse(match) - lse(total))


def test_entity_scores_are_exact_crf_span_marginals(trained):
    nlp, _ = trained
    words = "Anna visited Berlin .".split()
    doc = nlp(Doc(nlp.vocab, words=words))
    group = doc.spans["mat_tagger_scores"]
    assert [(s.start, s.end, s.label_) for s in group] == ents(doc) and len(group) > 0
    scores = group.attrs["scores"]
    assert len(scores) == len(group)
    for span, score in zip(group, scores):
        expected = brute_force_span_prob(nlp, words, (span.start, span.end, span.label_))
        assert float(score) == pytest.approx(expected, abs=1e-4)


def test_scores_survive_docbin_and_can_be_switched_off(trained):
    nlp, _ = trained
    doc = nlp(TEXT)
    back = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))[0]
    assert np.allclose(back.spans["mat_tagger_scores"].attrs["scores"], doc.spans["mat_tagger_scores"].attrs["scores"])
    tagger = nlp.get_pipe("mat_tagger")
    tagger.scores_key = None
    try:
        plain = nlp(TEXT)
        assert "mat_tagger_scores" not in plain.spans and ents(plain) == ents(doc)
    finally:
        tagger.scores_key = "mat_tagger_scores"


def test_threshold_and_token_scores(trained):
    nlp, _ = trained
    tagger = nlp.get_pipe("mat_tagger")
    texts = ["John lives in Paris .", TEXT, "Google hired Anna in Berlin", "Smith Google Paris"]
    docs = list(nlp.pipe(texts))
    probs = [p for d in docs for p in d.spans["mat_tagger_scores"].attrs["scores"]]
    ordered = sorted(probs)
    gap = int(np.argmax(np.diff(ordered)))  # cut in the widest gap: batching moves scores by ~1e-6
    cut = (ordered[gap] + ordered[gap + 1]) / 2
    tagger.threshold, tagger.token_scores = cut, True
    try:
        for text, before in zip(texts, docs):
            doc = nlp(text)
            group = doc.spans["mat_tagger_scores"]
            kept = [(s.start, s.end, s.label_) for s, p in zip(before.spans["mat_tagger_scores"],
                                                               before.spans["mat_tagger_scores"].attrs["scores"]) if p >= cut]
            assert ents(doc) == kept == [(s.start, s.end, s.label_) for s in group]
            token_probs = group.attrs["token_probs"]
            assert token_probs.shape == (len(doc), len(tagger.tag_names))
            assert np.allclose(token_probs.sum(axis=1), 1.0, atol=1e-4)
            assert group.attrs["tag_names"] == tagger.tag_names
    finally:
        tagger.threshold, tagger.token_scores = 0.0, False
    with pytest.raises(ValueError, match="threshold"):
        spacy.blank("en").add_pipe("mat_tagger", config={"threshold": 1.5})


def test_scores_for_a_spans_target():
    nlp, _, _ = train_tiny(target="spans:chunks", steps=5)
    doc = nlp(TEXT)
    group = doc.spans["chunks"]
    assert len(group.attrs["scores"]) == len(group)
    assert all(0.0 < p <= 1.0 for p in group.attrs["scores"])


# -- 2. preset entities ---------------------------------------------------------------

PATTERNS = [{"label": "ANIMAL", "pattern": "Smith"}, {"label": "ORG", "pattern": [{"ORTH": "New"}, {"ORTH": "York"}]}]


@pytest.mark.parametrize("pipe_name", ["mat_tagger", "ner"])
def test_entity_ruler_before_the_tagger_is_kept_like_ner(trained, trained_ner, pipe_name):
    nlp = trained[0] if pipe_name == "mat_tagger" else trained_ner
    ruler = nlp.add_pipe("entity_ruler", before=pipe_name)
    ruler.add_patterns(PATTERNS)
    try:
        doc = nlp(TEXT)
    finally:
        nlp.remove_pipe("entity_ruler")
    found = ents(doc)
    assert (1, 2, "ANIMAL") in found and (3, 5, "ORG") in found  # kept, unknown label included
    assert all(not (s < 2 and e > 1) or (s, e) == (1, 2) for s, e, _ in found)  # nothing crosses them


def test_presets_constrain_decoding_and_scores(trained):
    nlp, _ = trained
    tagger = nlp.get_pipe("mat_tagger")
    doc = doc_of(nlp)
    free = nlp(doc_of(nlp))
    assert (0, 2, "PER") in ents(free)
    doc.ents = [Span(doc, 1, 3, label="LOC")]  # "Smith visited" as LOC: against the model
    doc = nlp(doc)
    assert (1, 3, "LOC") in ents(doc)
    assert all(e <= 1 or s >= 3 for s, e, _ in ents(doc) if (s, e) != (1, 3))
    # the scores group holds the tagger's own entities, conditioned on the preset
    group = doc.spans["mat_tagger_scores"]
    assert all((s.start, s.end) != (1, 3) for s in group)
    # blocked tokens stay outside any entity
    blocked = doc_of(nlp)
    blocked.set_ents([], blocked=[blocked[0:2]], default="unmodified")
    assert all(s >= 2 for s, _, _ in ents(nlp(blocked)))
    # overwrite_ents: presets are replaced
    tagger.overwrite_ents = True
    try:
        again = doc_of(nlp)
        again.ents = [Span(again, 1, 3, label="LOC")]
        assert ents(nlp(again)) == ents(free)
    finally:
        tagger.overwrite_ents = False


def test_preset_entity_across_a_sentence_boundary(trained):
    nlp, _ = trained
    words = "John lives in New York . Paris is nice".split()
    doc = Doc(nlp.vocab, words=words, sent_starts=[True] + [False] * 5 + [True, False, False])
    doc.ents = [Span(doc, 4, 7, label="LOC")]  # crosses into the second sentence
    doc = nlp(doc)
    assert (4, 7, "LOC") in ents(doc)


# -- 3. missing annotation ---------------------------------------------------------------

def test_missing_gold_tokens_are_unknown(trained):
    nlp, _ = trained
    tagger = nlp.get_pipe("mat_tagger")
    words = "John lives in Paris .".split()
    ref = Doc(nlp.vocab, words=words, ents=["B-PER", None, "O", "B-LOC", None])
    ids = tagger._gold_ids(Example(Doc(nlp.vocab, words=words), ref), 0)
    names = tagger.tag_names
    assert [names[i] if i >= 0 else "-" for i in ids] == ["B-PER", "-", "O", "B-LOC", "-"]
    # no annotation at all: every token unknown, and the sequence is left out
    bare = Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words))
    assert (tagger._gold_ids(bare, 0) == -1).all()
    assert tagger.gold_sequences_all(bare) == []
    # all-O sentences stay all-O
    outside = Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, ents=["O"] * 5))
    assert (tagger._gold_ids(outside, 0) == 0).all()


def test_unannotated_doc_contributes_nothing():
    nlp, examples, _ = train_tiny(steps=2)
    tagger = nlp.get_pipe("mat_tagger")
    params = [p.detach().clone() for p in get_network(tagger.model).parameters()]
    words = "Mary lives in Paris".split()
    losses = nlp.update([Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words))],
                        sgd=nlp.resume_training())
    assert losses["mat_tagger"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(params, get_network(tagger.model).parameters()))
    partial = Doc(nlp.vocab, words=words, ents=["B-PER", None, None, "B-LOC"])
    losses = nlp.update([Example(Doc(nlp.vocab, words=words), partial)])
    assert 0.0 < losses["mat_tagger"] < math.inf


# -- 4. pickling and multiprocessing ---------------------------------------------------------

def test_pickle_round_trip(trained):
    nlp, _ = trained
    texts = [TEXT, "John visited Berlin ."]
    copy = pickle.loads(pickle.dumps(nlp))
    assert [ents(d) for d in copy.pipe(texts)] == [ents(d) for d in nlp.pipe(texts)]


SPAWN = textwrap.dedent("""
    import json, multiprocessing, sys
    import spacy
    if __name__ == "__main__":
        multiprocessing.set_start_method("spawn", force=True)
        nlp = spacy.load(sys.argv[1])
        texts = ["Mary Smith visited New York yesterday", "John lives in Paris ."] * 4
        one = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
        two = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts, n_process=2, batch_size=2)]
        print(json.dumps({"one": one, "two": two}))
""")


def test_pipe_with_two_processes_under_spawn(trained, tmp_path):
    nlp, _ = trained
    nlp.to_disk(tmp_path / "model")
    script = tmp_path / "spawn.py"
    script.write_text(SPAWN)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "model")],
                         capture_output=True, text=True, timeout=600)  # spawn imports spaCy and torch twice
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["one"] == result["two"] and any(result["one"])


# -- 5. uninitialised and assembled pipelines ---------------------------------------------

@pytest.mark.parametrize("factory", ["mat_tagger", "ner"])
def test_uninitialised_pipeline_serialises_like_ner(factory, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": TINY_MODEL} if factory == "mat_tagger" else {})
    data = nlp.to_bytes()
    nlp.to_disk(tmp_path / "blank")
    loaded = spacy.load(tmp_path / "blank")
    other = spacy.blank("en")
    other.add_pipe(factory, config={"model": TINY_MODEL} if factory == "mat_tagger" else {})
    other.from_bytes(data)
    # a loaded uninitialised pipeline can still be initialised and trained
    examples = make_examples(loaded)
    fit(loaded, examples, 2, 0)
    assert loaded(TEXT) is not None


@pytest.mark.parametrize("factory", ["mat_tagger", "ner"])
def test_assembled_pipeline_with_labels_like_ner(factory, tmp_path):
    """`spacy assemble`'s nlp.initialize() without data: labels from the
    config, no words of spaCy's dummy examples; it predicts, saves, loads
    and learns from nlp.update (growing the word table)."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": TINY_MODEL} if factory == "mat_tagger" else {})
    if factory == "mat_tagger":  # [initialize.components.mat_tagger] labels, as `spacy init labels` writes
        nlp.config["initialize"]["components"][factory] = {"labels": ["LOC", "ORG", "PER"]}
    else:  # ner's label_data is its own moves format: add the labels instead
        for label in ("LOC", "ORG", "PER"):
            nlp.get_pipe(factory).add_label(label)
    nlp.initialize()
    pipe = nlp.get_pipe(factory)
    assert set(pipe.labels) == {"LOC", "ORG", "PER"}
    if factory == "mat_tagger":
        assert pipe.model.attrs["tables"].words == ["<PAD>", "<UNK>", "<Mask>"]
    nlp(TEXT)
    nlp.to_disk(tmp_path / "assembled")
    loaded = spacy.load(tmp_path / "assembled")
    optimizer = loaded.resume_training()
    optimizer.learn_rate = 0.01
    examples = make_examples(loaded)
    for _ in range(15):
        for i in range(0, len(examples), 8):
            loaded.update(examples[i: i + 8], sgd=optimizer)
    assert ents(loaded(doc_of(loaded))) == [(0, 2, "PER"), (3, 5, "LOC")]
    if factory == "mat_tagger":
        tables = loaded.get_pipe(factory).model.attrs["tables"]
        assert tables.word_id("Mary") > 2 and tables.word_id("Berlin") > 2


# -- 6. labels ----------------------------------------------------------------------------

def test_label_data_and_initialize_labels(trained):
    nlp, examples = trained
    tagger = nlp.get_pipe("mat_tagger")
    assert tagger.label_data == ["LOC", "ORG", "PER"]
    fresh = spacy.blank("en")
    fresh_tagger = fresh.add_pipe("mat_tagger", config={"model": TINY_MODEL})
    fresh_tagger.add_label("EVENT")  # before initialize: kept, as in ner
    fresh_tagger.initialize(lambda: make_examples(fresh), nlp=fresh, labels=tagger.label_data + ["MISC"])
    assert fresh_tagger.labels == ("EVENT", "LOC", "MISC", "ORG", "PER")


@pytest.mark.parametrize("factory", ["mat_tagger", "ner"])
def test_add_label_after_initialize_resizes_like_ner(factory):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(factory, config={"model": TINY_MODEL} if factory == "mat_tagger" else {})
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    assert pipe.add_label("MISC") == 1 and "MISC" in pipe.labels
    words = "Zorblax Games was fun".split()
    new = [Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, ents=["B-MISC", "I-MISC", "O", "O"]))]
    for _ in range(30):
        nlp.update(new + examples[:7], sgd=optimizer)
    assert (0, 2, "MISC") in ents(nlp(Doc(nlp.vocab, words=words)))


def test_add_label_keeps_trained_rows(trained):
    nlp, _ = trained
    nlp = pickle.loads(pickle.dumps(nlp))
    tagger = nlp.get_pipe("mat_tagger")
    before, _ = predict_emissions(tagger.model, [TEXT.split()])
    tagger.add_label("MISC")
    after, _ = predict_emissions(tagger.model, [TEXT.split()])
    assert after[0].shape[-1] == before[0].shape[-1] + 2
    assert torch.allclose(after[0][..., :-2], before[0])
    assert tagger.tag_names[-2:] == ["B-MISC", "I-MISC"]
    assert get_network(tagger.model).crfs[0].allowed_trans.shape == (9, 9)


# -- 7. updating a trained model -------------------------------------------------------------

def test_loaded_pipeline_learns_new_words_and_rehearses(trained, tmp_path):
    nlp, examples = trained
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    tagger = loaded.get_pipe("mat_tagger")
    losses = loaded.rehearse([Example(doc_of(loaded), doc_of(loaded))])
    assert losses.get("mat_tagger", 0.0) == 0.0  # no-op before resume_training, like ner
    optimizer = loaded.resume_training()
    optimizer.learn_rate = 0.01
    assert tagger._rehearsal_model is not None
    tables = tagger.model.attrs["tables"]
    assert tables.word_id("Zorblax") == 1  # <UNK>
    words = "Zorblax lives in Quuxville".split()
    new = [Example(Doc(loaded.vocab, words=words), Doc(loaded.vocab, words=words, ents=["B-PER", "O", "O", "B-LOC"]))]
    for _ in range(10):
        loaded.update(new, sgd=optimizer)
        rehearsed = loaded.rehearse([Example(doc_of(loaded), doc_of(loaded))], sgd=optimizer)
    assert rehearsed["mat_tagger"] >= 0.0
    tables = tagger.model.attrs["tables"]
    assert tables.word_id("Zorblax") > 2 and tables.word_id("Quuxville") > 2
    assert get_network(tagger.model).word_embed.weight.shape[0] == len(tables.words)
    assert ents(loaded(Doc(loaded.vocab, words=words))) == [(0, 1, "PER"), (3, 4, "LOC")]
    # the grown pipeline round-trips
    texts = [" ".join(words), TEXT]
    again = spacy.blank("en")
    again.add_pipe("mat_tagger", config={"model": TINY_MODEL})
    again.from_bytes(loaded.to_bytes())
    assert [ents(d) for d in again.pipe(texts)] == [ents(d) for d in loaded.pipe(texts)]


def test_freshly_initialised_tagger_does_not_grow(trained):
    nlp, examples = trained
    tagger = nlp.get_pipe("mat_tagger")
    n = len(tagger.model.attrs["tables"].words)
    words = "Zorblax lives in Paris".split()
    nlp.update([Example(Doc(nlp.vocab, words=words), Doc(nlp.vocab, words=words, ents=["B-PER", "O", "O", "B-LOC"]))])
    assert len(tagger.model.attrs["tables"].words) == n


# -- 8. raw text: a sentence splitter before the tagger ------------------------------------

def test_configs_put_a_sentencizer_before_the_tagger():
    from pathlib import Path

    from thinc.api import Config

    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in [configs / "base.cfg", configs / "ner_baseline.cfg", configs / "chunk_baseline.cfg"]:
        config = Config().from_disk(path, interpolate=False)
        pipeline = config["nlp"]["pipeline"]
        assert pipeline.index("sentencizer") < pipeline.index("mat_tagger"), path
        assert config["components"]["sentencizer"]["factory"] == "sentencizer"
        assert config["training"]["score_weights"]["sents_f"] is None  # not in the model score


def test_raw_text_is_labelled_sentence_by_sentence(trained):
    nlp, _ = trained
    raw = "John lives in Paris . Mary Smith visited New York yesterday ."
    nlp.add_pipe("sentencizer", before="mat_tagger")
    try:
        doc = nlp(raw)
    finally:
        nlp.remove_pipe("sentencizer")
    assert len(list(doc.sents)) == 2
    first = nlp(Doc(nlp.vocab, words=raw.split()[:5]))
    second = nlp(Doc(nlp.vocab, words=raw.split()[5:]))
    assert ents(doc) == ents(first) + [(s + 5, e + 5, l) for s, e, l in ents(second)]
