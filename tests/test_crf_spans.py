"""New CRF functions (issue 13) against brute-force enumeration of every path:
span marginals, decoding under per-token constraints, partial-label likelihood."""
import itertools
import math

import numpy as np
import pytest
import torch

from spacy_mat import crf
from spacy_mat.tags import allowed_transitions

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ATOL = 1e-6


def make_case(lengths, seed, n_tags=len(BIO), constrained=True):
    gen = torch.Generator().manual_seed(seed)
    batch, length = len(lengths), max(lengths)
    emissions = 2 * torch.randn(batch, length, n_tags, generator=gen, dtype=torch.float64)
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    scores = (torch.randn(n_tags, n_tags, generator=gen, dtype=torch.float64),
              torch.randn(n_tags, generator=gen, dtype=torch.float64),
              torch.randn(n_tags, generator=gen, dtype=torch.float64))
    if constrained:
        start_ok, trans_ok, end_ok = allowed_transitions(BIO)
        scores = crf.constrain(*scores, start_ok, trans_ok, end_ok)
    return emissions, mask, scores


def path_score(emissions, row, path, scores):
    trans, start, end = scores
    total = start[path[0]] + end[path[-1]] + sum(emissions[row, t, tag] for t, tag in enumerate(path))
    return float(total + sum(trans[a, b] for a, b in zip(path, path[1:])))


def all_paths(emissions, row, n, scores):
    n_tags = emissions.shape[2]
    return [(p, path_score(emissions, row, p, scores)) for p in itertools.product(range(n_tags), repeat=n)]


def logsumexp(values):
    values = list(values)
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_span_log_probs_match_brute_force(constrained, seed):
    lengths = [4, 1, 3, 2]
    emissions, mask, scores = make_case(lengths, seed, constrained=constrained)
    spans = [(r, s, e, b, b + 1) for r, n in enumerate(lengths)
             for s in range(n) for e in range(s + 1, n + 1) for b in (1, 3)]
    rows, starts, ends, begins, insides = (torch.tensor(c) for c in zip(*spans))
    got = crf.span_log_probs(emissions, mask, *scores, rows, starts, ends, begins, insides)
    per_row = {r: all_paths(emissions, r, n, scores) for r, n in enumerate(lengths)}
    for k, (r, s, e, b, i) in enumerate(spans):
        paths = per_row[r]
        log_z = logsumexp(score for _, score in paths)
        match = [score for p, score in paths
                 if p[s] == b and all(t == i for t in p[s + 1:e]) and (e == lengths[r] or p[e] != i)]
        expected = logsumexp(match) - log_z
        assert math.exp(float(got[k])) == pytest.approx(math.exp(expected), abs=ATOL)


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.parametrize("spread", [2.0, 800.0])
def test_single_row_span_log_probs_match_brute_force(constrained, spread):
    """One row on the CPU without autograd takes the numpy path (scaled
    probability-space recursions; with a spread of 800 nats within a token
    they underflow and the log-space loops take over); padded to a longer
    length too. Float32 input gives the same probabilities."""
    lengths = [4, 5, 2]
    emissions, mask, scores = make_case(lengths, 7, constrained=constrained)
    emissions = emissions * (spread / 2.0)
    for r, n in enumerate(lengths):
        one, one_mask = emissions[r: r + 1], mask[r: r + 1]
        assert crf._single_host_row(one, *scores)
        spans = [(0, s, e, b, b + 1) for s in range(n) for e in range(s + 1, n + 1) for b in (1, 3)]
        columns = [torch.tensor(c) for c in zip(*spans)]
        got = crf.span_log_probs(one, one_mask, *scores, *columns)
        got32 = crf.span_log_probs(one.float(), one_mask, *(x.float() for x in scores), *columns)
        paths = all_paths(emissions, r, n, scores)
        log_z = logsumexp(score for _, score in paths)
        for k, (_, s, e, b, i) in enumerate(spans):
            match = [score for p, score in paths
                     if p[s] == b and all(t == i for t in p[s + 1:e]) and (e == n or p[e] != i)]
            expected = math.exp(logsumexp(match) - log_z)
            assert math.exp(float(got[k])) == pytest.approx(expected, abs=ATOL)
            assert math.exp(float(got32[k])) == pytest.approx(expected, abs=1e-4)
        batched = crf.span_log_probs(emissions, mask, *scores, torch.full_like(columns[0], r), *columns[1:])
        assert torch.allclose(got.exp(), batched.exp(), atol=ATOL)
    with pytest.raises(ValueError):
        crf.span_log_probs(emissions[:1], mask[:1], *scores, *(torch.tensor([x]) for x in (0, 2, 9, 1, 2)))


def test_span_probs_of_a_row_sum_to_expected_entity_count():
    """Sum over all spans of P(span) = expected number of entities (brute force)."""
    lengths = [4]
    emissions, mask, scores = make_case(lengths, 5)
    spans = [(0, s, e, b, b + 1) for s in range(4) for e in range(s + 1, 5) for b in (1, 3)]
    rows, starts, ends, begins, insides = (torch.tensor(c) for c in zip(*spans))
    total = crf.span_log_probs(emissions, mask, *scores, rows, starts, ends, begins, insides).exp().sum()
    paths = all_paths(emissions, 0, 4, scores)
    log_z = logsumexp(s for _, s in paths)
    expected = sum(math.exp(score - log_z) * sum(t in (1, 3) for t in p) for p, score in paths)
    assert float(total) == pytest.approx(expected, abs=ATOL)


def test_span_log_probs_reject_bad_spans_and_accept_none():
    emissions, mask, scores = make_case([2], 0)
    empty = torch.zeros(0, dtype=torch.long)
    assert crf.span_log_probs(emissions, mask, *scores, empty, empty, empty, empty, empty).shape == (0,)
    one = torch.tensor([0])
    with pytest.raises(ValueError, match="row length"):
        crf.span_log_probs(emissions, mask, *scores, one, one, torch.tensor([3]), one, one + 1)


def test_restricted_viterbi_is_best_consistent_path():
    lengths = [4, 3, 2]
    emissions, mask, scores = make_case(lengths, 3)
    gen = torch.Generator().manual_seed(9)
    allowed = torch.rand(emissions.shape, generator=gen) < 0.6
    allowed[..., 0] = True  # O always allowed: every row keeps a valid path
    path, best = crf.viterbi_decode(crf.restrict_emissions(emissions, allowed), mask, *scores)
    for r, n in enumerate(lengths):
        ok = [(p, s) for p, s in all_paths(emissions, r, n, scores)
              if all(allowed[r, t, tag] for t, tag in enumerate(p))]
        best_path, best_score = max(ok, key=lambda ps: ps[1])
        assert path[r, :n].tolist() == list(best_path)
        assert float(best[r]) == pytest.approx(best_score, abs=1e-6)
    with pytest.raises(ValueError, match="allowed tags shape"):
        crf.restrict_emissions(emissions, allowed[:, :1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_partial_log_likelihood_matches_brute_force(seed):
    lengths = [4, 3, 4, 2]
    emissions, mask, scores = make_case(lengths, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    # known tags taken from a random BIO-valid path (an invalid gold has only
    # forbidden paths, whose scores are not compared)
    valid = [p for p in itertools.product(range(len(BIO)), repeat=4)
             if not any(b in (2, 4) and a not in (b - 1, b) for a, b in zip((0,) + p, p))]
    pick = torch.randint(len(valid), (len(lengths),), generator=gen)
    tags = torch.tensor([valid[i] for i in pick.tolist()])
    unknown = torch.rand(emissions.shape[:2], generator=gen) < 0.5
    tags = tags.masked_fill(unknown, -1)
    tags[3] = torch.tensor([1, 2, 0, 0])  # fully known row
    got = crf.partial_log_likelihood(emissions, tags, mask, *scores)
    for r, n in enumerate(lengths):
        paths = all_paths(emissions, r, n, scores)
        known = [(t, int(tags[r, t])) for t in range(n) if tags[r, t] >= 0]
        match = [s for p, s in paths if all(p[t] == tag for t, tag in known)]
        expected = logsumexp(match) - logsumexp(s for _, s in paths)
        assert float(got[r]) == pytest.approx(expected, abs=1e-6)
    full = crf.log_likelihood(emissions[3:], tags[3:], mask[3:], *scores)
    assert float(got[3]) == pytest.approx(float(full[0]), abs=1e-6)


def test_all_unknown_row_contributes_nothing():
    emissions, mask, scores = make_case([3, 3], 4)
    emissions.requires_grad_(True)
    tags = torch.tensor([[-1, -1, -1], [1, 2, 0]])
    ll = crf.partial_log_likelihood(emissions, tags, mask, *scores)
    assert float(ll[0]) == 0.0
    ll.sum().backward()
    assert torch.count_nonzero(emissions.grad[0]) == 0
    assert torch.count_nonzero(emissions.grad[1]) > 0


def test_crf_module_uses_partial_likelihood_for_unknown_tags():
    torch.manual_seed(0)
    layer = crf.CRF(len(BIO), allowed_transitions(BIO))
    with torch.no_grad():
        layer.transitions.normal_()
    emissions = torch.randn(2, 3, len(BIO))
    mask = torch.ones(2, 3, dtype=torch.bool)
    tags = torch.tensor([[1, -1, 0], [-1, -1, -1]])
    nll = layer.nll(emissions, tags, mask)
    expected = -crf.partial_log_likelihood(emissions, tags, mask, *layer.scores(emissions.dtype))
    assert torch.allclose(nll, expected)
    assert float(nll[1]) == 0.0 and float(nll[0]) > 0
    full = torch.tensor([[1, 2, 0], [0, 0, 0]])
    assert torch.allclose(layer.nll(emissions, full, mask), -layer.sequence_log_prob(emissions, full, mask))
    spans = [torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), torch.tensor([1]), torch.tensor([2])]
    p = layer.span_log_probs(emissions, mask, *spans).exp()
    assert 0 < float(p) < 1


@pytest.mark.parametrize("scale", [1.0, 60.0])
def test_fast_backward_matches_log_space_backward(scale):
    """Also with emissions large enough to underflow the matmul (fallback)."""
    emissions, mask, scores = make_case([6, 3, 1, 5], 7)
    emissions = emissions * scale
    fast = crf._backward_fast(emissions, mask, scores[0], scores[2])
    exact = crf._backward(emissions, mask, scores[0], scores[2])
    for a, b in zip(fast, exact):
        finite = b > crf.DISALLOWED / 2
        assert torch.allclose(a[finite], b[finite], atol=1e-8, rtol=1e-9)
