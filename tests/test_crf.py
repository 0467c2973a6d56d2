"""CRF checks against brute-force enumeration of every path on tiny cases."""
import io
import itertools
import math
from typing import Callable, List, Sequence, Tuple

import numpy as np
import pytest
import torch

from spacy_mat import crf
from spacy_mat.tags import allowed_transitions, bio_tag_names, is_valid_bio

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
ATOL = 1e-6


class Case:
    """A random float64 batch with mixed lengths (including empty rows)."""

    def __init__(self, n_tags: int, lengths: Sequence[int], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.lengths = list(lengths)
        batch, length = len(self.lengths), max(self.lengths)
        self.n_tags = n_tags
        self.emissions = torch.randn(batch, length, n_tags, generator=gen, dtype=torch.float64)
        self.mask = torch.arange(length).unsqueeze(0) < torch.tensor(self.lengths).unsqueeze(1)
        self.tags = torch.randint(n_tags, (batch, length), generator=gen)
        self.transitions = torch.randn(n_tags, n_tags, generator=gen, dtype=torch.float64)
        self.start = torch.randn(n_tags, generator=gen, dtype=torch.float64)
        self.end = torch.randn(n_tags, generator=gen, dtype=torch.float64)

    @property
    def scores(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.transitions, self.start, self.end

    def path_score(self, row: int, path: Sequence[int]) -> float:
        """Score of one path of row ``row``, computed the slow way."""
        if not path:
            return 0.0
        e = self.emissions[row]
        total = self.start[path[0]] + self.end[path[-1]]
        total = total + sum(e[t, tag] for t, tag in enumerate(path))
        total = total + sum(self.transitions[a, b] for a, b in zip(path, path[1:]))
        return float(total)

    def paths(self, row: int, valid: Callable[[Sequence[int]], bool] = lambda p: True):
        """All (allowed) paths of row ``row`` with their scores."""
        for path in itertools.product(range(self.n_tags), repeat=self.lengths[row]):
            if valid(path):
                yield path, self.path_score(row, path)


def cases() -> List[Case]:
    """Seeded tiny cases: T in 2..4, lengths 0..4 mixed within each batch."""
    rng = np.random.default_rng(0)
    out = []
    for seed in range(6):
        for n_tags in (2, 3, 4):
            lengths = [4, 0, *rng.integers(0, 5, size=3)]
            rng.shuffle(lengths)
            out.append(Case(n_tags, lengths, seed * 10 + n_tags))
    return out


CASES = cases()


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def with_garbage(case: Case) -> torch.Tensor:
    """The case's emissions with huge (and NaN) values at every padding position."""
    garbage = case.emissions.clone()
    pad = ~case.mask
    garbage[pad] = 1e30 * torch.randn(int(pad.sum()), case.n_tags, dtype=torch.float64)
    if pad.any():
        row, t = pad.nonzero()[0].tolist()
        garbage[row, t] = float("nan")
    return garbage


@pytest.mark.parametrize("case", CASES)
def test_log_partition_matches_brute_force(case: Case) -> None:
    got = crf.log_partition(case.emissions, case.mask, *case.scores)
    for row in range(len(case.lengths)):
        expected = logsumexp([s for _, s in case.paths(row)])
        assert got[row].item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_log_likelihood_matches_brute_force(case: Case) -> None:
    got = crf.log_likelihood(case.emissions, case.tags, case.mask, *case.scores)
    for row, n in enumerate(case.lengths):
        gold = case.path_score(row, case.tags[row, :n].tolist())
        expected = gold - logsumexp([s for _, s in case.paths(row)])
        assert got[row].item() == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_viterbi_matches_brute_force(case: Case) -> None:
    tags, score = crf.viterbi_decode(case.emissions, case.mask, *case.scores)
    assert tags.dtype == torch.long and tags.shape == case.mask.shape
    for row, n in enumerate(case.lengths):
        best_path, best_score = max(case.paths(row), key=lambda item: item[1])
        assert tags[row, :n].tolist() == list(best_path)
        assert tags[row, n:].eq(0).all()
        assert score[row].item() == pytest.approx(best_score, abs=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_marginals_match_brute_force(case: Case) -> None:
    got = crf.marginals(case.emissions, case.mask, *case.scores)
    for row, n in enumerate(case.lengths):
        expected = torch.zeros(got.shape[1:], dtype=torch.float64)
        paths = list(case.paths(row))
        log_z = logsumexp([s for _, s in paths])
        for path, s in paths:
            for t, tag in enumerate(path):
                expected[t, tag] += math.exp(s - log_z)
        torch.testing.assert_close(got[row], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(got[row, :n].sum(-1), torch.ones(n, dtype=torch.float64))


@pytest.mark.parametrize("case", CASES[:6])
def test_padding_values_are_ignored(case: Case) -> None:
    dirty = with_garbage(case)
    dirty_tags = case.tags.masked_fill(~case.mask, -100)
    args = (case.mask, *case.scores)
    pairs = [
        (crf.log_partition(case.emissions, *args), crf.log_partition(dirty, *args)),
        (crf.marginals(case.emissions, *args), crf.marginals(dirty, *args)),
        (
            crf.log_likelihood(case.emissions, case.tags, *args),
            crf.log_likelihood(dirty, dirty_tags, *args),
        ),
        *zip(crf.viterbi_decode(case.emissions, *args), crf.viterbi_decode(dirty, *args)),
    ]
    for clean, noisy in pairs:
        torch.testing.assert_close(noisy, clean, atol=0, rtol=0)
    dirty.requires_grad_(True)
    crf.log_likelihood(dirty, dirty_tags, *args).sum().backward()
    assert torch.isfinite(dirty.grad).all()
    assert dirty.grad[~case.mask].eq(0).all()


@pytest.mark.parametrize("case", CASES)
def test_likelihood_of_all_paths_sums_to_one(case: Case) -> None:
    for row, n in enumerate(case.lengths):
        paths = list(itertools.product(range(case.n_tags), repeat=n))
        count = len(paths)
        tags = torch.zeros(count, case.mask.shape[1], dtype=torch.long)
        tags[:, :n] = torch.tensor(paths, dtype=torch.long).view(count, n)
        emissions = case.emissions[row].expand(count, -1, -1)
        mask = case.mask[row].expand(count, -1)
        total = crf.log_likelihood(emissions, tags, mask, *case.scores).exp().sum()
        assert total.item() == pytest.approx(1.0, abs=ATOL)


@pytest.mark.parametrize("case", CASES)
def test_log_partition_gradient_is_marginals(case: Case) -> None:
    emissions = case.emissions.clone().requires_grad_(True)
    crf.log_partition(emissions, case.mask, *case.scores).sum().backward()
    expected = crf.marginals(case.emissions, case.mask, *case.scores)
    torch.testing.assert_close(emissions.grad, expected, atol=1e-10, rtol=0)


def test_empty_batch_dimension() -> None:
    emissions = torch.zeros(3, 0, 4)
    mask = torch.zeros(3, 0, dtype=torch.bool)
    scores = (torch.zeros(4, 4), torch.zeros(4), torch.zeros(4))
    assert crf.log_partition(emissions, mask, *scores).tolist() == [0.0] * 3
    tags = torch.zeros(3, 0, dtype=torch.long)
    assert crf.log_likelihood(emissions, tags, mask, *scores).tolist() == [0.0] * 3
    assert crf.viterbi_decode(emissions, mask, *scores)[0].shape == (3, 0)
    assert crf.marginals(emissions, mask, *scores).shape == (3, 0, 4)


def bio_case(seed: int, scale: float = 1.0) -> Case:
    case = Case(len(BIO), [4, 3, 0, 1, 2], seed)
    case.emissions = case.emissions * scale
    return case


def constrained(case: Case) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    start, trans, end = allowed_transitions(BIO)
    return crf.constrain(*case.scores, start, trans, end)


def is_bio_path(path: Sequence[int]) -> bool:
    return is_valid_bio([BIO[i] for i in path])


@pytest.mark.parametrize("seed", range(4))
def test_constrained_log_partition_matches_allowed_paths(seed: int) -> None:
    case = bio_case(seed)
    got = crf.log_partition(case.emissions, case.mask, *constrained(case))
    for row in range(len(case.lengths)):
        expected = logsumexp([s for _, s in case.paths(row, is_bio_path)])
        assert got[row].item() == pytest.approx(expected, abs=ATOL)


def test_constrained_viterbi_matches_best_allowed_path() -> None:
    case = bio_case(0, scale=5.0)
    tags, score = crf.viterbi_decode(case.emissions, case.mask, *constrained(case))
    for row, n in enumerate(case.lengths):
        best_path, best_score = max(case.paths(row, is_bio_path), key=lambda item: item[1])
        assert tags[row, :n].tolist() == list(best_path)
        assert score[row].item() == pytest.approx(best_score, abs=ATOL)


def test_constrained_viterbi_never_invalid() -> None:
    gen = torch.Generator().manual_seed(1)
    start, trans, end = allowed_transitions(BIO)
    model = crf.CRF(len(BIO), (start, trans, end))
    lengths = torch.randint(0, 12, (200,), generator=gen)
    mask = torch.arange(12).unsqueeze(0) < lengths.unsqueeze(1)
    for _ in range(10):
        emissions = 20.0 * torch.randn(200, 12, len(BIO), generator=gen)
        emissions[:, :, 2] += 30.0  # favour I-PER everywhere, including at the start
        tags = model.decode(emissions, mask)
        for row, n in enumerate(lengths.tolist()):
            assert is_valid_bio([BIO[i] for i in tags[row, :n].tolist()])


def test_constraint_beats_strong_emission() -> None:
    emissions = torch.zeros(1, 2, len(BIO))
    emissions[0, 0, 0] = 100.0  # O
    emissions[0, 1, 2] = 100.0  # I-PER: invalid after O
    model = crf.CRF(len(BIO), allowed_transitions(BIO))
    path = [BIO[i] for i in model.decode(emissions, torch.ones(1, 2, dtype=torch.bool))[0]]
    assert is_valid_bio(path)
    assert path != ["O", "I-PER"]


def trained_model(seed: int = 0) -> crf.CRF:
    torch.manual_seed(seed)
    model = crf.CRF(len(BIO), allowed_transitions(BIO))
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-1.0, 1.0)
    return model


def test_state_dict_round_trip() -> None:
    model = trained_model()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = crf.CRF(len(BIO))
    restored.load_state_dict(torch.load(buffer))
    emissions = torch.randn(16, 7, len(BIO))
    mask = torch.ones(16, 7, dtype=torch.bool)
    assert torch.equal(restored.decode(emissions, mask), model.decode(emissions, mask))
    assert torch.equal(restored.allowed_trans, model.allowed_trans)


def test_nll_backprop_and_disallowed_gradients() -> None:
    model = trained_model()
    emissions = torch.randn(8, 6, len(BIO), requires_grad=True)
    mask = torch.arange(6).unsqueeze(0) < torch.tensor([6, 5, 0, 1, 3, 6, 2, 4]).unsqueeze(1)
    tags = torch.randint(len(BIO), (8, 6))
    loss = model.nll(emissions, tags, mask)
    assert loss.shape == (8,)
    loss.mean().backward()
    for grad in (emissions.grad, *(p.grad for p in model.parameters())):
        assert torch.isfinite(grad).all()
    assert model.transitions.grad[~model.allowed_trans].eq(0).all()
    assert model.start_transitions.grad[~model.allowed_start].eq(0).all()
    assert model.transitions.grad[model.allowed_trans].ne(0).any()


def test_module_matches_functions_in_float64() -> None:
    model = trained_model().double()
    case = bio_case(3)
    scores = model.scores(torch.float64)
    log_prob = model.sequence_log_prob(case.emissions, case.tags, case.mask)
    assert log_prob.dtype == torch.float64
    torch.testing.assert_close(
        log_prob, crf.log_likelihood(case.emissions, case.tags, case.mask, *scores)
    )
    torch.testing.assert_close(
        model.marginals(case.emissions, case.mask),
        crf.marginals(case.emissions, case.mask, *scores),
    )


def test_module_rejects_wrong_mask_shapes() -> None:
    start, trans, end = allowed_transitions(BIO)
    with pytest.raises(ValueError, match="n_tags=4"):
        crf.CRF(4, (start, trans, end))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_smoke_case(dtype: torch.dtype) -> None:
    names = bio_tag_names([f"L{i}" for i in range(11)])
    model = crf.CRF(len(names), allowed_transitions(names))
    gen = torch.Generator().manual_seed(0)
    emissions = torch.randn(64, 40, len(names), generator=gen, dtype=dtype)
    lengths = torch.randint(0, 41, (64,), generator=gen)
    mask = torch.arange(40).unsqueeze(0) < lengths.unsqueeze(1)
    tags = model.decode(emissions, mask)
    assert tags.shape == (64, 40) and tags.dtype == torch.long
    assert tags[~mask].eq(0).all()
    for row, n in enumerate(lengths.tolist()):
        assert is_valid_bio([names[i] for i in tags[row, :n].tolist()])
    marg = model.marginals(emissions, mask)
    torch.testing.assert_close(marg.sum(-1), mask.to(dtype), atol=1e-4, rtol=0)
    assert torch.isfinite(model.nll(emissions, tags, mask)).all()


def _scores(n_tags: int, seed: int, constrained: bool):
    gen = torch.Generator().manual_seed(seed)
    transitions = torch.randn(n_tags, n_tags, generator=gen) * 3
    start, end = torch.randn(n_tags, generator=gen), torch.randn(n_tags, generator=gen)
    if constrained:
        tags = bio_tag_names(["LOC", "PER", "ORG"])[:n_tags]
        transitions, start, end = crf.constrain(transitions, start, end,
                                                *allowed_transitions(tags))
    return gen, transitions, start, end


@pytest.mark.parametrize("constrained", [False, True])
def test_matmul_forward_equals_logsumexp_forward(constrained: bool) -> None:
    gen, transitions, start, end = _scores(7, 3, constrained)
    emissions = (torch.randn(16, 12, 7, generator=gen) * 5).double()
    mask = torch.arange(12)[None, :] < torch.randint(0, 13, (16,), generator=gen)[:, None]
    fast = crf._forward_matmul(emissions, mask, transitions.double(), start.double())
    exact = crf._forward_logsumexp(emissions, mask, transitions.double(), start.double())
    for a, b in zip(fast, exact):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-9)


def test_underflow_falls_back_to_exact_recursion() -> None:
    """Emission gaps of hundreds of nats underflow the probability-space
    product; the log-partition and its gradient must stay exact and finite."""
    _, transitions, start, end = _scores(7, 4, True)
    emissions = torch.zeros(2, 6, 7)
    emissions[:, :, 0] = 400.0  # "O" everywhere by 400 nats: I-X states underflow
    mask = torch.ones(2, 6, dtype=torch.bool)
    fast = crf._forward_matmul(emissions, mask, transitions, start)
    assert not all(bool(a.isfinite().all()) for a in fast)  # the case really underflows
    emissions.requires_grad_(True)
    log_z = crf.log_partition(emissions, mask, transitions, start, end)
    exact = crf._log_partition(crf._forward_logsumexp(emissions, mask, transitions, start), mask, end)
    assert torch.allclose(log_z, exact)
    log_z.sum().backward()
    assert bool(emissions.grad.isfinite().all())
