"""Registered training schedules and callbacks."""
from typing import Any, Callable, Dict, Iterator

from spacy.util import registry


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


@registry.callbacks("spacy_mat.adversarial_schedule.v1")
def adversarial_schedule(warmup_steps: int = 0, ramp_steps: int = 0) -> Callable[[Any, Dict[str, Any]], None]:
    """A ``[training.before_update]`` callback driving the adversarial term.

    For the first ``warmup_steps`` steps the adversarial loss is off (and its
    pass is skipped); over the next ``ramp_steps`` its weight grows linearly to
    the configured ``weight``. The defaults (0, 0) are the paper's behaviour.
    """
    if warmup_steps < 0 or ramp_steps < 0:
        raise ValueError("adversarial_schedule: warmup_steps and ramp_steps must be >= 0")

    def before_update(nlp: Any, args: Dict[str, Any]) -> None:
        scale = adversarial_scale(args["step"], warmup_steps, ramp_steps)
        for _, pipe in nlp.pipeline:
            model = getattr(pipe, "model", None)
            if model is not None and "adversarial_scale" in getattr(model, "attrs", {}):
                model.attrs["adversarial_scale"] = scale

    return before_update


def adversarial_scale(step: int, warmup_steps: int, ramp_steps: int) -> float:
    """0 during warm-up, then a linear ramp over ``ramp_steps`` steps to 1."""
    if step < warmup_steps:
        return 0.0
    if ramp_steps == 0:
        return 1.0
    return min(1.0, (step - warmup_steps + 1) / ramp_steps)
