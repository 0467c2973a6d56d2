"""The analysis tools on a real pipeline: a few-step `spacy train` run on a
200-sentence CoNLL-2003 slice with the confidence tracker chained to the
adversarial schedule, then `score`, `robustness` and the plots on its output."""
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed, load_config

from spacy_mat.analysis.confidence import chain_callbacks, confidence_tracker, sentence_confidence
from spacy_mat.analysis.rewrite import all_surfaces, span_surfaces
from spacy_mat.analysis.tagging import read_sentence_docs
from spacy_mat.cli import main
from spacy_mat.readers import SentenceCorpus

REPO = Path(__file__).parents[1]
TINY_MODEL = {"word_width": 16, "char_width": 8, "char_filters": 8, "hidden_width": 16}
EVERY = 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread (and do not fight background jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(ner_slice, tmp_path_factory):
    """`spacy train` for a few steps: MAT mode, the tracker chained to an
    adversarial schedule whose warm-up outlasts the run (so the adversarial
    loss must stay 0 if and only if the chained schedule runs)."""
    out = tmp_path_factory.mktemp("analysis_run")
    config = load_config(REPO / "configs" / "ner_baseline.cfg")
    config["components"]["mat_tagger"]["model"].update(TINY_MODEL)
    config["components"]["mat_tagger"]["model"]["include_static_vectors"] = False
    config["paths"]["vectors"] = None
    config["components"]["mat_tagger"]["model"]["adversarial"]["mode"] = "mat"
    config["training"]["optimizer"]["learn_rate"]["base_rate"] = 0.01
    config["training"]["logger"]["output_file"] = str(out / "log.jsonl")
    config["training"]["before_update"] = {
        "@callbacks": "spacy_mat.confidence_tracker.v1",
        "every_n_steps": EVERY,
        "output_file": str(out / "confidence.jsonl"),
        "chain": {"@callbacks": "spacy_mat.adversarial_schedule.v1",
                  "warmup_steps": 1000, "ramp_steps": 0},
    }
    config.to_disk(out / "test.cfg")
    cmd = [sys.executable, "-m", "spacy", "train", str(out / "test.cfg"), "--output", str(out / "model"),
           "--paths.train", str(ner_slice / "train.spacy"), "--paths.dev", str(ner_slice / "dev.spacy"),
           "--training.max_steps", "6", "--training.eval_frequency", "3"]
    # one thread: on a busy 2-core machine torch's thread pool oversubscribes the
    # cores and a tiny model's step takes seconds instead of milliseconds
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return out


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# --- confidence tracker -----------------------------------------------------------

def test_confidence_records_during_spacy_train(run):
    log = read_jsonl(run / "log.jsonl")
    records = read_jsonl(run / "confidence.jsonl")
    last_step = log[-1]["step"]
    assert last_step >= 4
    assert [r["step"] for r in records] == list(range(0, last_step + 1, EVERY))
    # the chained schedule ran: warm-up keeps the MAT loss off
    assert all(row["losses"]["mat_tagger_adv"] == 0.0 for row in log)
    assert all(row["losses"]["mat_tagger"] > 0.0 for row in log)
    for r in records:
        assert r["sentence"] == 0
        assert r["words"] == ["Radio", "Romania", "news", "headlines", ":"]
        assert r["tags"] == ["B-ORG", "I-ORG", "O", "O", "O"]
        assert 0.0 < r["prob"] <= 1.0 and r["prob"] == pytest.approx(math.exp(r["log_prob"]))
        names = r["tag_names"]
        assert len(r["marginals"]) == 5 and all(abs(sum(row) - 1) < 1e-4 for row in r["marginals"])
        assert r["gold_marginals"] == pytest.approx(
            [row[names.index(t)] for row, t in zip(r["marginals"], r["tags"])], abs=1e-6)
        # a path is no more likely than any of its tags
        assert r["prob"] <= min(r["gold_marginals"]) + 1e-6
    assert len({r["prob"] for r in records}) > 1  # training moves the curve


def test_sentence_confidence_is_a_distribution_over_paths(run):
    nlp = spacy.load(run / "model" / "model-best")
    pipe = nlp.get_pipe("mat_tagger")
    names = pipe.tag_names
    words = ["Radio", "Romania"]
    probs = {}
    for path in itertools.product(names, repeat=len(words)):
        probs[path] = sentence_confidence(pipe, words, list(path))["prob"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert probs[("O", "I-ORG")] < 1e-6  # the CRF forbids O -> I-X
    marginals = sentence_confidence(pipe, words, ["B-ORG", "I-ORG"])["marginals"]
    for t in range(len(words)):
        for j, tag in enumerate(names):
            brute = sum(p for path, p in probs.items() if path[t] == tag)
            assert marginals[t][j] == pytest.approx(brute, abs=1e-4)
    with pytest.raises(ValueError, match="not in the model's tag set"):
        sentence_confidence(pipe, words, ["B-NP", "I-NP"])


SENTS = [("John lives in Paris .", [(0, 1, "PER"), (3, 4, "LOC")]),
         ("Google hired Anna in Berlin", [(0, 1, "ORG"), (2, 3, "PER"), (4, 5, "LOC")])]


def train_steps(output_file, track, steps=4):
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"model": TINY_MODEL})
    examples = []
    for text, spans in SENTS * 4:
        gold = Doc(nlp.vocab, words=text.split())
        gold.ents = [Span(gold, s, e, label=label) for s, e, label in spans]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), gold))
    optimizer = nlp.initialize(lambda: examples)
    callback = confidence_tracker(every_n_steps=1, output_file=output_file,
                                  sentences=[{"words": ["Anna", "lives"], "tags": ["I-PER", "O"]}])
    losses = []
    for step in range(steps):
        if track:
            callback(nlp, {"step": step, "epoch": 0})
        losses.append(nlp.update(examples, sgd=optimizer)["mat_tagger"])
    return losses


def test_tracker_leaves_training_unchanged(tmp_path):
    # word dropout draws from torch's RNG in training: any draw by the tracker would show
    out = tmp_path / "sub" / "c.jsonl"
    assert train_steps(out, track=True) == train_steps(out, track=False)
    records = read_jsonl(out)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    assert records[0]["tags"] == ["B-PER", "O"]  # IOB1 input is rewritten to IOB2


def test_chain_callbacks_order_and_config():
    calls = []
    chained = chain_callbacks(lambda nlp, args: calls.append(("a", args["step"])),
                              lambda nlp, args: calls.append(("b", args["step"])))
    chained(None, {"step": 3})
    assert calls == [("a", 3), ("b", 3)]
    with pytest.raises(ValueError, match="argument 1"):
        chain_callbacks(print, "not a callback")
    with pytest.raises(ValueError, match="every_n_steps"):
        confidence_tracker(every_n_steps=0)
    with pytest.raises(ValueError, match="sentence 0"):
        confidence_tracker(sentences=[{"words": ["a"], "tags": ["O", "O"]}])


# --- score ------------------------------------------------------------------------

def first_sentences(src, dst, n):
    """The first n sentences of a CoNLL file."""
    lines, seen = [], 0
    for line in Path(src).read_text(encoding="utf8").splitlines():
        lines.append(line)
        if not line.strip() and lines[:-1] and lines[-2].strip() and not lines[-2].startswith("-DOCSTART-"):
            seen += 1
            if seen == n:
                break
    Path(dst).write_text("\n".join(lines) + "\n", encoding="utf8")
    return dst


def table_of(text):
    return "\n".join(line for line in text.splitlines()
                     if line.startswith(("processed", "accuracy")) or line[:17].strip().isupper() and ": precision" in line)


def test_score_command_agrees_with_spacy_and_with_its_file(run, ner_slice, tmp_path, capsys):
    model = str(run / "model" / "model-best")
    pred = tmp_path / "pred.txt"
    assert main(["score", model, str(ner_slice / "dev.spacy"), "--output-conll", str(pred),
                 "--train", str(ner_slice / "train.spacy"), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["conlleval"]["predicted"] > 0 and saved["conlleval"]["gold"] > 0
    nlp = spacy.load(model)
    expected = nlp.evaluate(list(SentenceCorpus(ner_slice / "dev.spacy")(nlp)))
    assert saved["conlleval"]["f"] == pytest.approx(expected["ents_f"], abs=1e-9)
    assert saved["conlleval"]["p"] == pytest.approx(expected["ents_p"], abs=1e-9)
    assert "(agrees with FB1)" in out and "unseen-word token F1" in out
    # the prediction file alone gives the same table and unseen-word scores
    assert main(["score", str(pred), "--train", str(ner_slice / "train.spacy")]) == 0
    again = capsys.readouterr().out
    assert table_of(again) == table_of(out) and table_of(out).count("\n") >= 2
    unseen = [line for line in out.splitlines() if "unseen" in line]
    assert unseen and unseen == [line for line in again.splitlines() if "unseen" in line]
    # CoNLL input (with --format) gives the same table as the .spacy file
    conll = first_sentences(REPO.parent / "shared" / "data" / "conll2003" / "dev.txt", tmp_path / "dev.txt", 60)
    assert main(["score", model, str(conll), "--format", "conll2003"]) == 0
    assert table_of(capsys.readouterr().out) == table_of(out)


def test_score_command_errors(run, ner_slice, capsys):
    model = str(run / "model" / "model-best")
    assert main(["score", model, str(ner_slice / "dev.spacy"), "--target", "spans:chunks"]) == 1
    assert "no mat_tagger writes target 'spans:chunks'" in capsys.readouterr().err
    assert main(["score", model]) == 1
    assert "is a directory" in capsys.readouterr().err


# --- robustness ---------------------------------------------------------------------

def test_robustness_command(run, ner_slice, tmp_path, capsys):
    model = str(run / "model" / "model-best")
    base = ["robustness", model, str(ner_slice / "dev.spacy"), "--train", str(ner_slice / "train.spacy"),
            "--mask-tokens", "non-entity", "entity", "--name", "tiny"]
    assert main(base + ["--seed", "3", "--output", str(tmp_path / "r1.json"),
                        "--save-rewritten", str(tmp_path / "sets")]) == 0
    out = capsys.readouterr().out
    for row in ("original", "entities replaced by unseen ones", "1 non-entity token/sentence -> unk",
                "1 entity token/sentence -> unk"):
        assert row in out
    result = json.loads((tmp_path / "r1.json").read_text())
    assert result["name"] == "tiny" and set(result["probes"]) == {
        "original", "replace_entities", "mask_non-entity", "mask_entity", "lowercase", "typos"}
    assert "all tokens lowercased" in out and "typos (1 edit in a share of words)" in out
    assert result["probes"]["lowercase"]["changed"] > 0 and result["probes"]["typos"]["share"] == 0.1
    probes = result["probes"]
    assert probes["replace_entities"]["changed"] > 0 and probes["mask_non-entity"]["changed"] > 0
    for probe in probes.values():
        assert probe["drop"] == pytest.approx(probes["original"]["scores"]["f"] - probe["scores"]["f"])
    nlp = spacy.load(model)
    expected = nlp.evaluate(list(SentenceCorpus(ner_slice / "dev.spacy")(nlp)))["ents_f"]
    assert probes["original"]["scores"]["f"] == pytest.approx(expected, abs=1e-9)
    # every changed entity of the saved rewritten set is absent from the training entities
    train = read_sentence_docs(ner_slice / "train.spacy", nlp.vocab)
    forbidden = all_surfaces(span_surfaces(train, "ents"))
    test = read_sentence_docs(ner_slice / "dev.spacy", nlp.vocab)
    rewritten = read_sentence_docs(tmp_path / "sets" / "replace_entities.spacy", nlp.vocab)
    changed = 0
    for old, new in zip(test, rewritten):
        assert [e.label_ for e in old.ents] == [e.label_ for e in new.ents]
        for old_ent, new_ent in zip(old.ents, new.ents):
            if old_ent.text != new_ent.text:
                changed += 1
                assert tuple(t.text for t in new_ent) not in forbidden
    assert changed == probes["replace_entities"]["changed"]
    # same seed, same result; another seed, other replacements
    assert main(base + ["--seed", "3", "--output", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["probes"] == probes
    assert main(base + ["--seed", "4", "--output", str(tmp_path / "r3.json")]) == 0
    assert json.loads((tmp_path / "r3.json").read_text())["examples"] != result["examples"]


# --- plots from the run's logs ----------------------------------------------------------

def test_plots_from_training_logs(run, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert main(["plot-learning", str(run / "log.jsonl"), "--labels", "mat", "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    data = json.loads(png.with_suffix(".json").read_text())
    assert data["runs"][0]["x"] == [row["step"] for row in read_jsonl(run / "log.jsonl")]
    fig = tmp_path / "confidence.png"
    conf = str(run / "confidence.jsonl")
    assert main(["plot-confidence", conf, conf, "--labels", "a", "b", "--output", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 2000
    data = json.loads(fig.with_suffix(".json").read_text())
    assert [r["label"] for r in data["runs"]] == ["a", "b"]
    assert data["runs"][0]["prob"] == [r["prob"] for r in read_jsonl(conf)]


def test_robustness_replacement_list_and_empty_pool(run, ner_slice, tmp_path, capsys):
    model = str(run / "model" / "model-best")
    listing = tmp_path / "repl.txt"
    listing.write_text("PER Ana Blandiana\nPER Ion\nLOC Cluj Napoca\nORG Dacia\nMISC Romanian\n",
                       encoding="utf8")
    base = ["robustness", model, str(ner_slice / "dev.spacy"), "--train", str(ner_slice / "train.spacy")]
    assert main(base + ["--replacements", str(listing), "--share", "0.5", "--mask-tokens",
                        "--output", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["probes"]) == {"original", "replace_entities", "lowercase", "typos"}
    assert result["pool"]["source"] == str(listing)
    rep = result["probes"]["replace_entities"]
    n_spans = sum(len(d.ents) for d in read_sentence_docs(ner_slice / "dev.spacy", spacy.blank("en").vocab))
    assert rep["chosen"] == round(0.5 * n_spans) and rep["changed"] + rep["skipped"] == rep["chosen"]
    allowed = {"Ana Blandiana", "Ion", "Cluj Napoca", "Dacia", "Romanian"}
    assert result["examples"] and all(e["replacement"] in allowed for e in result["examples"])
    capsys.readouterr()
    # a pool made of training entities only has nothing to offer
    assert main(base + ["--pool", str(ner_slice / "train.spacy"), "--output", str(tmp_path / "x.json")]) == 1
    assert "no replacement candidates left" in capsys.readouterr().err
