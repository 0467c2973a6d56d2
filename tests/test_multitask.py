"""One mat_tagger, several targets: a CRF head per target on a shared encoder."""
import json

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mat.architectures import get_network

from test_component import SENTS, TINY_MODEL, fit
from test_training import spacy_train

# chunks of the SENTS sentences (NP/VP/PP), aligned by index
CHUNKS = [
    [(0, 1, "NP"), (1, 2, "VP"), (2, 3, "PP"), (3, 4, "NP")],
    [(0, 2, "NP"), (2, 3, "VP"), (3, 5, "NP"), (5, 6, "NP")],
    [(0, 1, "NP"), (1, 2, "VP"), (2, 3, "NP"), (3, 4, "PP"), (4, 5, "NP")],
    [(0, 2, "NP"), (2, 3, "VP"), (3, 4, "ADJP")],
]
TARGETS = ["ents", "spans:chunks"]


def make_examples(nlp):
    examples = []
    for (text, spans), chunks in zip(SENTS, CHUNKS):
        doc = Doc(nlp.vocab, words=text.split())
        doc.ents = [Span(doc, s, e, label=label) for s, e, label in spans]
        doc.spans["chunks"] = [Span(doc, s, e, label=label) for s, e, label in chunks]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), doc))
    return examples * 8


def train_multitask(steps=25, seed=0, adversarial=None):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"targets": TARGETS, "model": {
        **TINY_MODEL, "adversarial": adversarial or {"mode": "mat", "select_rate": 0.3}}})
    examples = make_examples(nlp)
    losses = fit(nlp, examples, steps, seed)
    return nlp, examples, losses


@pytest.fixture(scope="module")
def trained():
    return train_multitask()


def annotations(doc):
    return ([(e.start, e.end, e.label_) for e in doc.ents],
            [(s.start, s.end, s.label_) for s in doc.spans.get("chunks", [])])


def test_heads_labels_and_losses(trained):
    nlp, _, losses = trained
    tagger = nlp.get_pipe("mat_tagger")
    assert tagger.targets == TARGETS
    assert tagger.head_labels == [("LOC", "ORG", "PER"), ("ADJP", "NP", "PP", "VP")]
    assert tagger.labels == ("LOC", "ORG", "PER")  # the first target's, as before
    network = get_network(tagger.model)
    assert [crf.n_tags for crf in network.crfs] == [7, 9]
    assert len(network.emitters) == 2
    assert {"mat_tagger", "mat_tagger_adv"} <= set(losses) and np.isfinite(losses["mat_tagger"])


def test_predictions_set_both_targets_and_scores_have_both_keys(trained):
    nlp, examples, _ = trained
    doc = nlp("Mary Smith visited New York yesterday")
    found_ents, found_chunks = annotations(doc)
    assert found_ents == [(0, 2, "PER"), (3, 5, "LOC")]
    assert found_chunks == [(0, 2, "NP"), (2, 3, "VP"), (3, 5, "NP"), (5, 6, "NP")]
    scores = nlp.evaluate(examples)
    for prefix in ("ents", "spans_chunks"):
        assert {f"{prefix}_f", f"{prefix}_p", f"{prefix}_r", f"{prefix}_per_type"} <= set(scores)
    assert scores["ents_f"] > 0.9 and scores["spans_chunks_f"] > 0.9


def test_loss_is_the_sum_of_heads(trained):
    nlp, examples, _ = trained
    tagger = nlp.get_pipe("mat_tagger")
    network = get_network(tagger.model)
    import torch
    from spacy_mat.architectures import predict_emissions
    pairs = [p for eg in examples[:4] for p in tagger.gold_sequences_all(eg)]
    emissions, mask = predict_emissions(tagger.model, [[t.text for t in s] for s, _ in pairs])
    gold = [torch.zeros(mask.shape, dtype=torch.long) for _ in range(2)]
    for h in range(2):
        for b, (_, g) in enumerate(pairs):
            gold[h][b, : len(g[h])] = torch.as_tensor(g[h])
    with torch.no_grad():
        total = network.nll(emissions, gold, mask)
        parts = [crf.nll(e, t, mask) for crf, e, t in zip(network.crfs, emissions, gold)]
    assert torch.allclose(total, parts[0] + parts[1])


def test_disk_round_trip(trained, tmp_path):
    nlp, _, _ = trained
    texts = ["John visited Berlin .", "Anna Smith hired Google in New York", "x y z"]
    expected = [annotations(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert [annotations(d) for d in loaded.pipe(texts)] == expected
    assert loaded.get_pipe("mat_tagger").head_labels == nlp.get_pipe("mat_tagger").head_labels


def test_single_target_pipeline_saved_before_multitask_loads(tmp_path):
    """A cfg without head_labels/targets (as written before multi-task) still loads."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"model": TINY_MODEL})
    from test_component import make_examples as single_examples
    nlp.initialize(lambda: single_examples(nlp))
    texts = ["John visited Berlin .", "Mary Smith"]
    expected = [annotations(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    cfg_path = tmp_path / "model" / "mat_tagger" / "cfg"
    cfg = json.loads(cfg_path.read_text())
    for key in ("head_labels", "targets"):
        cfg.pop(key)
    cfg_path.write_text(json.dumps(cfg))
    loaded = spacy.load(tmp_path / "model")
    tagger = loaded.get_pipe("mat_tagger")
    assert tagger.head_labels == [("LOC", "ORG", "PER")] and tagger.targets == ["ents"]
    assert [annotations(d) for d in loaded.pipe(texts)] == expected


def test_invalid_targets_raise():
    with pytest.raises(ValueError, match="duplicate targets"):
        spacy.blank("en").add_pipe("mat_tagger", config={"targets": ["ents", "ents"]})
    with pytest.raises(ValueError, match="invalid target"):
        spacy.blank("en").add_pipe("mat_tagger", config={"targets": ["ents", "chunks"]})
    nlp = spacy.blank("en")
    nlp.add_pipe("mat_tagger", config={"targets": ["ents", "spans:np"], "model": TINY_MODEL})
    with pytest.raises(ValueError, match=r"no labels found in the training data's doc.spans\['np'\]"):
        nlp.initialize(lambda: make_examples(nlp))


def test_spacy_train_multitask_config_on_conll2003(ner_slice, tmp_path):
    result = spacy_train("ner_chunk_multitask_mat.cfg", ner_slice, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    header = next(line for line in result.stdout.splitlines() if line.startswith("E "))
    assert "ENTS_F" in header and "SPANS_CHUNKS_F" in header
    meta = json.loads((tmp_path / "model-best" / "meta.json").read_text())
    assert {"ents_f", "spans_chunks_f"} <= set(meta["performance"])
    nlp = spacy.load(tmp_path / "model-best")
    doc = nlp("EU rejects German call to boycott British lamb .")
    assert "chunks" in doc.spans
