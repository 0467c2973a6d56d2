import random
from collections import Counter

import pytest
from spacy.util import registry

from spacy_mat.batching import bucket_by_length


def _padding_slots(batches):
    return sum(len(b) * max(b) for b in batches)


def test_every_item_comes_out_once_in_full_batches():
    rng = random.Random(0)
    items = [rng.randint(1, 80) for _ in range(1000)]
    batches = list(bucket_by_length(items, size=64, buffer=4, get_length=lambda x: x, rng=rng))
    assert Counter(x for b in batches for x in b) == Counter(items)
    sizes = [len(b) for b in batches]
    # windows of 256: 1000 = 3 * 256 + 232 -> 4 full batches per window, the
    # last window 3 full batches and one of 40
    assert sorted(sizes) == [40] + [64] * 15


def test_batches_hold_similar_lengths_and_less_padding_than_random():
    rng = random.Random(1)
    items = [rng.randint(1, 80) for _ in range(2048)]
    bucketed = list(bucket_by_length(items, size=64, buffer=8, get_length=lambda x: x,
                                     rng=random.Random(0)))
    plain = [items[i: i + 64] for i in range(0, len(items), 64)]
    assert _padding_slots(bucketed) < 0.6 * _padding_slots(plain)
    # inside a window the batches are contiguous runs of the sorted lengths
    window = sorted(items[:512])
    first_window = sorted(bucketed[:8], key=min)
    assert [x for b in first_window for x in sorted(b)] == window


def test_batch_order_is_shuffled_and_reproducible():
    items = list(range(640))
    a = list(bucket_by_length(items, 64, 10, lambda x: x, rng=random.Random(3)))
    b = list(bucket_by_length(items, 64, 10, lambda x: x, rng=random.Random(3)))
    assert a == b
    assert [min(x) for x in a] != sorted(min(x) for x in a)


def test_default_length_reads_examples_and_docs():
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    docs = [nlp.make_doc(" ".join(["w"] * n)) for n in (5, 1, 3, 2)]
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    out = list(bucket_by_length(examples, 2, 2, rng=random.Random(0)))
    assert sorted([len(eg.reference) for eg in b] for b in out) == [[1, 2], [3, 5]]


def test_registered_and_validates():
    make = registry.batchers.get("spacy_mat.batch_by_length.v1")
    batcher = make(size=2, buffer=1)
    assert [len(b) for b in batcher([[1], [1, 2], [1, 2, 3]])] in ([2, 1], [1, 2])
    with pytest.raises(ValueError, match="size and buffer"):
        list(bucket_by_length([1], 0, 1))
