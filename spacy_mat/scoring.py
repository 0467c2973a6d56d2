"""Scores in spaCy's standard keys for the component's targets."""
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

from spacy.scorer import Scorer, get_ner_prf
from spacy.training import Example
from spacy.util import registry

ENTS = "ents"
SPANS_PREFIX = "spans:"
DEFAULT_SPANS_KEY = "chunks"


def parse_target(target: str) -> Tuple[str, str]:
    """``"ents"`` -> ``("ents", "")``; ``"spans:KEY"`` (or ``"spans"``) -> ``("spans", KEY)``."""
    if target == ENTS:
        return ENTS, ""
    if target == "spans":
        return "spans", DEFAULT_SPANS_KEY
    if target.startswith(SPANS_PREFIX) and len(target) > len(SPANS_PREFIX):
        return "spans", target[len(SPANS_PREFIX):]
    raise ValueError(f"invalid target {target!r}: use 'ents' or 'spans:KEY' (e.g. 'spans:chunks')")


def score_target(examples: Iterable[Example], target: str = ENTS,
                 targets: Optional[Sequence[str]] = None, **kwargs: Any) -> Dict[str, Any]:
    """``ents_p/r/f/per_type`` for ``ents``; ``spans_KEY_p/r/f/per_type`` for
    spans. With ``targets`` (a multi-task tagger), the union of every
    target's scores."""
    if targets:
        examples = list(examples)
        scores: Dict[str, Any] = {}
        for t in targets:
            scores.update(score_target(examples, t))
        return scores
    kind, key = parse_target(target)
    if kind == ENTS:
        return get_ner_prf(examples)
    return Scorer.score_spans(
        examples,
        attr=f"spans_{key}",
        getter=lambda doc, attr: doc.spans.get(key, []),
        has_annotation=lambda doc: key in doc.spans,
        labeled=True,
        allow_overlap=False,
    )


@registry.scorers("spacy_mat.tagger_scorer.v1")
def make_tagger_scorer() -> Callable[..., Dict[str, Any]]:
    return score_target
