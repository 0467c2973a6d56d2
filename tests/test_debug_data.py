"""python -m spacy_mat debug-data and evaluate --displacy-path (issue 13, item 10)."""
import json

import spacy
from spacy.tokens import Doc, DocBin, Span

from spacy_mat.cli import main
from spacy_mat.debug_data import debug_data
from spacy_mat.visualize import write_displacy


def write(path, docs):
    DocBin(docs=docs).to_disk(path)
    return path


def make_docs(nlp):
    ok = Doc(nlp.vocab, words="John lives in New York .".split(), sent_starts=[True] + [False] * 5,
             ents=["B-PER", "O", "O", "B-LOC", "I-LOC", "O"])
    crossing = Doc(nlp.vocab, words="Paris . Texas is big".split(), sent_starts=[True, False, True, False, False])
    crossing.ents = [Span(crossing, 0, 3, label="LOC")]
    partial = Doc(nlp.vocab, words="Anna met Bob".split(), ents=["B-PER", None, None])
    bare = Doc(nlp.vocab, words="no annotation here".split())
    return [ok, crossing, partial, bare]


def test_debug_data_counts_and_problems(tmp_path):
    nlp = spacy.blank("en")
    train = write(tmp_path / "train.spacy", make_docs(nlp))
    dev_doc = Doc(nlp.vocab, words="Acme Corp".split(), ents=["B-ORG", "I-ORG"])
    dev = write(tmp_path / "dev.spacy", [dev_doc])
    result = debug_data(train, dev)
    report = result["files"][0]
    assert report["labels"] == {"LOC": 2, "PER": 2}
    assert report["docs"] == 4 and report["tokens"] == 17 and report["sentences"] == 5
    assert report["tokens_missing"] == 2 + 3 and report["docs_without_annotation"] == 1
    assert report["sentence_crossing"] == 1 and "'Paris . Texas'" in report["sentence_crossing_examples"][0]
    assert any("cross a sentence boundary" in p for p in result["problems"])
    assert any("['ORG']" in p for p in result["problems"])
    assert any("missing annotation" in w for w in result["warnings"])
    out = tmp_path / "report.json"
    assert main(["debug-data", str(train), str(dev), "--json", str(out)]) == 1
    assert json.loads(out.read_text())["files"][1]["labels"] == {"ORG": 1}
    clean = write(tmp_path / "clean.spacy", make_docs(nlp)[:1])
    assert main(["debug-data", str(clean)]) == 0
    assert main(["debug-data", str(tmp_path / "nope.spacy")]) == 1


def test_displacy_pages(tmp_path):
    from test_component import train_tiny

    nlp, _, _ = train_tiny(steps=10)
    docs = [Doc(nlp.vocab, words="Mary Smith visited New York yesterday".split(), ents=["O"] * 6)]
    pages = write_displacy(nlp, docs + ["John lives in Paris ."], tmp_path / "dp", limit=5)
    assert [p.name for p in pages] == ["entities.html"]
    html = pages[0].read_text()
    assert "PER" in html and "LOC" in html and "Mary" in html


def test_evaluate_writes_displacy_pages(tmp_path):
    from test_component import train_tiny

    from spacy_mat.evaluate import main as evaluate_main

    nlp, _, _ = train_tiny(steps=10)
    nlp.to_disk(tmp_path / "model")
    gold = Doc(nlp.vocab, words="Mary Smith visited New York yesterday".split(),
               ents=["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"])
    data = write(tmp_path / "test.spacy", [gold])
    assert evaluate_main([str(tmp_path / "model"), str(data), "--displacy-path", str(tmp_path / "dp")]) == 0
    assert "Mary" in (tmp_path / "dp" / "entities.html").read_text()
