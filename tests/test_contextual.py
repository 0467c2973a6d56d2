"""Frozen-transformer features η (spacy_mat.contextual) on a tiny random BERT
saved into a tmp dir: pure pooling/window/masking functions, the cache, the
scalar mix, MAT's masked input, and a trained pipeline's disk round trip."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
import torch
from spacy.util import fix_random_seed

from spacy_mat.architectures import get_context, get_network, train_step
from spacy_mat.contextual import (corrupt_token_strings, get_encoder, plan_windows, pool_wordpieces,
                                  sequence_key, transformer_features)
from spacy_mat.network import ScalarMix

from test_component import TINY_MODEL, fit, make_examples

REPO = Path(__file__).parents[1]
WORDS = ("john lives in paris mary smith visited new york yesterday google hired anna berlin "
         "the weather is fine .").split()


def make_tiny_bert(path: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 16) with a WordPiece vocab."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters,
                                *("##" + c for c in letters)]))
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "bert")


def context_config(path, **settings):
    return {"@layers": "spacy_mat.TransformerFeatures.v1", "name": str(path), **settings}


def make_layer(path, **settings):
    layer = transformer_features(name=str(path), **settings)
    layer.initialize()
    return layer


def train_pipeline(bert, steps=3, seed=0, mode="mat", **context):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    adversarial = {"mode": mode, "select_rate": 0.5}
    nlp.add_pipe("mat_tagger", config={"model": {**TINY_MODEL, "adversarial": adversarial,
                                                 "context": context_config(bert, **context)}})
    examples = make_examples(nlp)
    losses = fit(nlp, examples, steps, seed)
    return nlp, examples, losses


# -- pure functions ---------------------------------------------------------------

def test_pool_wordpieces_mean_and_first_by_hand():
    # pieces: [CLS] john pa ##ris . [SEP]; words: john=0, paris=1, .=2
    hidden = torch.tensor([[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 8.0], [7.0, 0.0], [9.0, 9.0]])
    index = torch.tensor([-1, 0, 1, 1, 2, -1])
    mean = pool_wordpieces(hidden, index, 3, "mean")
    assert mean.tolist() == [[1.0, 2.0], [4.0, 6.0], [7.0, 0.0]]
    first = pool_wordpieces(hidden, index, 3, "first")
    assert first.tolist() == [[1.0, 2.0], [3.0, 4.0], [7.0, 0.0]]
    # extra layer dimension [P, K, D] pools the same way per layer
    stacked = torch.stack([hidden, 10 * hidden], dim=1)
    assert pool_wordpieces(stacked, index, 3, "mean")[1].tolist() == [[4.0, 6.0], [40.0, 60.0]]
    with pytest.raises(ValueError, match="no wordpiece"):
        pool_wordpieces(hidden, index, 4, "mean")
    with pytest.raises(ValueError, match="pooling"):
        pool_wordpieces(hidden, index, 3, "max")


def test_plan_windows_cover_every_word():
    assert plan_windows([2, 3, 1, 5, 1], 5) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert plan_windows([1, 1, 1], 5) == [(0, 3)]
    assert plan_windows([12], 5) == [(0, 1)]  # a word longer than a window gets its own
    assert plan_windows([], 5) == []


def test_corrupt_token_strings_masks_and_replaces():
    seqs = [["John", "lives", "in", "Paris"], ["Mary", "Smith"], ["x"]]
    out = corrupt_token_strings(seqs, [0, 1], [3, 0], [None, "Anna"], "[MASK]")
    assert out == {0: ["John", "lives", "in", "[MASK]"], 1: ["Anna", "Smith"]}
    assert seqs[0][3] == "Paris"  # inputs untouched


def test_sequence_key_depends_on_token_boundaries():
    assert sequence_key(["ab", "c"]) != sequence_key(["a", "bc"])
    assert sequence_key(["a"]) == sequence_key(["a"]) != sequence_key(["a"], salt="model")


def test_scalar_mix_fixed_and_trainable():
    layers = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])  # [1, K=2, D=2]
    fixed = ScalarMix(2, [1.0, 3.0], trainable=False)
    assert list(fixed.parameters()) == []
    assert torch.allclose(fixed(layers), torch.tensor([[2.5, 5.0]]))
    trainable = ScalarMix(2)
    assert torch.allclose(trainable(layers), torch.tensor([[2.0, 4.0]]))
    with torch.no_grad():
        trainable.gamma.fill_(2.0)
    assert torch.allclose(trainable(layers), torch.tensor([[4.0, 8.0]]))
    with pytest.raises(ValueError, match="positive layer weights"):
        ScalarMix(3, [1.0, 1.0])


# -- the encoder and its cache ------------------------------------------------------------

def test_features_shapes_and_every_token_gets_a_vector(bert_dir):
    layer = make_layer(bert_dir, max_length=8)  # 6 pieces per window
    encoder = get_encoder(layer)
    assert (encoder.width, encoder.n_layers) == (16, 3)
    long = ("john lives in paris . " * 5).split()  # 25 words: several windows
    weird = ["john", "\u200b", "supercalifragilistic", "."]  # a dropped token; a 20-piece word
    feats = layer.predict([long, weird, ["x"]])
    assert [tuple(f.shape) for f in feats] == [(25, 16), (4, 16), (1, 16)]
    assert all(torch.isfinite(f).all() for f in feats)
    trainable = make_layer(bert_dir, mix="trainable")
    assert tuple(trainable.predict([weird])[0].shape) == (4, 3, 16)


def test_fixed_mix_is_weighted_mean_of_layers(bert_dir):
    words = ["john", "lives", "in", "paris"]
    stacked = get_encoder(make_layer(bert_dir, mix="trainable", cache=False)).encode([words])[0]
    equal = make_layer(bert_dir).predict([words])[0]
    assert torch.allclose(equal, stacked.mean(dim=1), atol=1e-6)
    weighted = make_layer(bert_dir, layer_weights=[0.0001, 0.0001, 1.0]).predict([words])[0]
    assert torch.allclose(weighted, stacked[:, 2], atol=1e-3)
    with pytest.raises(ValueError, match="layer_weights has 2 entries"):
        make_layer(bert_dir, layer_weights=[1.0, 1.0])


def test_cache_hit_is_identical_to_fresh_computation(bert_dir, tmp_path):
    seqs = [["john", "lives", "in", "paris"], ["mary", "smith"], ["john", "lives", "in", "paris"]]
    layer = make_layer(bert_dir, cache_dir=str(tmp_path / "cache"))
    encoder = get_encoder(layer)
    first = layer.predict(seqs)
    assert (encoder.stats.hits, encoder.stats.misses) == (0, 2)  # the duplicate is computed once
    second = layer.predict(seqs)
    assert (encoder.stats.hits, encoder.stats.misses) == (3, 2)
    fresh = encoder.encode(seqs)
    for a, b, c in zip(first, second, fresh):
        assert torch.equal(a, b) and torch.equal(a, c)
    second[0].add_(1.0)  # callers get copies: the cache is not modified
    assert torch.equal(layer.predict(seqs[:1])[0], first[0])
    # a new layer (empty memory cache) reads the disk cache: identical features
    other = make_layer(bert_dir, cache_dir=str(tmp_path / "cache"))
    from_disk = other.predict(seqs)
    assert get_encoder(other).stats.disk_hits == 2 and get_encoder(other).stats.misses == 0
    assert all(torch.equal(a, b) for a, b in zip(first, from_disk))
    # a different pooling is a different fingerprint: no stale disk hits
    first_pool = make_layer(bert_dir, cache_dir=str(tmp_path / "cache"), pooling="first")
    first_pool.predict(seqs)
    assert get_encoder(first_pool).stats.disk_hits == 0


def test_unset_transformer_says_how_to_fix():
    layer = transformer_features(name=None)
    with pytest.raises(ValueError, match="set --paths.transformer to a local model folder"):
        layer.initialize()


def test_encoder_is_frozen_and_not_optimised(bert_dir):
    nlp, _, _ = train_pipeline(bert_dir, steps=1)
    encoder = get_encoder(get_context(nlp.get_pipe("mat_tagger").model))
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert all(p.grad is None for p in encoder.model.parameters())


# -- MAT's masked input ----------------------------------------------------------------------

@pytest.mark.parametrize("mask_rate", [1.0, 0.0])
def test_masked_word_reaches_the_encoder_input(bert_dir, mask_rate, monkeypatch):
    """With mask_context (off by default: the paper's eq. 7 keeps η clean)."""
    nlp, examples, _ = train_pipeline(bert_dir, steps=0)
    tagger = nlp.get_pipe("mat_tagger")
    model = tagger.model
    model.attrs["adversarial"] = {**model.attrs["adversarial"], "select_rate": 1.0,
                                  "mask_rate": mask_rate, "mask_context": True}
    encoder = get_encoder(get_context(model))
    calls = []
    real_encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda seqs: calls.append([list(s) for s in seqs]) or real_encode(seqs))
    pairs = [p for eg in examples[:4] for p in tagger.gold_sequences(eg)]
    strings = [[t.text for t in s] for s, _ in pairs]
    train_step(model, [s for s, _ in pairs], [[g for _, g in pairs]])
    corrupted = calls[-1]  # the uncached recomputation of the corrupted sentences
    assert len(corrupted) == len(strings)  # select_rate 1: every sentence
    tables = model.attrs["tables"]
    for original, new in zip(strings, corrupted):
        diff = [i for i, (a, b) in enumerate(zip(original, new)) if a != b]
        assert len(new) == len(original) and len(diff) <= 1
        if mask_rate == 1.0:
            assert len(diff) == 1 and new[diff[0]] == "[MASK]"
            inputs = encoder.tokenize([new])
            word_ids = inputs.word_ids(0)
            pieces = [int(inputs["input_ids"][0, p]) for p, w in enumerate(word_ids) if w == diff[0]]
            assert pieces == [encoder.tokenizer.mask_token_id]
        elif diff:
            assert new[diff[0]] in tables.words[3:]
    assert "[MASK]" not in sum(calls[:-1], [])  # the clean pass is never masked


def test_context_is_not_re_encoded_by_default(bert_dir, monkeypatch):
    """The paper's eq. 7: the adversarial pass reuses η of the clean sentence."""
    nlp, examples, _ = train_pipeline(bert_dir, steps=0)
    tagger = nlp.get_pipe("mat_tagger")
    model = tagger.model
    assert model.attrs["adversarial"]["mask_context"] is False
    model.attrs["adversarial"] = {**model.attrs["adversarial"], "select_rate": 1.0, "mask_rate": 1.0}
    encoder = get_encoder(get_context(model))
    calls = []
    real_encode = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda seqs: calls.append([list(s) for s in seqs]) or real_encode(seqs))
    pairs = [p for eg in examples[:4] for p in tagger.gold_sequences(eg)]
    losses = train_step(model, [s for s, _ in pairs], [[g for _, g in pairs]])
    assert "adv" in losses
    assert "[MASK]" not in sum(calls, [])


# -- training, mix parameters, round trip ----------------------------------------------------

def test_fixed_mix_stays_fixed_while_trainable_moves(bert_dir):
    nlp, _, _ = train_pipeline(bert_dir, steps=0, mix="fixed")
    model = nlp.get_pipe("mat_tagger").model
    encoder = get_encoder(get_context(model))
    assert get_network(model).context_mix is None
    assert list(encoder.fixed_mix.parameters()) == []
    words = ["john", "lives", "in", "paris"]
    before_feats = encoder.encode([words])[0]
    before_bert = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    nlp, _, _ = train_pipeline(bert_dir, steps=3, mix="fixed")
    encoder = get_encoder(get_context(nlp.get_pipe("mat_tagger").model))
    assert torch.equal(encoder.fixed_mix.weights, torch.full((3,), 1 / 3))
    assert torch.equal(encoder.encode([words])[0], before_feats)
    assert all(torch.equal(v, before_bert[k]) for k, v in encoder.model.state_dict().items())

    nlp, _, _ = train_pipeline(bert_dir, steps=0, mix="trainable", layer_weights=[1.0, 2.0, 1.0])
    mix = get_network(nlp.get_pipe("mat_tagger").model).context_mix
    assert torch.allclose(mix.normalized_weights(), torch.tensor([0.25, 0.5, 0.25]))
    start = (mix.scalars.detach().clone(), mix.gamma.detach().clone())
    nlp, _, _ = train_pipeline(bert_dir, steps=3, mix="trainable", layer_weights=[1.0, 2.0, 1.0])
    mix = get_network(nlp.get_pipe("mat_tagger").model).context_mix
    assert not torch.equal(mix.scalars.detach(), start[0])
    assert not torch.equal(mix.gamma.detach(), start[1])


def ents(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def test_mat_pipeline_trains_and_round_trips_without_the_model_folder(bert_dir, tmp_path):
    bert = shutil.copytree(bert_dir, tmp_path / "bert_copy")
    nlp, examples, losses = train_pipeline(bert, steps=4, mode="mat", mix="trainable")
    assert {"mat_tagger", "mat_tagger_adv"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    texts = ["John visited Berlin .", "Anna Smith hired Google in New York", "x y z",
             "the weather in Paris is fine"]
    expected = [ents(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(bert)  # the trained pipeline must carry the encoder itself
    loaded = spacy.load(tmp_path / "pipeline")
    assert [ents(d) for d in loaded.pipe(texts)] == expected
    tagger, tagger2 = nlp.get_pipe("mat_tagger"), loaded.get_pipe("mat_tagger")
    seqs = [t.split() for t in texts]
    from spacy_mat.architectures import predict_emissions
    for a, b in zip(predict_emissions(tagger.model, seqs)[0], predict_emissions(tagger2.model, seqs)[0]):
        assert torch.allclose(a, b, atol=1e-5)
    assert tagger2.to_bytes() == tagger.to_bytes()


def test_trf_configs_need_paths_transformer():
    text = (REPO / "configs" / "ner_mat_trf.cfg").read_text()
    assert "transformer = null" in text and "name = ${paths.transformer}" in text
    check = subprocess.run([sys.executable, "configs/make_configs.py", "--check"], cwd=REPO,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
