"""Unseen-word F1 on a hand-made example with a hand-computed answer."""
import json

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from spacy_mat.analysis.predictions import PredictionSentence, write_predictions
from spacy_mat.analysis.unseen import unseen_word_scores
from spacy_mat.cli import main

TRAIN_WORDS = ["John", "lives", "in", "Paris", ".", "Smith"]

# unseen: Zorg | Mary, visited, Qux | met, Xa, Yb  (7 of 13 tokens)
SENTENCES = [
    PredictionSentence("Zorg lives in Paris .".split(),
                       "B-PER O O B-LOC O".split(), "B-PER O O B-LOC O".split()),
    PredictionSentence("Mary Smith visited Qux".split(),
                       "B-PER I-PER O B-LOC".split(), "B-ORG I-ORG O B-LOC".split()),
    PredictionSentence("John met Xa Yb".split(),
                       "B-PER O B-ORG I-ORG".split(), "B-PER B-LOC B-ORG B-ORG".split()),
]
# over unseen tokens: gold non-O = Zorg Mary Qux Xa Yb (5); predicted non-O =
# Zorg Mary Qux met Xa Yb (6); equal and non-O = Zorg Qux Xa (3; Mary B-PER vs
# B-ORG, Yb I-ORG vs B-ORG are errors) -> P = 3/6, R = 3/5, F1 = 6/11.
# chunks with an unseen word: gold Zorg, Mary Smith, Qux, Xa Yb (4); predicted
# Zorg, Mary Smith (ORG), Qux, met, Xa, Yb (6); correct Zorg, Qux (2).


def test_hand_computed_unseen_f1():
    scores = unseen_word_scores(SENTENCES, set(TRAIN_WORDS))
    assert (scores.tokens, scores.unseen_tokens) == (13, 7)
    assert (scores.token.gold, scores.token.predicted, scores.token.correct) == (5, 6, 3)
    assert scores.token.precision == pytest.approx(0.5)
    assert scores.token.recall == pytest.approx(0.6)
    assert scores.f1 == pytest.approx(6 / 11)
    assert (scores.chunk.gold, scores.chunk.predicted, scores.chunk.correct) == (4, 6, 2)


def test_iob1_input_gives_the_same_scores():
    iob1 = [s._replace(gold=g) for s, g in zip(SENTENCES, [
        "I-PER O O I-LOC O".split(), "I-PER I-PER O I-LOC".split(), "I-PER O I-ORG I-ORG".split()])]
    assert unseen_word_scores(iob1, set(TRAIN_WORDS)).to_dict() == \
        unseen_word_scores(SENTENCES, set(TRAIN_WORDS)).to_dict()


def test_case_sensitive_word_forms():
    scores = unseen_word_scores(SENTENCES, set(TRAIN_WORDS) | {"zorg"})
    assert scores.unseen_tokens == 7  # "zorg" in training does not make "Zorg" seen


def test_needs_words():
    with pytest.raises(ValueError, match="needs the words"):
        unseen_word_scores([PredictionSentence(None, ["O"], ["O"])], set())


def test_score_command_reports_unseen_f1(tmp_path, capsys):
    nlp = spacy.blank("en")
    train = tmp_path / "train.spacy"
    DocBin(docs=[Doc(nlp.vocab, words=TRAIN_WORDS)]).to_disk(train)
    pred = write_predictions(tmp_path / "pred.txt", SENTENCES)
    assert main(["score", str(pred), "--train", str(train), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "unseen words (not in train.spacy): 7 of 13 tokens (53.85%)" in out
    assert "unseen-word token F1: precision:  50.00%; recall:  60.00%; FB1:  54.55" in out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["unseen"]["token"]["f"] == pytest.approx(6 / 11)
    # all chunks: 6 gold, 8 predicted, 4 correct -> P = 1/2, R = 2/3, F1 = 4/7
    assert saved["conlleval"]["f"] == pytest.approx(4 / 7)
