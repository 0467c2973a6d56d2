"""Linear-chain CRF in plain torch: path scores, forward algorithm, Viterbi,
forward-backward marginals and hard transition constraints.

Shapes: emissions ``[B, L, T]``, tags ``[B, L]`` (long), mask ``[B, L]`` (bool,
left-aligned: each row is True for its tokens, then False; a row may be all
False, an empty sequence whose score and log-partition are 0). ``transitions[i,
j]`` scores the move from tag i to tag j; ``start``/``end`` score the first and
last tag. All computation happens in the emissions' dtype and device; values at
padding positions of emissions and tags (even inf/NaN) never affect a result or
a gradient.
"""
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .weights_key import weights_key

DISALLOWED = -1e4
"""Score given to a forbidden move. Finite, so no NaNs appear; it dominates as
long as emission differences within a sentence stay far below 1e4."""

Scores = Tuple[Tensor, Tensor, Tensor]  # (transitions [T, T], start [T], end [T])
Masks = Tuple[np.ndarray, np.ndarray, np.ndarray]  # (start [T], trans [T, T], end [T])


def _prepare(emissions: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Check shapes; return emissions with zeroed padding and a bool mask."""
    if emissions.dim() != 3:
        raise ValueError(f"emissions must be [B, L, T], got shape {tuple(emissions.shape)}")
    if mask.shape != emissions.shape[:2]:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match emissions [B, L] = "
            f"{tuple(emissions.shape[:2])}"
        )
    mask = mask.bool()
    return emissions.masked_fill(~mask.unsqueeze(-1), 0.0), mask


def _lengths(mask: Tensor) -> Tensor:
    """Number of valid tokens per row, ``[B]``."""
    return mask.sum(dim=1)


def sequence_score(
    emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tensor:
    """Unnormalised score of the path ``tags`` per row, ``[B]``."""
    emissions, mask = _prepare(emissions, mask)
    if tags.shape != mask.shape:
        raise ValueError(f"tags shape {tuple(tags.shape)} does not match mask {tuple(mask.shape)}")
    if emissions.shape[1] == 0:
        return emissions.new_zeros(emissions.shape[0])
    tags = tags.long().masked_fill(~mask, 0)
    lengths = _lengths(mask)
    zero = emissions.new_zeros(())
    emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1).sum(dim=1)
    moves = torch.where(mask[:, 1:], transitions[tags[:, :-1], tags[:, 1:]], zero).sum(dim=1)
    last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    ends = torch.where(lengths > 0, start[tags[:, 0]] + end[last], zero)
    return emitted + moves + ends


def _forward(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor) -> List[Tensor]:
    """Forward log-scores ``alpha_t [B, T]`` for each step (carried over padding).

    On the CPU: in probability space with one ``[B, T] @ [T, T]`` product
    per step (both factors shifted by their maxima; several times faster
    than a logsumexp over ``[B, T, T]``); should anything underflow to zero
    (a reachable tag scoring over ~87 nats below the best one), the whole
    batch is recomputed with the exact log-space recursion. That check reads
    the result on the host, which on an accelerator would stall the device
    every step: there the exact log-space recursion runs directly. One
    sequence on the CPU without autograd (serving one sentence) takes a
    numpy loop, free of torch's per-operation overhead."""
    if _single_host_row(emissions, transitions, start):
        return _rows_from_numpy(_forward_numpy, emissions, mask, transitions, start)
    if emissions.device.type != "cpu":
        return _forward_logsumexp(emissions, mask, transitions, start)
    alphas = _forward_matmul(emissions, mask, transitions, start)
    if bool(torch.stack(alphas).isfinite().all()):  # a host read, no device sync on the CPU
        return alphas
    return _forward_logsumexp(emissions, mask, transitions, start)


def _forward_matmul(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor) -> List[Tensor]:
    shift = transitions.detach().max()
    exp_trans = (transitions - shift).exp()  # forbidden moves (-1e4) become exactly 0
    alpha = start + emissions[:, 0]
    alphas = [alpha]
    for t in range(1, emissions.shape[1]):
        top = alpha.detach().amax(dim=1, keepdim=True)
        step = torch.mm((alpha - top).exp(), exp_trans).log() + top + shift + emissions[:, t]
        alpha = torch.where(mask[:, t : t + 1], step, alpha)
        alphas.append(alpha)
    return alphas


def _forward_logsumexp(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor) -> List[Tensor]:
    """The exact recursion on scores laid out ``[T, B]``: the logsumexp runs
    over the leading dim of ``[prev, next, B]`` (a vectorised reduction,
    as in :func:`_viterbi`). Returns ``[B, T]`` (transposed) views."""
    steps = emissions.permute(1, 2, 0)  # [L, T, B]
    reaches = mask.t()  # [L, B]
    moves = transitions.unsqueeze(2)  # [prev, next, 1]
    alpha = start.unsqueeze(1) + steps[0]
    alphas = [alpha]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha.unsqueeze(1) + moves, dim=0) + steps[t]
        alpha = torch.where(reaches[t], step, alpha)
        alphas.append(alpha)
    return [a.t() for a in alphas]


def _backward(emissions: Tensor, mask: Tensor, transitions: Tensor, end: Tensor) -> List[Tensor]:
    """Backward log-scores ``beta_t [B, T]`` for each step (``end`` at each row's last token).

    Laid out ``[T, B]`` like :func:`_forward_logsumexp`; one sequence on the
    CPU without autograd takes a numpy loop."""
    if _single_host_row(emissions, transitions, end):
        return _rows_from_numpy(_backward_numpy, emissions, mask, transitions, end)
    steps = emissions.permute(1, 2, 0)  # [L, T, B]
    reaches = mask.t()  # [L, B]
    moves = transitions.t().unsqueeze(2)  # [next, prev, 1]
    beta = end.unsqueeze(1).expand(-1, emissions.shape[0])
    betas = [beta]
    for t in range(emissions.shape[1] - 2, -1, -1):
        step = torch.logsumexp((steps[t + 1] + beta).unsqueeze(1) + moves, dim=0)
        beta = torch.where(reaches[t + 1], step, beta)
        betas.append(beta)
    return [b.t() for b in betas[::-1]]


# -- one sequence on the CPU without autograd: numpy loops ---------------------------
# (serving one short sentence: torch's ~3 us per operation would dominate)

def _single_host_row(emissions: Tensor, *scores: Tensor) -> bool:
    """Whether the numpy loops apply: one row, float32/64 on the CPU, no autograd."""
    return (emissions.shape[0] == 1 and emissions.device.type == "cpu"
            and emissions.dtype in (torch.float32, torch.float64)
            and all(s.dtype == emissions.dtype for s in scores)
            and not (torch.is_grad_enabled()
                     and any(t.requires_grad for t in (emissions, *scores))))


def _host(tensor: Tensor) -> np.ndarray:
    return tensor.detach().numpy()


def _rows_from_numpy(fn: Callable, emissions: Tensor, mask: Tensor, transitions: Tensor,
                     bound: Tensor) -> List[Tensor]:
    """Run a single-row numpy recursion; its ``[L, T]`` result as a list of ``[1, T]`` tensors."""
    n = int(mask[0].sum())
    out = fn(_host(emissions[0]), n, _host(transitions), _host(bound))
    return list(torch.from_numpy(out).unsqueeze(1).unbind(0))


def _forward_numpy(e: np.ndarray, n: int, trans: np.ndarray, start: np.ndarray) -> np.ndarray:
    """``alpha [L, T]`` of one row with ``n`` tokens (exact log-space; carried over padding)."""
    out = np.empty_like(e)
    alpha = start + e[0]
    out[0] = alpha
    for t in range(1, n):
        x = alpha[:, None] + trans
        top = x.max(axis=0)
        alpha = np.log(np.exp(x - top).sum(axis=0)) + top + e[t]
        out[t] = alpha
    out[max(n, 1):] = alpha
    return out


def _backward_numpy(e: np.ndarray, n: int, trans: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``beta [L, T]`` of one row with ``n`` tokens (``end`` from its last token on)."""
    out = np.empty_like(e)
    beta = end.astype(e.dtype)
    out[max(n - 1, 0):] = beta
    for t in range(n - 2, -1, -1):
        x = trans + (e[t + 1] + beta)
        top = x.max(axis=1)
        beta = np.log(np.exp(x - top[:, None]).sum(axis=1)) + top
        out[t] = beta
    return out


def viterbi_numpy(e: np.ndarray, n: int, trans: np.ndarray, start: np.ndarray,
                   end: np.ndarray) -> Tuple[np.ndarray, float]:
    """Best path (0 at padding) and its score of one row with ``n`` tokens;
    the same float operations and tie-breaking as :func:`_viterbi`."""
    path = np.zeros(e.shape[0], dtype=np.int64)
    if n == 0:
        return path, 0.0
    scores = np.empty((n, e.shape[1]), dtype=e.dtype)
    score = start + e[0]
    scores[0] = score
    for t in range(1, n):
        score = (score[:, None] + trans).max(axis=0) + e[t]
        scores[t] = score
    final = score + end
    tag = int(final.argmax())
    best = final[tag]
    path[n - 1] = tag
    for t in range(n - 1, 0, -1):
        tag = int((scores[t - 1] + trans[:, tag]).argmax())
        path[t - 1] = tag
    return path, best


def _log_partition(alphas: List[Tensor], mask: Tensor, end: Tensor) -> Tensor:
    """Log-partition from the forward scores; 0 for empty rows."""
    log_z = torch.logsumexp(alphas[-1] + end, dim=1)
    return torch.where(_lengths(mask) > 0, log_z, log_z.new_zeros(()))


def log_partition(
    emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tensor:
    """Log of the sum of exp(score) over all paths, per row, ``[B]``."""
    emissions, mask = _prepare(emissions, mask)
    if emissions.shape[1] == 0:
        return emissions.new_zeros(emissions.shape[0])
    return _log_partition(_forward(emissions, mask, transitions, start), mask, end)


def log_likelihood(
    emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tensor:
    """Log-probability of the path ``tags`` per row, ``[B]``."""
    gold = sequence_score(emissions, tags, mask, transitions, start, end)
    return gold - log_partition(emissions, mask, transitions, start, end)


def viterbi_decode(
    emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tuple[Tensor, Tensor]:
    """Best path ``[B, L]`` (long, 0 at padding) and its score ``[B]`` (0 for empty rows).

    Ties go to the lowest tag index, as with ``max(dim)``. The max-plus
    recursion keeps scores as ``[T, B]``: each step is one broadcast sum
    ``[prev, next, B]`` and a max over its leading dim, a vectorised
    reduction (at 23 tags and batch 64, ~9x faster than ``max(dim)`` with
    indices over the last dim). Back-pointers are not stored: backtracking
    recomputes the argmax for the one chosen tag per row (``[B, T]`` per
    step). Rows run on past their end (padding emissions are zero, the
    scores stay finite or -inf) and are read at their own last token; no
    value is copied to the host. The search runs without autograd; when an
    input requires grad, the returned score is the differentiable
    :func:`sequence_score` of the best path."""
    emissions, mask = _prepare(emissions, mask)
    if emissions.shape[1] == 0:
        return mask.new_zeros((emissions.shape[0], 0), dtype=torch.long), emissions.new_zeros(emissions.shape[0])
    if _single_host_row(emissions, transitions, start, end):
        path, best = viterbi_numpy(_host(emissions[0]), int(mask[0].sum()), _host(transitions),
                                    _host(start), _host(end))
        return torch.from_numpy(path).unsqueeze(0), emissions.new_full((1,), float(best))
    with torch.no_grad():
        tags, best_score = _viterbi(emissions, mask, transitions, start, end)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (emissions, transitions, start, end)):
        best_score = sequence_score(emissions, tags, mask, transitions, start, end)
    return tags, best_score


def _viterbi(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor,
             end: Tensor) -> Tuple[Tensor, Tensor]:
    batch, length, n_tags = emissions.shape
    steps = emissions.permute(1, 2, 0).contiguous()  # [L, T, B]
    scores = torch.empty_like(steps)  # scores[t, j, b]: best prefix ending in tag j at t
    torch.add(steps[0], start.unsqueeze(1), out=scores[0])
    moves = transitions.unsqueeze(2)  # [prev, next, 1]
    for t in range(1, length):
        torch.add((scores[t - 1].unsqueeze(1) + moves).amax(dim=0), steps[t], out=scores[t])
    lengths = _lengths(mask)
    last_t = (lengths - 1).clamp(min=0)
    rows = torch.arange(batch, device=emissions.device)
    final = scores[last_t, :, rows]  # [B, T]: each row at its last token
    best_score, last_tag = (final + end).max(dim=1)
    best_score = torch.where(lengths > 0, best_score, best_score.new_zeros(()))
    # backtrack: at step t the tag of t-1 is the argmax over prev of
    # scores[t-1, prev] + transitions[prev, tag_t], for rows that reach t
    by_row = scores.transpose(1, 2).contiguous()  # [L, B, T]
    incoming = transitions.t().contiguous()  # [next, prev]
    reaches = mask.t()  # [L, B]
    current = last_tag
    path = [current]
    for t in range(length - 1, 0, -1):
        previous = (incoming.index_select(0, current) + by_row[t - 1]).argmax(dim=1)
        current = torch.where(reaches[t], previous, current)
        path.append(current)
    tags = torch.stack(path[::-1], dim=1)
    return tags.masked_fill(~mask, 0), best_score


def marginals(
    emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tensor:
    """Posterior probability of each tag at each token, ``[B, L, T]`` (0 at padding)."""
    emissions, mask = _prepare(emissions, mask)
    if emissions.shape[1] == 0:
        return emissions.new_zeros(emissions.shape)
    alphas = _forward(emissions, mask, transitions, start)
    betas = _backward(emissions, mask, transitions, end)
    log_z = _log_partition(alphas, mask, end)
    log_marg = torch.stack(alphas, dim=1) + torch.stack(betas, dim=1) - log_z[:, None, None]
    return log_marg.exp().masked_fill(~mask.unsqueeze(-1), 0.0)


def _as_bool(values: Union[Tensor, np.ndarray], like: Tensor) -> Tensor:
    """A bool tensor on ``like``'s device from a numpy array or tensor."""
    return torch.as_tensor(values, dtype=torch.bool, device=like.device)


def constrain(
    transitions: Tensor,
    start: Tensor,
    end: Tensor,
    allowed_start: Tensor,
    allowed_trans: Tensor,
    allowed_end: Tensor,
) -> Scores:
    """Effective scores with forbidden entries set to ``DISALLOWED`` (no gradient there).

    Masks are bool tensors or numpy arrays, True where a move is allowed.
    """
    return (
        torch.where(_as_bool(allowed_trans, transitions), transitions, DISALLOWED),
        torch.where(_as_bool(allowed_start, start), start, DISALLOWED),
        torch.where(_as_bool(allowed_end, end), end, DISALLOWED),
    )


def _check_masks(n_tags: int, allowed: Optional[Masks]) -> Tuple[Tensor, Tensor, Tensor]:
    """Allowed masks as bool tensors of the right shapes (all True if None)."""
    if allowed is None:
        ones = torch.ones(n_tags, dtype=torch.bool)
        return ones, torch.ones(n_tags, n_tags, dtype=torch.bool), ones.clone()
    start, trans, end = (torch.as_tensor(np.asarray(m), dtype=torch.bool) for m in allowed)
    expected = ((n_tags,), (n_tags, n_tags), (n_tags,))
    if (start.shape, trans.shape, end.shape) != expected:
        raise ValueError(
            f"allowed masks have shapes {tuple(start.shape)}, {tuple(trans.shape)}, "
            f"{tuple(end.shape)}; expected {expected} for n_tags={n_tags}"
        )
    return start, trans, end


class CRF(torch.nn.Module):
    """Learnable linear-chain CRF, optionally restricted to allowed moves.

    Scores start at zero (every path equally likely until trained). ``allowed``
    is ``(start[T], trans[T, T], end[T])`` bool masks as returned by
    ``spacy_mat.tags.allowed_transitions``; None allows everything. The masks
    are persistent buffers, so they travel with ``state_dict`` and ``.to()``.
    """

    def __init__(self, n_tags: int, allowed: Optional[Masks] = None) -> None:
        super().__init__()
        if n_tags < 1:
            raise ValueError(f"CRF needs at least one tag, got n_tags={n_tags}")
        self.n_tags = n_tags
        self.transitions = torch.nn.Parameter(torch.zeros(n_tags, n_tags))
        self.start_transitions = torch.nn.Parameter(torch.zeros(n_tags))
        self.end_transitions = torch.nn.Parameter(torch.zeros(n_tags))
        start, trans, end = _check_masks(n_tags, allowed)
        self.register_buffer("allowed_start", start)
        self.register_buffer("allowed_trans", trans)
        self.register_buffer("allowed_end", end)
        self._scores_cache: Optional[Tuple[tuple, Scores]] = None

    def scores(self, dtype: torch.dtype) -> Scores:
        """Constrained ``(transitions, start, end)`` in ``dtype``.

        In eval mode without autograd (prediction) they are cached, keyed by
        the storage and version counter of the parameters and masks; like the
        network's other prediction caches, :meth:`train` drops the cache
        (weights updated in place by thinc's optimizer go unseen by torch's
        version counters, and every training step calls ``train()``)."""
        if self.training or torch.is_grad_enabled():
            return self._constrained(dtype)
        tensors = (self.transitions, self.start_transitions, self.end_transitions,
                   self.allowed_start, self.allowed_trans, self.allowed_end)
        key = (dtype, weights_key(tensors))
        cached = getattr(self, "_scores_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self._constrained(dtype))
            self._scores_cache = cached
        return cached[1]

    def host_scores(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The constrained ``(transitions, start, end)`` as float32 numpy
        arrays (prediction: cached like :meth:`scores`), for the one-sentence
        numpy loops (:func:`viterbi_numpy`, :func:`span_log_probs_numpy`)."""
        with torch.no_grad():
            scores = self.scores(torch.float32)
        cached = getattr(self, "_host_scores", None)
        if cached is None or cached[0] is not scores:
            cached = self._host_scores = (scores, tuple(_host(t) for t in scores))
        return cached[1]  # type: ignore[return-value]

    def train(self, mode: bool = True) -> "CRF":
        self._scores_cache = None
        return super().train(mode)

    def _constrained(self, dtype: torch.dtype) -> Scores:
        return constrain(
            self.transitions.to(dtype),
            self.start_transitions.to(dtype),
            self.end_transitions.to(dtype),
            self.allowed_start,
            self.allowed_trans,
            self.allowed_end,
        )

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor,
            partial: Optional[bool] = None) -> Tensor:
        """Negative log-likelihood of the gold paths, ``[B]``. Tags ``< 0`` mark
        unknown tokens (missing annotation): rows with any are scored with the
        partial-label likelihood (:func:`partial_log_likelihood`).
        ``partial``: whether any tag is unknown, if the caller knows (e.g.
        from the host's gold arrays); None reads the tags, a host sync on an
        accelerator."""
        if partial is None:
            partial = bool((tags < 0).any())
        if partial:
            return -partial_log_likelihood(emissions, tags, mask, *self.scores(emissions.dtype))
        return -self.sequence_log_prob(emissions, tags, mask)

    def sequence_log_prob(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Log-probability of the given paths, ``[B]``."""
        return log_likelihood(emissions, tags, mask, *self.scores(emissions.dtype))

    def decode(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Best allowed path per row, ``[B, L]`` long, 0 at padding."""
        return viterbi_decode(emissions, mask, *self.scores(emissions.dtype))[0]

    def marginals(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Posterior tag probabilities, ``[B, L, T]``, 0 at padding."""
        return marginals(emissions, mask, *self.scores(emissions.dtype))

    def span_log_probs(self, emissions: Tensor, mask: Tensor, rows: Tensor, starts: Tensor,
                       ends: Tensor, begin_tags: Tensor, inside_tags: Tensor) -> Tensor:
        """Log marginal probability of each labelled span, ``[N]`` (see :func:`span_log_probs`)."""
        return span_log_probs(emissions, mask, *self.scores(emissions.dtype), rows, starts, ends,
                              begin_tags, inside_tags)



# -- per-token constraints, partial labels and span probabilities ---------------
# (constrained decoding of preset entities, training on missing annotation,
# per-entity confidence scores)

def restrict_emissions(emissions: Tensor, allowed: Tensor) -> Tensor:
    """Emissions with the tags not in ``allowed`` (bool ``[B, L, T]``, True =
    allowed) scored ``DISALLOWED``: Viterbi, the partition function and the
    marginals of the result see only paths through allowed tags (exactly, as
    long as each row has one allowed path)."""
    if allowed.shape != emissions.shape:
        raise ValueError(f"allowed tags shape {tuple(allowed.shape)} does not match emissions "
                         f"{tuple(emissions.shape)}")
    return emissions.masked_fill(~allowed.bool(), DISALLOWED)


def known_tags_mask(tags: Tensor, mask: Tensor, n_tags: int) -> Tensor:
    """``[B, L, T]`` bool: at a token whose tag is known (``tags >= 0``) only
    that tag; at an unknown token (``tags < 0``) or at padding every tag."""
    known = (tags >= 0) & mask.bool()
    one_hot = torch.nn.functional.one_hot(tags.long().clamp(min=0), n_tags).bool()
    return ~known.unsqueeze(-1) | one_hot


def partial_log_likelihood(
    emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor
) -> Tensor:
    """Log-probability that the path agrees with the known tags, per row ``[B]``:
    ``log sum_{paths consistent with tags} exp(score) - log Z``, where
    ``tags < 0`` marks a token whose tag is unknown (missing annotation).
    Rows with every tag known give :func:`log_likelihood`; rows with no known
    tag give exactly 0 (no loss, no gradient)."""
    emissions, mask = _prepare(emissions, mask)
    if tags.shape != mask.shape:
        raise ValueError(f"tags shape {tuple(tags.shape)} does not match mask {tuple(mask.shape)}")
    allowed = known_tags_mask(tags, mask, emissions.shape[2])
    consistent = log_partition(restrict_emissions(emissions, allowed), mask, transitions, start, end)
    total = log_partition(emissions, mask, transitions, start, end)
    any_known = ((tags >= 0) & mask).any(dim=1)
    return torch.where(any_known, consistent - total, emissions.new_zeros(()))


def _backward_fast(emissions: Tensor, mask: Tensor, transitions: Tensor, end: Tensor) -> List[Tensor]:
    """:func:`_backward` with one ``[B, T] @ [T, T]`` product per step (both
    factors shifted by their maxima, as in ``_forward_matmul``); falls back
    to the exact log-space recursion should anything underflow."""
    if emissions.device.type != "cpu" or _single_host_row(emissions, transitions, end):
        # no host check of the result on an accelerator (a device sync);
        # one host row takes _backward's numpy loop
        return _backward(emissions, mask, transitions, end)
    shift = transitions.detach().max()
    exp_trans_t = (transitions - shift).exp().t().contiguous()
    beta = end.expand(emissions.shape[0], -1)
    betas = [beta]
    for t in range(emissions.shape[1] - 2, -1, -1):
        nxt = emissions[:, t + 1] + beta
        top = nxt.detach().amax(dim=1, keepdim=True)
        step = torch.mm((nxt - top).exp(), exp_trans_t).log() + top + shift
        beta = torch.where(mask[:, t + 1 : t + 2], step, beta)
        betas.append(beta)
    if not bool(torch.stack(betas).isfinite().all()):
        return _backward(emissions, mask, transitions, end)
    return betas[::-1]


def span_log_probs(
    emissions: Tensor,
    mask: Tensor,
    transitions: Tensor,
    start: Tensor,
    end: Tensor,
    rows: Tensor,
    starts: Tensor,
    ends: Tensor,
    begin_tags: Tensor,
    inside_tags: Tensor,
) -> Tensor:
    """Log marginal probability of labelled spans, ``[N]``.

    Span n is ``(rows[n], starts[n], ends[n])`` (end exclusive) with tag
    ``begin_tags[n]`` at its first token and ``inside_tags[n]`` at the others:
    the probability that ``tags[s] = B, tags[s+1:e] = I`` and that the span
    ends there (``tags[e] != I``, or ``e`` is the row's length), i.e. that the
    CRF labels exactly this entity. Computed from the forward and backward
    scores (forward-backward over the lattice of ``emissions``: pass
    :func:`restrict_emissions` output for probabilities conditioned on
    constraints)."""
    emissions, mask = _prepare(emissions, mask)
    if emissions.shape[1] == 0 or rows.numel() == 0:
        return emissions.new_zeros(rows.shape[0])
    if _single_host_row(emissions, transitions, start, end) and rows.device.type == "cpu":
        columns = [c.long().numpy() for c in (rows, starts, ends, begin_tags, inside_tags)]
        out = span_log_probs_numpy(_host(emissions[0]), int(mask[0].sum()), _host(transitions),
                                    _host(start), _host(end), *columns)
        return torch.from_numpy(out).to(emissions.dtype)
    rows, starts, ends = rows.long(), starts.long(), ends.long()
    begin_tags, inside_tags = begin_tags.long(), inside_tags.long()
    lengths = _lengths(mask)
    if bool((starts < 0).any() | (ends <= starts).any() | (ends > lengths[rows]).any()):
        raise ValueError("span_log_probs: spans must satisfy 0 <= start < end <= row length")
    alpha_steps = _forward(emissions, mask, transitions, start)
    alphas = torch.stack(alpha_steps, dim=1)  # [B, L, T]
    betas = torch.stack(_backward_fast(emissions, mask, transitions, end), dim=1)
    log_z = _log_partition(alpha_steps, mask, end)
    enter = alphas[rows, starts, begin_tags]
    # emissions of the inside tag at tokens s+1 .. e-1, from prefix sums (float64)
    prefix = torch.nn.functional.pad(emissions.double().cumsum(dim=1), (0, 0, 1, 0))
    inside_sum = (prefix[rows, ends, inside_tags] - prefix[rows, starts + 1, inside_tags]).to(emissions.dtype)
    n_inside = (ends - starts - 1).to(emissions.dtype)
    stay = torch.where(
        n_inside > 0,
        transitions[begin_tags, inside_tags] + (n_inside - 1).clamp(min=0) * transitions[inside_tags, inside_tags]
        + inside_sum,
        emissions.new_zeros(()),
    )
    last = torch.where(ends - starts > 1, inside_tags, begin_tags)
    at_end = ends >= lengths[rows]
    nxt = ends.clamp(max=emissions.shape[1] - 1)
    leave = transitions[last] + emissions[rows, nxt] + betas[rows, nxt]  # [N, T]
    leave = leave.scatter(1, inside_tags.unsqueeze(1), float("-inf"))
    exit_score = torch.where(at_end, end[last], torch.logsumexp(leave, dim=1))
    return enter + stay + exit_score - log_z[rows]


def _scaled_recursions(e: np.ndarray, trans: np.ndarray, start: np.ndarray,
                       end: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Forward and backward log-scores ``[n, T]`` of one row of ``n >= 1``
    tokens in float64 probability space (one ``[T] @ [T, T]`` product per
    step, each step rescaled by its maximum; the logs are taken once at the
    end). A forbidden move (-1e4) becomes exactly 0, as it is ~0 in log
    space. None if a step underflows to all zeros (a row scoring over ~700
    nats apart within one token): the caller then takes the log-space loops."""
    n = e.shape[0]
    shift = trans.max()
    moves = np.exp(trans - shift)
    top = e.max(axis=1, keepdims=True)
    weights = np.exp(e - top)
    alpha, beta = np.empty_like(e), np.empty_like(e)
    log_alpha, log_beta = np.empty(n), np.empty(n)
    a = np.exp(start - start.max()) * weights[0]
    scale = a.max()
    log_scale = start.max() + top[0, 0] + np.log(scale)
    alpha[0], log_alpha[0] = a / scale, log_scale
    for t in range(1, n):
        a = (alpha[t - 1] @ moves) * weights[t]
        scale = a.max()
        if not scale > 0:
            return None
        log_scale += shift + top[t, 0] + np.log(scale)
        alpha[t], log_alpha[t] = a / scale, log_scale
    b = np.exp(end - end.max())
    log_scale = end.max()
    beta[n - 1], log_beta[n - 1] = b, log_scale
    for t in range(n - 2, -1, -1):
        b = moves @ (weights[t + 1] * beta[t + 1])
        scale = b.max()
        if not scale > 0:
            return None
        log_scale += shift + top[t + 1, 0] + np.log(scale)
        beta[t], log_beta[t] = b / scale, log_scale
    with np.errstate(divide="ignore"):
        return np.log(alpha) + log_alpha[:, None], np.log(beta) + log_beta[:, None]


def _logsumexp_np(x: np.ndarray) -> float:
    top = x.max()
    if not np.isfinite(top):
        return float(top)
    return float(top + np.log(np.exp(x - top).sum()))


def span_log_probs_numpy(e: np.ndarray, n: int, trans: np.ndarray, start: np.ndarray, end: np.ndarray,
                          rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, begin_tags: np.ndarray,
                          inside_tags: np.ndarray) -> np.ndarray:
    """:func:`span_log_probs` of one row of ``n`` tokens (``rows`` all 0) in
    float64 numpy: serving one sentence, free of torch's per-operation cost."""
    if (rows != 0).any() or (starts < 0).any() or (ends <= starts).any() or (ends > n).any():
        raise ValueError("span_log_probs: spans must satisfy 0 <= start < end <= row length")
    e, trans = e[:n].astype(np.float64), trans.astype(np.float64)
    start, end = start.astype(np.float64), end.astype(np.float64)
    recursions = _scaled_recursions(e, trans, start, end)
    if recursions is None:
        alphas = _forward_numpy(e, n, trans, start)
        betas = _backward_numpy(e, n, trans, end)
    else:
        alphas, betas = recursions
    log_z = _logsumexp_np(alphas[n - 1] + end)
    prefix = np.concatenate([np.zeros((1, e.shape[1])), np.cumsum(e, axis=0)])
    out = np.empty(len(starts))
    for k, (s, stop, b, i) in enumerate(zip(starts.tolist(), ends.tolist(), begin_tags.tolist(),
                                            inside_tags.tolist())):
        score = alphas[s, b]
        if stop - s > 1:
            score += trans[b, i] + (stop - s - 2) * trans[i, i] + prefix[stop, i] - prefix[s + 1, i]
        last = i if stop - s > 1 else b
        if stop >= n:
            score += end[last]
        else:
            leave = trans[last] + e[stop] + betas[stop]
            leave[i] = -np.inf
            score += _logsumexp_np(leave)
        out[k] = score - log_z
    return out
