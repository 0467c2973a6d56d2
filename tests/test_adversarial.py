import math

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mat.adversarial import (AdversarialSettings, candidate_mask, perturbation, plan_masking,
                                   random_probs, sample_substitutes, similarity_probs,
                                   weighted_moments)
from spacy_mat.architectures import get_network, mask_inputs, tensors, train_step
from spacy_mat.callbacks import adversarial_scale, adversarial_schedule
from spacy_mat.features import MASK_ID, SPECIALS
from spacy_mat.network import length_mask

SENTS = [
    ("John lives in Paris .", [(0, 1, "PER"), (3, 4, "LOC")]),
    ("Mary Smith visited New York yesterday", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("Google hired Anna in Berlin", [(0, 1, "ORG"), (2, 3, "PER"), (4, 5, "LOC")]),
    ("the weather is fine in Rome", [(5, 6, "LOC")]),
]
SMALL = {"word_width": 12, "char_width": 6, "char_filters": 7, "hidden_width": 10,
         "dropout": 0.0, "word_dropout": 0.0}


def make_tagger(adversarial=None, seed=0):
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("mat_tagger", config={"model": {**SMALL, "adversarial": adversarial or {}}})
    examples = []
    for text, spans in SENTS:
        doc = Doc(nlp.vocab, words=text.split())
        doc.ents = [Span(doc, s, e, label=l) for s, e, l in spans]
        examples.append(Example(Doc(nlp.vocab, words=text.split()), doc))
    nlp.initialize(lambda: examples)
    pairs = [p for eg in examples for p in tagger.gold_sequences(eg)]
    return tagger, [s for s, _ in pairs], [[g for _, g in pairs]]


def batch_tensors(tagger, seqs, gold):
    model = tagger.model
    net = get_network(model)
    batch = model.attrs["tables"].featurize([[t.text for t in s] for s in seqs])
    word_ids, char_ids, lengths = tensors(batch, torch.device("cpu"))
    tags = torch.zeros(word_ids.shape, dtype=torch.long)
    for b, g in enumerate(gold[0]):
        tags[b, : len(g)] = torch.as_tensor(g)
    return net, word_ids, char_ids, lengths, length_mask(lengths, word_ids.shape[1]), [tags]


def param_grads(net):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


# -- normalisation and perturbation --------------------------------------------------

def test_weighted_moments_normalise_to_mean0_var1():
    torch.manual_seed(0)
    table = torch.randn(9, 5) * 3 + 1
    counts = torch.tensor([0, 4, 0, 9, 1, 1, 30, 2, 0.0])
    mean, std = weighted_moments(table, counts)
    normed = (table - mean) / std
    f = counts / counts.sum()
    assert torch.allclose(f @ normed, torch.zeros(5), atol=1e-5)
    assert torch.allclose(f @ (normed - f @ normed) ** 2, torch.ones(5), atol=1e-4)


def test_perturbation_norm_per_sentence_and_zero_guard():
    g = torch.randn(4, 3, 5)
    g[2] = 0.0
    d = perturbation(g, 0.4)
    norms = d.reshape(4, -1).norm(dim=1)
    assert torch.allclose(norms[[0, 1, 3]], torch.full((3,), 0.4))
    assert norms[2] == 0 and torch.isfinite(d).all()
    cos = torch.nn.functional.cosine_similarity(d[0].flatten(), g[0].flatten(), dim=0)
    assert cos > 0.9999


def test_perturbation_matches_autograd_direction_and_increases_loss():
    tagger, seqs, gold = make_tagger()
    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    net.eval()
    words0, chars0 = (t.detach() for t in net.embed(word_ids, char_ids))

    def loss_at(words, chars):
        return net.nll(net.emissions(words, chars, char_ids, lengths), tags, mask).mean()

    # the path used in training: retain_grad on the embedding outputs, one backward
    words, chars = net.embed(word_ids, char_ids)
    words.retain_grad()
    chars.retain_grad()
    loss_at(words, chars).backward()
    d_w, d_c = perturbation(words.grad, 0.4), perturbation(chars.grad, 0.2)
    # independently: autograd.grad w.r.t. leaf copies, normalised by hand per sentence
    w_leaf, c_leaf = words0.clone().requires_grad_(), chars0.clone().requires_grad_()
    g_w, g_c = torch.autograd.grad(loss_at(w_leaf, c_leaf), [w_leaf, c_leaf])
    for b in range(len(seqs)):
        assert torch.allclose(d_w[b], 0.4 * g_w[b] / g_w[b].norm(), atol=1e-6)
        assert torch.allclose(d_c[b], 0.2 * g_c[b] / g_c[b].norm(), atol=1e-6)
        assert math.isclose(float(d_w[b].norm()), 0.4, rel_tol=1e-5)
    with torch.no_grad():
        base = float(loss_at(words0, chars0))
        adv_gain = float(loss_at(words0 + d_w, chars0 + d_c)) - base
        gen = torch.Generator().manual_seed(0)
        random_gains = []
        for _ in range(20):
            r_w = perturbation(torch.randn(d_w.shape, generator=gen), 0.4)
            r_c = perturbation(torch.randn(d_c.shape, generator=gen), 0.2)
            random_gains.append(float(loss_at(words0 + r_w, chars0 + r_c)) - base)
    assert adv_gain > 0
    assert adv_gain > np.mean(random_gains) + 3 * np.std(random_gains) / math.sqrt(20)


def expected_at_gradients(tagger, seqs, gold, weight):
    """∇L_label + weight·∇L_adv with d computed separately and detached."""
    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    net.train()
    net.zero_grad()
    words, chars = net.embed(word_ids, char_ids)
    leaf_w, leaf_c = words.detach().requires_grad_(), chars.detach().requires_grad_()
    clean = net.nll(net.emissions(leaf_w, leaf_c, char_ids, lengths), tags, mask).mean()
    g_w, g_c = torch.autograd.grad(clean, [leaf_w, leaf_c])
    d_w, d_c = perturbation(g_w, 0.4).detach(), perturbation(g_c, 0.2).detach()
    label = net.nll(net.emissions(words, chars, char_ids, lengths), tags, mask).mean()
    words2, chars2 = net.embed(word_ids, char_ids)
    adv = net.nll(net.emissions(words2 + d_w, chars2 + d_c, char_ids, lengths), tags, mask).mean()
    (label + weight * adv).backward()
    grads = param_grads(net)
    net.zero_grad()
    return float(label.detach()), float(adv.detach()), grads


def test_at_step_equals_detached_recomputation():
    """One clean backward gives θ-gradients and g; no gradient flows through d."""
    tagger, seqs, gold = make_tagger({"mode": "at"})
    net = get_network(tagger.model)
    label, adv, expected = expected_at_gradients(tagger, seqs, gold, 0.6)
    net.zero_grad()
    losses = train_step(tagger.model, seqs, gold)
    assert losses["label"] == pytest.approx(label, rel=1e-5)
    assert losses["adv"] == pytest.approx(adv, rel=1e-5)
    assert losses["adv"] > losses["label"]
    for got, want in zip(param_grads(net), expected):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


def test_mode_none_is_the_plain_crf_loss_and_at_delta0_doubles_it():
    tagger, seqs, gold = make_tagger({"mode": "none"})
    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    net.zero_grad()
    words, chars = net.embed(word_ids, char_ids)
    plain = net.nll(net.emissions(words, chars, char_ids, lengths), tags, mask).mean()
    plain.backward()
    plain_grads = param_grads(net)
    net.zero_grad()
    assert train_step(tagger.model, seqs, gold) == {"label": pytest.approx(float(plain), abs=0)}
    for got, want in zip(param_grads(net), plain_grads):
        assert torch.equal(got, want)
    net.zero_grad()
    tagger.model.attrs["adversarial"] = {**tagger.model.attrs["adversarial"], "mode": "at",
                                         "delta_word": 0.0, "delta_char": 0.0}
    losses = train_step(tagger.model, seqs, gold)
    assert losses["adv"] == pytest.approx(losses["label"], rel=1e-6)
    assert losses["label"] * 1.6 == pytest.approx(float(plain) * 1.6, rel=1e-6)
    for got, want in zip(param_grads(net), plain_grads):
        assert torch.allclose(got, 1.6 * want, atol=1e-6, rtol=1e-5)


# -- masking --------------------------------------------------------------------------

def test_masking_plan_statistics():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 30, (200_000,), generator=gen)
    lengths[:1000] = 0
    plan = plan_masking(lengths, 0.06, 0.9, generator=gen)
    rate = len(plan.rows) / 199_000
    assert abs(rate - 0.06) < 4 * math.sqrt(0.06 * 0.94 / 199_000)
    assert len(set(plan.rows.tolist())) == len(plan.rows)  # one token per selected sentence
    assert (lengths[plan.rows] > 0).all()
    assert ((plan.positions >= 0) & (plan.positions < lengths[plan.rows])).all()
    share = plan.masked.float().mean().item()
    assert abs(share - 0.9) < 4 * math.sqrt(0.09 / len(plan.rows))
    # uniform position: in sentences of length 5 each position gets ~1/5
    five = lengths[plan.rows] == 5
    counts = torch.bincount(plan.positions[five], minlength=5).float()
    assert (abs(counts / counts.sum() - 0.2) < 0.05).all()


def test_substitute_is_never_the_original_nor_special():
    gen = torch.Generator().manual_seed(1)
    vectors = torch.randn(12, 4, generator=gen)
    originals = torch.tensor([3, 5, 11, 1] * 500)
    for probs in (similarity_probs(vectors, originals, 3), random_probs(12, originals, 3)):
        subs = sample_substitutes(probs, generator=gen)
        assert (subs != originals).all() and (subs >= 3).all()
        assert torch.allclose(probs.sum(1), torch.ones(len(originals)))


def test_similarity_sampler_matches_gaussian_softmax():
    gen = torch.Generator().manual_seed(2)
    vectors = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    mu, sigma = 0.5, 0.8
    probs = similarity_probs(vectors, torch.tensor([4]), 3, mu=mu, sigma=sigma)[0]
    # by hand: Gaussian density of each candidate's distance, normalised over candidates
    v = vectors.numpy()
    dist = np.linalg.norm(v - v[4], axis=1)
    density = np.exp(-0.5 * ((dist - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density[[0, 1, 2, 4]] = 0.0
    assert np.allclose(probs.numpy(), density / density.sum(), atol=1e-12)
    # softmax over the density values instead (the flatter variant)
    flat = similarity_probs(vectors, torch.tensor([4]), 3, mu=mu, sigma=sigma, softmax_over="density")[0]
    logits = np.where(density > 0, density, -np.inf)
    assert np.allclose(flat.numpy(), np.exp(logits) / np.exp(logits).sum(), atol=1e-12)
    # empirical distribution of the sampler vs the stated one: total variation
    n = 40_000
    draws = sample_substitutes(probs.expand(n, -1).contiguous(), generator=gen)
    empirical = torch.bincount(draws, minlength=10).double() / n
    assert 0.5 * (empirical - probs).abs().sum() < 0.02


def test_default_sigma_is_std_of_distances():
    gen = torch.Generator().manual_seed(3)
    vectors = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    probs = similarity_probs(vectors, torch.tensor([5]), 3)[0]
    dist = torch.cdist(vectors[[5]], vectors)[0]
    cand = candidate_mask(8, torch.tensor([5]), 3)[0]
    sigma = dist[cand].std(unbiased=False)
    density = torch.exp(-0.5 * (dist / sigma) ** 2) * cand
    assert torch.allclose(probs, density / density.sum())


def test_mask_inputs_changes_one_token_per_selected_sentence():
    tagger, seqs, gold = make_tagger({"mode": "mat", "select_rate": 1.0, "mask_rate": 0.5})
    net, word_ids, char_ids, lengths, _, _ = batch_tensors(tagger, seqs, gold)
    tables = tagger.model.attrs["tables"]
    settings = AdversarialSettings(mode="mat", select_rate=1.0, mask_rate=0.5)
    torch.manual_seed(0)
    n_masked = 0
    for _ in range(50):
        new_words, new_chars = mask_inputs(net, tables, word_ids, char_ids, lengths, settings)
        changed = (new_words != word_ids)
        assert (changed.sum(1) == 1).all()  # every sentence selected, one token each
        for b, pos in changed.nonzero().tolist():
            if new_words[b, pos] == MASK_ID:
                n_masked += 1
                assert new_chars[b, pos, 0] == MASK_ID and (new_chars[b, pos, 1:] == 0).all()
            else:
                word = tables.words[int(new_words[b, pos])]
                expect = tables.char_ids(word)
                assert new_words[b, pos] >= len(SPECIALS)
                assert new_chars[b, pos, : len(expect)].tolist() == expect.tolist()
        untouched = ~changed
        assert torch.equal(new_chars[:, :, : char_ids.shape[2]][untouched], char_ids[untouched])
    assert 0.35 < n_masked / (50 * len(seqs)) < 0.65


# -- settings and schedule --------------------------------------------------------------

def test_settings_validation():
    assert AdversarialSettings.from_config(None).mode == "none"
    with pytest.raises(ValueError, match="unknown key"):
        AdversarialSettings.from_config({"mdoe": "at"})
    with pytest.raises(ValueError, match="mode must be"):
        AdversarialSettings.from_config({"mode": "fgsm"})
    with pytest.raises(ValueError, match="select_rate"):
        AdversarialSettings(select_rate=1.5)


def test_schedule_warmup_and_ramp():
    assert [adversarial_scale(s, 2, 4) for s in range(7)] == [0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert adversarial_scale(0, 0, 0) == 1.0
    tagger, seqs, gold = make_tagger({"mode": "mat"})
    callback = adversarial_schedule(warmup_steps=3)
    nlp = type("NLP", (), {"pipeline": [("mat_tagger", tagger)]})()
    callback(nlp, {"step": 0, "epoch": 0})
    assert tagger.model.attrs["adversarial_scale"] == 0.0
    assert "adv" not in train_step(tagger.model, seqs, gold)  # pass skipped in warm-up
    callback(nlp, {"step": 3, "epoch": 0})
    assert tagger.model.attrs["adversarial_scale"] == 1.0
    assert "adv" in train_step(tagger.model, seqs, gold)


# -- extensions beyond the paper ---------------------------------------------------------

def test_plan_masking_prefers_entity_tokens_at_the_given_rate():
    lengths = torch.tensor([6] * 4000)
    preferred = torch.zeros(4000, 8, dtype=torch.bool)
    preferred[:, 2] = True
    preferred[:, 7] = True  # beyond the length: never picked
    preferred[:1000] = False  # sentences without entities: uniform as before
    g = torch.Generator().manual_seed(0)
    plan = plan_masking(lengths, 1.0, 0.5, generator=g, preferred=preferred, prefer_rate=0.8)
    has = plan.rows >= 1000
    at_entity = (plan.positions == 2).float()
    # with entities: 0.8 + 0.2 * 1/6 of the picks land on the entity token
    assert float(at_entity[has].mean()) == pytest.approx(0.8 + 0.2 / 6, abs=0.03)
    assert float(at_entity[~has].mean()) == pytest.approx(1 / 6, abs=0.04)
    assert int((plan.positions >= 6).sum()) == 0
    # prefer_rate 0 draws exactly what the paper's plan draws
    a = plan_masking(lengths, 0.3, 0.5, generator=torch.Generator().manual_seed(1))
    b = plan_masking(lengths, 0.3, 0.5, generator=torch.Generator().manual_seed(1),
                     preferred=preferred, prefer_rate=0.0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mask_token_unk_keeps_the_characters_and_case_augmentation_lowercases():
    from spacy_mat.architectures import corrupt_inputs, lowercase_rows
    from spacy_mat.features import UNK_ID

    tagger, seqs, gold = make_tagger({"mode": "mat", "select_rate": 1.0, "mask_rate": 1.0,
                                      "mask_token": "unk"})
    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    tables = tagger.model.attrs["tables"]
    settings = AdversarialSettings.from_config(tagger.model.attrs["adversarial"])
    strings = [[t.text for t in s] for s in seqs]
    new_words, new_chars, corruption = corrupt_inputs(net, tables, word_ids, char_ids, lengths,
                                                      settings, strings=strings)
    assert corruption.rows == list(range(len(seqs)))
    for r, q, kept in zip(corruption.rows, corruption.positions, corruption.substitutes):
        assert int(new_words[r, q]) == UNK_ID and kept == strings[r][q]
    assert torch.equal(new_chars[:, :, : char_ids.shape[2]], char_ids)
    lowered_words, lowered_chars, rows = lowercase_rows(tables, strings, word_ids, char_ids, 1.0)
    assert rows == list(range(len(seqs)))
    expected = tables.featurize([[t.lower() for t in s] for s in strings])
    assert torch.equal(lowered_words, torch.as_tensor(expected.word_ids))
    same_words, _, none = lowercase_rows(tables, strings, word_ids, char_ids, 0.0)
    assert none == [] and torch.equal(same_words, word_ids)
    with pytest.raises(ValueError, match="mask_token"):
        AdversarialSettings(mask_token="blank")


def test_entity_selection_changes_entity_tokens_in_training_step():
    tagger, seqs, gold = make_tagger({"mode": "masking", "select_rate": 1.0, "mask_rate": 1.0,
                                      "entity_selection": 1.0})
    from spacy_mat.architectures import corrupt_inputs

    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    settings = AdversarialSettings.from_config(tagger.model.attrs["adversarial"])
    _, _, corruption = corrupt_inputs(net, tagger.model.attrs["tables"], word_ids, char_ids,
                                      lengths, settings, gold=tags[0])
    for r, q in zip(corruption.rows, corruption.positions):
        assert int(tags[0][r, q]) > 0  # every sentence here has an entity: always picked
    losses = train_step(tagger.model, seqs, gold)
    assert "adv" in losses and math.isfinite(losses["adv"])


def _random_tag_rows(rng, n_rows, width, names):
    """Random tag id rows (any sequence, invalid BIO included; some -1 = unknown)."""
    rows = []
    for _ in range(n_rows):
        length = int(rng.integers(0, width + 1))
        ids = rng.integers(-1, len(names), size=width)
        ids[length:] = 0
        rows.append((length, ids))
    return rows


def test_span_continuation_and_expansion_match_conlleval_spans():
    from spacy_mat.adversarial import MaskingPlan, expand_to_spans, span_continuation
    from spacy_mat.architectures import tag_kinds
    from spacy_mat.tags import tags_to_spans

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rng = np.random.default_rng(0)
    width = 7
    rows = _random_tag_rows(rng, 300, width, names)
    gold = torch.as_tensor(np.stack([ids for _, ids in rows]))
    lengths = torch.tensor([n for n, _ in rows])
    continuation = span_continuation(gold, *tag_kinds(names))
    # brute force: conlleval spans of the known-tag runs (unknown = O)
    expected_span = {}
    for b, (n, ids) in enumerate(rows):
        tags = [names[i] if i >= 0 else "O" for i in ids[:n]]
        for start, end, _ in tags_to_spans(tags):
            for q in range(start, end):
                expected_span[(b, q)] = list(range(start, end))
        for q in range(n):
            inside = any(start < q < end for start, end, _ in tags_to_spans(tags))
            assert bool(continuation[b, q]) == inside, (tags, q)
    # a plan with one token per non-empty row, masked or substituted at random
    picks = [(b, int(rng.integers(0, n)), bool(rng.random() < 0.7)) for b, (n, _) in enumerate(rows) if n]
    plan = MaskingPlan(torch.tensor([b for b, _, _ in picks]), torch.tensor([q for _, q, _ in picks]),
                       torch.tensor([m for _, _, m in picks]))
    out = expand_to_spans(plan, continuation, lengths)
    got_masked = sorted((int(r), int(q)) for r, q, m in zip(*out) if m)
    got_subs = sorted((int(r), int(q)) for r, q, m in zip(*out) if not m)
    want_masked = sorted((b, j) for b, q, m in picks if m for j in expected_span.get((b, q), [q]))
    assert got_masked == want_masked
    assert got_subs == sorted((b, q) for b, q, m in picks if not m)
    assert any(len(expected_span.get((b, q), [q])) > 1 for b, q, m in picks if m)  # spans were exercised


def test_mask_span_masks_the_whole_gold_span_in_training_step():
    from spacy_mat.adversarial import span_continuation
    from spacy_mat.architectures import corrupt_inputs, tag_kinds

    tagger, seqs, gold = make_tagger({"mode": "masking", "select_rate": 1.0, "mask_rate": 1.0,
                                      "entity_selection": 1.0, "mask_span": True})
    net, word_ids, char_ids, lengths, mask, tags = batch_tensors(tagger, seqs, gold)
    settings = AdversarialSettings.from_config(tagger.model.attrs["adversarial"])
    continuation = span_continuation(tags[0], *tag_kinds(tagger.model.attrs["tag_sets"][0]))
    new_words, _, corruption = corrupt_inputs(net, tagger.model.attrs["tables"], word_ids, char_ids,
                                              lengths, settings, gold=tags[0],
                                              continuation=continuation)
    spans_by_row = {b: spans for b, (_, spans) in enumerate(SENTS)}
    changed = {}
    for r, q in zip(corruption.rows, corruption.positions):
        changed.setdefault(r, []).append(q)
    assert sorted(changed) == [0, 1, 2, 3]  # one span per sentence, every token of it
    for r, positions in changed.items():
        assert any(sorted(positions) == list(range(s, e)) for s, e, _ in spans_by_row[r])
        assert all(int(new_words[r, q]) == MASK_ID for q in positions)
    assert len(changed[1]) == 2  # "Mary Smith" or "New York": both tokens
    # off (the paper): one token per sentence
    settings_off = AdversarialSettings.from_config({**tagger.model.attrs["adversarial"], "mask_span": False})
    _, _, single = corrupt_inputs(net, tagger.model.attrs["tables"], word_ids, char_ids, lengths,
                                  settings_off, gold=tags[0], continuation=continuation)
    assert len(single.rows) == len(seqs)
    losses = train_step(tagger.model, seqs, gold)
    assert "adv" in losses and math.isfinite(losses["adv"])
