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
NORM_EPS = 1e-6
GRAD_EPS = 1e-12


@dataclass(frozen=True)
class AdversarialSettings:
    """The ``adversarial`` block of the model config (paper defaults).

    mode: ``none`` (plain CRF loss), ``at`` (perturbed inputs), ``masking``
    (masked/replaced inputs, no perturbation) or ``mat`` (both).
    mu, sigma: Gaussian over the embedding distance for ``similarity``
    substitutes; ``None`` means mu = 0 and sigma = the standard deviation of
    the distances from the replaced word to the vocabulary.
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
    softmax_over: str = "log_density"

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
    if total > 0:
        weights = (counts / total).to(table.dtype)
    else:
        weights = torch.full_like(counts, 1.0 / len(counts), dtype=table.dtype)
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
                 generator: Optional[torch.Generator] = None) -> MaskingPlan:
    """Select each non-empty sentence with rate ``select_rate``; pick one token
    uniformly in each; mask it with rate ``mask_rate``, else replace it."""
    device = lengths.device
    draw = lambda n: torch.rand(n, generator=generator, device=device)
    selected = (draw(len(lengths)) < select_rate) & (lengths > 0)
    rows = selected.nonzero(as_tuple=True)[0]
    positions = (draw(len(rows)) * lengths[rows]).long().clamp_max(lengths[rows] - 1)
    masked = draw(len(rows)) < mask_rate
    return MaskingPlan(rows, positions, masked)


# -- substitute sampling ---------------------------------------------------------------

def candidate_mask(vocab_size: int, originals: Tensor, n_special: int) -> Tensor:
    """``[K, V]`` bool: every ordinary word except the original itself."""
    allowed = torch.ones(len(originals), vocab_size, dtype=torch.bool, device=originals.device)
    allowed[:, :n_special] = False
    allowed[torch.arange(len(originals), device=originals.device), originals] = False
    return allowed


def similarity_probs(vectors: Tensor, originals: Tensor, n_special: int, *,
                     mu: Optional[float] = None, sigma: Optional[float] = None,
                     softmax_over: str = "log_density") -> Tensor:
    """``[K, V]`` substitute probabilities for words ``originals``.

    s_ij is the Euclidean distance between the (un-normalised) vectors of
    word i and candidate j; its score is the Gaussian N(s_ij; mu, sigma^2),
    normalised over the candidates by a softmax over the log-density
    (p ∝ density) or over the density values (see AdversarialSettings).
    """
    vectors = vectors.detach()
    dist = torch.cdist(vectors[originals], vectors)  # [K, V]
    allowed = candidate_mask(vectors.shape[0], originals, n_special)
    mu_t = torch.zeros(len(originals), 1, dtype=dist.dtype, device=dist.device)
    if mu is not None:
        mu_t += mu
    if sigma is not None:
        sigma_t = torch.full_like(mu_t, sigma)
    else:
        masked_dist = dist.masked_fill(~allowed, float("nan"))
        sigma_t = _nanstd(masked_dist).clamp_min(GRAD_EPS)[:, None]
    log_density = (-0.5 * ((dist - mu_t) / sigma_t).pow(2) - torch.log(sigma_t)
                   - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=dist.dtype)))
    logits = log_density if softmax_over == "log_density" else log_density.exp()
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=1)


def random_probs(vocab_size: int, originals: Tensor, n_special: int, dtype=torch.float32) -> Tensor:
    """``[K, V]`` uniform probabilities over the ordinary words but the original."""
    allowed = candidate_mask(vocab_size, originals, n_special).to(dtype)
    return allowed / allowed.sum(dim=1, keepdim=True)


def sample_substitutes(probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One draw per row of ``probs`` ``[K, V]``."""
    if probs.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _nanstd(x: Tensor) -> Tensor:
    mean = torch.nanmean(x, dim=1, keepdim=True)
    return torch.sqrt(torch.nanmean((x - mean).pow(2), dim=1))
