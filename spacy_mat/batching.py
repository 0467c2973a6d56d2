"""A length-bucketing batcher: batches of a fixed number of sentences whose
lengths are similar, so that a batch carries little padding.

``spacy.batch_by_sequence.v1`` (the paper's setting: 64 random sentences)
pads every sentence of a batch to the batch's longest: on CoNLL-2003 a random
batch of 64 holds ~900 tokens in ~64 x 50 slots. This batcher reads a window
of ``size * buffer`` examples from the (already shuffled) stream, sorts the
window by length, cuts it into batches of ``size`` and yields those batches in
a random order. Every example comes out exactly once, in a batch of ``size``
except for the last batch of each window.
"""
import random
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, TypeVar

from spacy.util import registry

ItemT = TypeVar("ItemT")


def _default_length(item) -> int:
    doc = getattr(item, "reference", item)  # an Example, a Doc or a sequence
    return len(doc)


def bucket_by_length(items: Iterable[ItemT], size: int, buffer: int,
                     get_length: Optional[Callable[[ItemT], int]] = None,
                     rng: Optional[random.Random] = None) -> Iterator[List[ItemT]]:
    """Batches of ``size`` items of similar length from windows of
    ``size * buffer`` items (see the module docstring)."""
    if size < 1 or buffer < 1:
        raise ValueError(f"batch_by_length: size and buffer must be >= 1, got {size} and {buffer}")
    length = get_length or _default_length
    shuffle = (rng or random).shuffle
    window: List[ItemT] = []
    for item in items:
        window.append(item)
        if len(window) == size * buffer:
            yield from _window_batches(window, size, length, shuffle)
            window = []
    if window:
        yield from _window_batches(window, size, length, shuffle)


def _window_batches(window: Sequence[ItemT], size: int, length, shuffle) -> List[List[ItemT]]:
    ordered = sorted(window, key=length)
    batches = [ordered[i: i + size] for i in range(0, len(ordered), size)]
    shuffle(batches)
    return batches


@registry.batchers("spacy_mat.batch_by_length.v1")
def configure_batch_by_length(size: int = 64, buffer: int = 50,
                              get_length: Optional[Callable] = None) -> Callable:
    """``[training.batcher]``: ``size`` sentences per batch, bucketed by length
    within windows of ``size * buffer`` sentences (spaCy's training loop
    shuffles the corpus every epoch before batching; the batch order within a
    window is shuffled with Python's ``random``, which ``spacy train`` seeds)."""
    def batcher(items: Iterable) -> Iterator[List]:
        return bucket_by_length(items, size, buffer, get_length)

    return batcher
