"""conlleval-exact scoring: against a line-by-line port of conlleval.pl,
seqeval's default (conlleval-compatible) mode and spaCy's scorer, on random
tag sequences including invalid ones; prediction files and their errors."""
import random
import re
from collections import Counter

import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_mat.analysis import conlleval
from spacy_mat.analysis.predictions import (PredictionSentence, read_predictions,
                                            write_predictions)
from spacy_mat.cli import main
from spacy_mat.corpus import ConllFormatError
from spacy_mat.scoring import score_target
from spacy_mat.tags import tags_to_spans

# "NP-X" checks conlleval's handling of hyphens inside types
TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-ORG", "B-NP-X", "I-NP-X"]


def random_sentences(seed, n=300, noise=0.3):
    """(gold, pred) pairs: random tags (often invalid BIO), pred a noisy copy."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = [rng.choice(TAGS) for _ in range(rng.randint(1, 12))]
        pred = [rng.choice(TAGS) if rng.random() < noise else t for t in gold]
        out.append((gold, pred))
    return out


# --- a line-by-line port of conlleval.pl (2004-01-26), the oracle ------------

def _end_of_chunk(prev_tag, tag, prev_type, type_):
    end = (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"),
                              ("E", "E"), ("E", "I"), ("E", "O")}
    if prev_tag not in ("O", ".") and prev_type != type_:
        end = True
    return end or prev_tag in ("]", "[")


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    start = (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"),
                                ("E", "E"), ("E", "I"), ("O", "E")}
    if tag not in ("O", ".") and prev_type != type_:
        start = True
    return start or tag in ("[", "]")


def _split(tag):
    m = re.match(r"^([^-]*)-(.*)$", tag)
    return (m.group(1), m.group(2)) if m else (tag, "")


def conlleval_pl(lines):
    """Run conlleval.pl's loop on lines ("word gold pred" or blank); return its output."""
    boundary = "-X-"
    correct_chunk = correct_tags = found_correct = found_guessed = tokens = 0
    correct_t, found_correct_t, found_guessed_t = Counter(), Counter(), Counter()
    in_correct = False
    last_c, last_g, last_ct, last_gt = "O", "O", "", ""
    for line in lines:
        features = line.split(" ") if line else []
        if not features or features[0] == boundary:
            features = [boundary, "O", "O"]
        g, gt = _split(features[-1])
        c, ct = _split(features[-2])
        first = features[0]
        if first == boundary:
            g = "O"
        if in_correct:
            ends_c, ends_g = _end_of_chunk(last_c, c, last_ct, ct), _end_of_chunk(last_g, g, last_gt, gt)
            if ends_c and ends_g and last_gt == last_ct:
                in_correct = False
                correct_chunk += 1
                correct_t[last_ct] += 1
            elif ends_c != ends_g or gt != ct:
                in_correct = False
        starts_c, starts_g = _start_of_chunk(last_c, c, last_ct, ct), _start_of_chunk(last_g, g, last_gt, gt)
        if starts_c and starts_g and gt == ct:
            in_correct = True
        if starts_c:
            found_correct += 1
            found_correct_t[ct] += 1
        if starts_g:
            found_guessed += 1
            found_guessed_t[gt] += 1
        if first != boundary:
            correct_tags += c == g and gt == ct
            tokens += 1
        last_c, last_g, last_ct, last_gt = c, g, ct, gt
    if in_correct:
        correct_chunk += 1
        correct_t[last_ct] += 1

    def prf(correct, guessed, gold):
        p = 100 * correct / guessed if guessed else 0.0
        r = 100 * correct / gold if gold else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    out = "processed %d tokens with %d phrases; " % (tokens, found_correct)
    out += "found: %d phrases; correct: %d.\n" % (found_guessed, correct_chunk)
    p, r, f = prf(correct_chunk, found_guessed, found_correct)
    if tokens > 0:
        out += "accuracy: %6.2f%%; " % (100 * correct_tags / tokens)
        out += "precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f\n" % (p, r, f)
    for t in sorted(set(found_correct_t) | set(found_guessed_t)):
        p, r, f = prf(correct_t[t], found_guessed_t[t], found_correct_t[t])
        out += "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %d\n" % (t, p, r, f, found_guessed_t[t])
    return out.rstrip("\n")


def as_lines(sentences):
    for gold, pred in sentences:
        for i, (g, p) in enumerate(zip(gold, pred)):
            yield f"w{i} {g} {p}"
        yield ""


# --- agreement ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_matches_conlleval_pl_port(seed):
    sentences = random_sentences(seed)
    result = conlleval.evaluate(sentences)
    assert result.format() == conlleval_pl(as_lines(sentences))
    assert result.overall.gold > 100 and 0 < result.overall.correct < result.overall.predicted


@pytest.mark.parametrize("seed", range(5))
def test_matches_seqeval_default_mode(seed):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    sentences = random_sentences(seed)
    y_true, y_pred = [g for g, _ in sentences], [p for _, p in sentences]
    result = conlleval.evaluate(sentences)
    assert result.precision == pytest.approx(precision_score(y_true, y_pred), abs=1e-12)
    assert result.recall == pytest.approx(recall_score(y_true, y_pred), abs=1e-12)
    assert result.f1 == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
    report = classification_report(y_true, y_pred, output_dict=True)
    for label, counts in result.per_type.items():
        assert counts.precision == pytest.approx(report[label]["precision"], abs=1e-12), label
        assert counts.recall == pytest.approx(report[label]["recall"], abs=1e-12), label
        assert counts.f1 == pytest.approx(report[label]["f1-score"], abs=1e-12), label
        assert counts.gold == report[label]["support"]


def examples_from(sentences, nlp):
    """spaCy examples whose ents and spans["chunks"] are the chunks of the tags."""
    out = []
    for gold_tags, pred_tags in sentences:
        docs = []
        for tags in (pred_tags, gold_tags):
            doc = Doc(nlp.vocab, words=[f"w{i}" for i in range(len(tags))])
            spans = [Span(doc, s, e, label=label) for s, e, label in tags_to_spans(tags)]
            doc.ents = spans
            doc.spans["chunks"] = spans
            docs.append(doc)
        out.append(Example(*docs))
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("target", ["ents", "spans:chunks"])
def test_matches_spacy_scorer(seed, target):
    nlp = spacy.blank("en")
    sentences = random_sentences(seed)
    result = conlleval.evaluate(sentences)
    scores = score_target(examples_from(sentences, nlp), target)
    prefix = "ents" if target == "ents" else "spans_chunks"
    assert scores[f"{prefix}_p"] == pytest.approx(result.precision, abs=1e-9)
    assert scores[f"{prefix}_r"] == pytest.approx(result.recall, abs=1e-9)
    assert scores[f"{prefix}_f"] == pytest.approx(result.f1, abs=1e-9)
    per_type = scores[f"{prefix}_per_type"]
    assert set(per_type) == set(result.per_type)
    for label, counts in result.per_type.items():
        assert per_type[label]["f"] == pytest.approx(counts.f1, abs=1e-9), label


def test_hand_computed_table():
    sentences = [
        ("B-PER I-PER O O B-LOC I-LOC".split(), "B-PER I-PER O O B-LOC O".split()),
        ("B-ORG O B-PER".split(), "B-ORG O B-LOC".split()),
    ]
    assert conlleval.evaluate(sentences).format() == "\n".join([
        "processed 9 tokens with 4 phrases; found: 4 phrases; correct: 2.",
        "accuracy:  77.78%; precision:  50.00%; recall:  50.00%; FB1:  50.00",
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  2",
        "              ORG: precision: 100.00%; recall: 100.00%; FB1: 100.00  1",
        "              PER: precision: 100.00%; recall:  50.00%; FB1:  66.67  1",
    ])


def test_conlleval_semantics_of_invalid_sequences():
    # I-X after O starts a chunk; I-Y after B-X starts another; sentence ends close chunks
    result = conlleval.evaluate([(["O", "I-PER", "I-LOC"], ["O", "B-PER", "B-LOC"]),
                                 (["I-PER"], ["I-PER"])])
    assert (result.overall.gold, result.overall.predicted, result.overall.correct) == (3, 3, 3)
    assert result.correct_tags == 2 and result.tokens == 4  # tags differ as strings
    with pytest.raises(ValueError, match="sentence 0"):
        conlleval.evaluate([(["O"], ["O", "O"])])


# --- prediction files ---------------------------------------------------------------

def test_prediction_file_round_trip_and_score_command(tmp_path, capsys):
    sentences = random_sentences(7, n=40)
    path = write_predictions(tmp_path / "pred.txt", [
        PredictionSentence([f"w{i}" for i in range(len(g))], g, p) for g, p in sentences])
    back = read_predictions(path)
    assert [(s.gold, s.pred) for s in back] == sentences
    assert main(["score", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == conlleval_pl(as_lines(sentences))


def test_prediction_file_boundaries_like_conlleval(tmp_path):
    path = tmp_path / "pred.txt"
    # "-X-" lines separate sentences; -DOCSTART- is a token, as in conlleval
    path.write_text("-DOCSTART- -X- O O\n\nJohn NNP B-PER B-PER\n-X- -X- O O\n"
                    "Smith NNP I-PER I-PER\n\n\n", encoding="utf8")
    sentences = read_predictions(path)
    assert [s.words for s in sentences] == [["-DOCSTART-"], ["John"], ["Smith"]]
    result = conlleval.evaluate((s.gold, s.pred) for s in sentences)
    assert result.tokens == 3 and result.overall.gold == 2
    lines = path.read_text().splitlines()
    assert result.format() == conlleval_pl(lines)


@pytest.mark.parametrize("content,line,fragment", [
    ("a B-PER O\nb I-PER\n", 2, "found 2 fields but line 1 has 3"),
    ("a B-PER O\n\nb X-PER O\n", 3, "gold (second to last) tag column"),
    ("a O B-\n", 1, "predicted (last) tag column"),
    ("a\n", 1, "at least 2"),
    (b"a O O\n\xff O O\n", 2, "not valid UTF-8"),
])
def test_malformed_prediction_files_name_file_and_line(tmp_path, capsys, content, line, fragment):
    path = tmp_path / "bad.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf8")
    with pytest.raises(ConllFormatError, match=re.escape(f"{path}:{line}:")) as err:
        read_predictions(path)
    assert fragment in str(err.value)
    assert main(["score", str(path)]) == 1
    assert f"{path}:{line}:" in capsys.readouterr().err


def test_empty_prediction_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n", encoding="utf8")
    with pytest.raises(ConllFormatError, match="no tokens"):
        read_predictions(path)
