"""Registered training schedules and callbacks."""
from typing import Iterator

from thinc.api import registry


@registry.schedules("spacy_mat.exponential_decay.v1")
def exponential_decay(base_rate: float, decay: float, decay_steps: int = 1, *,
                      t: int = 0) -> Iterator[float]:
    """``base_rate * decay ** (t / decay_steps)`` for t = 0, 1, 2, ...

    With ``decay_steps`` = steps per epoch this is the per-epoch decay of the
    paper (lr 0.0006, decay 0.992), applied smoothly at every step.
    """
    if decay_steps < 1:
        raise ValueError(f"exponential_decay: decay_steps must be >= 1, got {decay_steps}")
    while True:
        yield base_rate * decay ** (t / decay_steps)
        t += 1
