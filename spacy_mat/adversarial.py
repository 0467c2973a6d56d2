"""The math of (masked) adversarial training, as pure torch functions.

* embedding normalisation with frequency-weighted moments (Miyato et al. 2017);
* the adversarial perturbation ``d = delta * g / ||g||_2`` per sequence;
* MAT's sentence/token selection and masking decisions;
* the substitute-word samplers ("similarity": Gaussian over embedding
  distance, normalised by a softmax; "random": uniform).

Nothing here knows about spaCy, thinc or the network's layout.
"""
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

MODES = ("none", "at", "masking", "mat")
REPLACEMENTS = ("similarity", "random")
SOFTMAX_OVER = ("log_density", "density")
CANDIDATES = ("train", "all")
MASK_TOKENS = ("mask", "unk")
NORM_EPS = 1e-6
GRAD_EPS = 1e-12


@dataclass(frozen=True)
class AdversarialSettings:
    """The ``adversarial`` block of the model config (paper defaults).

    mode: ``none`` (plain CRF loss), ``at`` (perturbed inputs), ``masking``
    (masked/replaced inputs, no perturbation) or ``mat`` (both).
    mu, sigma: Gaussian over the embedding distance for ``similarity``
    substitutes, fixed values; ``None`` takes them per replaced word from its
    distances to the candidates: mu = their ``mu_quantile`` quantile (0 when
    ``mu_quantile`` is null, the pre-0.2 behaviour, which collapses onto the
    nearest neighbour) and sigma = their ``sigma_quantile`` quantile minus mu
    (their standard deviation when ``sigma_quantile`` is null).
    candidates: ``train`` (the words seen in training) or ``all`` (every row
    of the word table, pretrained-only words included).
    exclude_case_variants: never substitute a word by one of its casing
    variants ("GERMANY" for "Germany"): they share one pretrained vector, so
    at distance 0 they took most of the similarity sampler's mass.
    mask_context: whether MAT's masked/replaced words are also masked in the
    contextual features' input (re-encoding those sentences); the paper's
    eq. 7 keeps the contextual features η of the clean sentence (false).

    Extensions (not in the paper; their defaults are the paper's MAT):
    entity_selection: the rate at which the selected sentence's changed token
    is drawn among its gold entity (non-O) tokens instead of all tokens.
    mask_token: ``mask`` (the paper's ``<Mask>``) or ``unk`` (the ``<UNK>``
    word id with the word's own characters: test time's unknown word).
    case_augmentation: the share of sentences lowercased in the adversarial
    pass (a tagger trained on cased text otherwise collapses on lowercase).
    mask_span: a masked token inside a gold span (entity or chunk) takes the
    whole span with it (every token of the span masked the same way); off,
    only the one token is masked (the paper).
    softmax_over: ``log_density`` samples with probability proportional to the
    Gaussian density; ``density`` applies the softmax to the density values
    themselves (much flatter).
    """

    mode: str = "none"
    delta_word: float = 0.4
    delta_char: float = 0.2
    weight: float = 0.6
    select_rate: float = 0.06
    mask_rate: float = 0.9
    replacement: str = "similarity"
    mu: Optional[float] = None
    sigma: Optional[float] = None
    mu_quantile: Optional[float] = None
    sigma_quantile: Optional[float] = None
    softmax_over: str = "log_density"
    candidates: str = "train"
    exclude_case_variants: bool = True
    mask_context: bool = False
    # extensions beyond the paper (off = the paper's MAT)
    entity_selection: float = 0.0
    mask_token: str = "mask"
    case_augmentation: float = 0.0
    mask_span: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, f"mode must be one of {MODES}"),
            (self.replacement in REPLACEMENTS, f"replacement must be one of {REPLACEMENTS}"),
            (self.softmax_over in SOFTMAX_OVER, f"softmax_over must be one of {SOFTMAX_OVER}"),
            (self.delta_word >= 0 and self.delta_char >= 0, "delta_word/delta_char must be >= 0"),
            (self.weight >= 0, "weight must be >= 0"),
            (0 <= self.select_rate <= 1 and 0 <= self.mask_rate <= 1,
             "select_rate and mask_rate must be in [0, 1]"),
            (self.sigma is None or self.sigma > 0, "sigma must be > 0 (or null)"),
            (all(q is None or 0 <= q <= 1 for q in (self.mu_quantile, self.sigma_quantile)),
             "mu_quantile/sigma_quantile must be in [0, 1] (or null)"),
            (self.candidates in CANDIDATES, f"candidates must be one of {CANDIDATES}"),
            (0 <= self.entity_selection <= 1 and 0 <= self.case_augmentation <= 1,
             "entity_selection and case_augmentation must be in [0, 1]"),
            (self.mask_token in MASK_TOKENS, f"mask_token must be one of {MASK_TOKENS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"adversarial settings: {message}; got {self}")

    @classmethod
    def from_config(cls, block: Optional[Dict[str, Any]]) -> "AdversarialSettings":
        block = dict(block or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"adversarial settings: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**block)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def perturbs(self) -> bool:
        return self.mode in ("at", "mat")

    @property
    def masks(self) -> bool:
        return self.mode in ("masking", "mat")


# -- normalisation -----------------------------------------------------------------

def weighted_moments(table: Tensor, counts: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation of ``table`` rows ``[V, D]``
    weighted by ``counts`` ``[V]`` (uniform when all counts are zero)."""
    total = counts.sum()
    # chosen on the device: `if total > 0` would be a host sync every step
    weights = torch.where(total > 0, counts / total.clamp(min=1e-30),
                          torch.full_like(counts, 1.0 / len(counts))).to(table.dtype)
    mean = weights @ table
    var = weights @ (table - mean).pow(2)
    return mean, torch.sqrt(var + NORM_EPS)


# -- perturbation -------------------------------------------------------------------

def perturbation(grad: Tensor, delta: float) -> Tensor:
    """``delta * g / ||g||_2`` with the norm over everything but the batch
    dimension (one norm per sequence); zero where the gradient is zero.
    Returns a tensor with no autograd history."""
    g = grad.detach()
    norms = g.reshape(g.shape[0], -1).norm(dim=1)
    scale = torch.where(norms > GRAD_EPS, delta / norms.clamp_min(GRAD_EPS), torch.zeros_like(norms))
    return g * scale.reshape((-1,) + (1,) * (g.dim() - 1))


# -- masking ---------------------------------------------------------------------------

class MaskingPlan(NamedTuple):
    """Which sentences are changed, at which token, and how."""

    rows: Tensor  # [K] long: selected sentences
    positions: Tensor  # [K] long: token index in each selected sentence
    masked: Tensor  # [K] bool: True = <Mask>, False = substitute word


def plan_masking(lengths: Tensor, select_rate: float, mask_rate: float,
                 generator: Optional[torch.Generator] = None,
                 preferred: Optional[Tensor] = None, prefer_rate: float = 0.0) -> MaskingPlan:
    """Select each non-empty sentence with rate ``select_rate``; pick one token
    uniformly in each; mask it with rate ``mask_rate``, else replace it.

    With ``preferred`` ``[B, L]`` bool and ``prefer_rate`` > 0, a selected
    sentence that has preferred tokens (within its length) takes its token
    uniformly among them at rate ``prefer_rate``."""
    device = lengths.device
    draw = lambda n: torch.rand(n, generator=generator, device=device)
    selected = (draw(len(lengths)) < select_rate) & (lengths > 0)
    rows = selected.nonzero(as_tuple=True)[0]
    positions = (draw(len(rows)) * lengths[rows]).long().clamp_max(lengths[rows] - 1)
    masked = draw(len(rows)) < mask_rate
    if preferred is not None and prefer_rate > 0 and len(rows):
        within = torch.arange(preferred.shape[1], device=device)[None, :] < lengths[rows][:, None]
        pref = preferred[rows] & within
        use = pref.any(dim=1) & (draw(len(rows)) < prefer_rate)
        if bool(use.any()):
            picks = torch.multinomial(pref[use].float(), 1, generator=generator).squeeze(1)
            positions = positions.clone()
            positions[use] = picks
    return MaskingPlan(rows, positions, masked)


def span_continuation(gold: Tensor, inside: Tensor, kind: Tensor) -> Tensor:
    """``[B, L]`` bool: token ``i`` continues the gold span of token ``i-1``.

    ``gold`` ``[B, L]`` holds tag ids (negative = unknown, read as ``O``);
    ``inside[t]`` is True for the ``I-X`` tags and ``kind[t]`` gives the span
    type of tag ``t`` (-1 for ``O``). As in conlleval, ``I-X`` continues only
    a token of type X; after ``O`` or another type it starts a span."""
    tags = gold.clamp_min(0)
    inside, kind = inside.to(tags.device), kind.to(tags.device)
    out = torch.zeros_like(tags, dtype=torch.bool)
    if tags.shape[1] > 1:
        here, before = tags[:, 1:], tags[:, :-1]
        known = (gold[:, 1:] >= 0) & (gold[:, :-1] >= 0)
        out[:, 1:] = known & inside[here] & (kind[here] == kind[before]) & (kind[before] >= 0)
    return out


def expand_to_spans(plan: MaskingPlan, continuation: Tensor, lengths: Tensor) -> MaskingPlan:
    """``plan`` with each masked token replaced by every token of its span
    (the maximal run that ``continuation`` ``[B, L]`` links, within the
    sentence length); substituted tokens and tokens outside spans stay
    single. Masked entries come first in the result, then substitutes."""
    masked = plan.masked
    rows, positions = plan.rows[masked], plan.positions[masked]
    if len(rows) == 0:
        return plan
    continuation = continuation.to(rows.device)
    width = continuation.shape[1]
    within = torch.arange(width, device=rows.device)[None, :] < lengths.to(rows.device)[:, None]
    segment = torch.cumsum((~continuation).long(), dim=1)  # one id per span (or lone token) in a row
    picked = segment[rows, positions]
    same = (segment[rows] == picked[:, None]) & within[rows]
    k, cols = same.nonzero(as_tuple=True)
    keep = ~masked
    return MaskingPlan(torch.cat([rows[k], plan.rows[keep]]),
                       torch.cat([cols, plan.positions[keep]]),
                       torch.cat([masked.new_ones(len(k)), masked.new_zeros(int(keep.sum()))]))


# -- substitute sampling ---------------------------------------------------------------

def candidate_mask(vocab_size: int, originals: Tensor, n_special: int,
                   groups: Optional[Tensor] = None, query_groups: Optional[Tensor] = None) -> Tensor:
    """``[K, V]`` bool: every ordinary word except the original itself (an
    original id ``>= vocab_size``, outside the candidates, excludes nothing)
    and, given ``groups`` ``[V]`` and ``query_groups`` ``[K]`` (e.g. the id of
    each word's lowercase form), except the candidates in the original's group."""
    allowed = torch.ones(len(originals), vocab_size, dtype=torch.bool, device=originals.device)
    allowed[:, :n_special] = False
    # the original itself is out (no nonzero(): its size would be read on the host)
    rows = torch.arange(len(originals), device=originals.device)
    cols = originals.clamp(max=vocab_size - 1)
    allowed[rows, cols] = allowed[rows, cols] & (originals >= vocab_size)
    if groups is not None and query_groups is not None:
        allowed &= groups[None, :] != query_groups[:, None]
    return allowed


def similarity_probs(vectors: Tensor, originals: Tensor, n_special: int, *,
                     mu: Optional[float] = None, sigma: Optional[float] = None,
                     mu_quantile: Optional[float] = None, sigma_quantile: Optional[float] = None,
                     softmax_over: str = "log_density",
                     queries: Optional[Tensor] = None, groups: Optional[Tensor] = None,
                     query_groups: Optional[Tensor] = None) -> Tensor:
    """``[K, V]`` substitute probabilities for words ``originals``.

    ``vectors`` ``[V, D]`` are the candidate words' (un-normalised) vectors;
    ``queries`` ``[K, D]`` the replaced words' (default ``vectors[originals]``;
    needed when an original is not among the candidates). s_ij is the
    Euclidean distance between word i and candidate j; its score is the
    Gaussian N(s_ij; mu_i, sigma_i^2), normalised over the candidates by a
    softmax over the log-density (p ∝ density) or over the density values
    (see AdversarialSettings). ``groups``/``query_groups``: see
    :func:`candidate_mask`.

    mu_i: ``mu`` if given, else the ``mu_quantile`` quantile of row i's
    distances to the candidates, else 0. sigma_i: ``sigma`` if given, else
    (with ``sigma_quantile``) the ``sigma_quantile`` quantile of row i's
    distances minus mu_i, else the standard deviation of row i's distances.
    """
    vectors = vectors.detach()
    queries = vectors[originals] if queries is None else queries.detach()
    dist = torch.cdist(queries, vectors)  # [K, V]
    allowed = candidate_mask(vectors.shape[0], originals, n_special, groups, query_groups)
    masked_dist = dist.masked_fill(~allowed, float("nan"))
    mu_t = torch.zeros(len(originals), 1, dtype=dist.dtype, device=dist.device)
    if mu is not None:
        mu_t += mu
    elif mu_quantile is not None and len(originals):
        mu_t = torch.nanquantile(masked_dist, mu_quantile, dim=1, keepdim=True)
    if sigma is not None:
        sigma_t = torch.full_like(mu_t, sigma)
    elif sigma_quantile is not None and len(originals):
        upper = torch.nanquantile(masked_dist, sigma_quantile, dim=1, keepdim=True)
        sigma_t = (upper - mu_t).clamp_min(GRAD_EPS)
    else:
        sigma_t = _nanstd(masked_dist).clamp_min(GRAD_EPS)[:, None]
    log_density = (-0.5 * ((dist - mu_t) / sigma_t).pow(2) - torch.log(sigma_t)
                   - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=dist.dtype)))
    logits = log_density if softmax_over == "log_density" else log_density.exp()
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)


def effective_support(probs: Tensor) -> Tensor:
    """``exp(entropy)`` of each row of ``probs`` ``[K, V]``: the number of
    equally likely substitutes that would have the same entropy."""
    logp = torch.where(probs > 0, probs.log(), torch.zeros_like(probs))
    return torch.exp(-(probs * logp).sum(dim=1))


def random_probs(vocab_size: int, originals: Tensor, n_special: int, dtype=torch.float32,
                 groups: Optional[Tensor] = None, query_groups: Optional[Tensor] = None) -> Tensor:
    """``[K, V]`` uniform probabilities over the ordinary words but the
    original (and its group, see :func:`candidate_mask`)."""
    allowed = candidate_mask(vocab_size, originals, n_special, groups, query_groups).to(dtype)
    return allowed / allowed.sum(dim=1, keepdim=True)


def sample_substitutes(probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One draw per row of ``probs`` ``[K, V]``."""
    if probs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _nanstd(x: Tensor) -> Tensor:
    mean = torch.nanmean(x, dim=1, keepdim=True)
    return torch.sqrt(torch.nanmean((x - mean).pow(2), dim=1))
