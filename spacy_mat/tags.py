"""Tag schemes: BIO (IOB2) / IOB1 tag sequences <-> labelled spans, and the
transition constraints that keep a CRF from decoding an invalid BIO sequence.

Chunk semantics follow the CoNLL ``conlleval`` script, so that IOB1 and IOB2
input give the same spans and so do invalid sequences:

* ``B-X`` always starts a chunk of type X;
* ``I-X`` continues the open chunk if it has type X, otherwise (after ``O``,
  after another type, or at the start of a sentence) it starts a new chunk;
* ``O`` closes any open chunk; so does the end of the sequence.
"""
from typing import Iterable, List, Sequence, Tuple

import numpy as np

OUTSIDE = "O"
PREFIXES = ("B", "I")

Span = Tuple[int, int, str]  # (start, end exclusive, label)


class TagError(ValueError):
    """A tag string that is not ``O``, ``B-TYPE`` or ``I-TYPE``."""


def parse_tag(tag: str) -> Tuple[str, str]:
    """Split a tag into ``(prefix, type)``; ``O`` gives ``("O", "")``.

    Raises TagError for anything else, e.g. ``B-`` (no type), ``X-PER``
    (unknown prefix) or ``PER`` (no prefix).
    """
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, sep, label = tag.partition("-")
    if not sep:
        raise TagError(f"invalid tag {tag!r}: expected 'O', 'B-TYPE' or 'I-TYPE'")
    if prefix not in PREFIXES:
        raise TagError(
            f"invalid tag {tag!r}: unknown prefix {prefix!r} (use 'B-' or 'I-')"
        )
    if not label:
        raise TagError(f"invalid tag {tag!r}: missing entity/chunk type after '{prefix}-'")
    return prefix, label


def tags_to_spans(tags: Sequence[str]) -> List[Span]:
    """Spans of an IOB1 or IOB2 tag sequence, with conlleval's semantics."""
    spans: List[Span] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        prefix, kind = parse_tag(tag)
        continues = prefix == "I" and start >= 0 and kind == label
        if start >= 0 and not continues:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix != OUTSIDE and not continues:
            start, label = i, kind
    if start >= 0:
        spans.append((start, len(tags), label))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int) -> List[str]:
    """IOB2 tags of ``length`` tokens for non-overlapping spans."""
    tags = [OUTSIDE] * length
    for start, end, label in spans:
        if not (0 <= start < end <= length):
            raise ValueError(f"span ({start}, {end}, {label!r}) out of range for {length} tokens")
        if any(t != OUTSIDE for t in tags[start:end]):
            raise ValueError(f"span ({start}, {end}, {label!r}) overlaps another span")
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def iob1_to_iob2(tags: Sequence[str]) -> List[str]:
    """Rewrite a (possibly IOB1) sequence so that every chunk starts with ``B-``."""
    return spans_to_tags(tags_to_spans(tags), len(tags))


def bio_tag_names(labels: Iterable[str]) -> List[str]:
    """The BIO tag inventory for a label set: ``O``, then ``B-X``, ``I-X`` per label."""
    names = [OUTSIDE]
    for label in labels:
        names.extend((f"B-{label}", f"I-{label}"))
    return names


def allowed_transitions(tag_names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks ``(start[T], trans[T, T], end[T])`` of BIO-valid moves.

    ``I-X`` may only follow ``B-X`` or ``I-X`` and may not start a sequence;
    everything else is allowed. ``trans[i, j]`` is the move from tag i to tag j.
    """
    parsed = [parse_tag(t) for t in tag_names]
    n = len(parsed)
    start = np.ones(n, dtype=bool)
    end = np.ones(n, dtype=bool)
    trans = np.ones((n, n), dtype=bool)
    for j, (prefix_j, label_j) in enumerate(parsed):
        if prefix_j != "I":
            continue
        start[j] = False
        for i, (prefix_i, label_i) in enumerate(parsed):
            trans[i, j] = prefix_i in PREFIXES and label_i == label_j
    return start, trans, end


def is_valid_bio(tags: Sequence[str]) -> bool:
    """True when every ``I-X`` follows ``B-X`` or ``I-X`` (strict IOB2)."""
    previous = OUTSIDE
    for tag in tags:
        prefix, label = parse_tag(tag)
        if prefix == "I":
            p_prefix, p_label = parse_tag(previous)
            if p_prefix == OUTSIDE or p_label != label:
                return False
        previous = tag
    return True
