import random

import numpy as np
import pytest

from spacy_mat.tags import (
    TagError,
    allowed_transitions,
    bio_tag_names,
    iob1_to_iob2,
    is_valid_bio,
    parse_tag,
    spans_to_tags,
    tags_to_spans,
)


@pytest.mark.parametrize(
    "tags,spans",
    [
        ([], []),
        (["O", "O"], []),
        (["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
        (["B-PER", "B-PER"], [(0, 1, "PER"), (1, 2, "PER")]),
        (["I-PER", "I-PER", "B-PER"], [(0, 2, "PER"), (2, 3, "PER")]),  # IOB1
        (["O", "I-X"], [(1, 2, "X")]),  # I- after O starts a chunk
        (["B-X", "I-Y"], [(0, 1, "X"), (1, 2, "Y")]),  # type change starts a chunk
        (["I-X", "I-Y", "I-Y"], [(0, 1, "X"), (1, 3, "Y")]),
        (["B-NP", "I-NP", "I-NP"], [(0, 3, "NP")]),
    ],
)
def test_tags_to_spans(tags, spans):
    assert tags_to_spans(tags) == spans


def test_spans_to_tags_round_trip():
    spans = [(0, 2, "PER"), (2, 3, "PER"), (4, 6, "LOC")]
    tags = spans_to_tags(spans, 7)
    assert tags == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "O"]
    assert tags_to_spans(tags) == spans


@pytest.mark.parametrize("spans", [[(0, 3, "X")], [(1, 1, "X")], [(0, 2, "X"), (1, 2, "Y")]])
def test_spans_to_tags_rejects_bad_spans(spans):
    with pytest.raises(ValueError):
        spans_to_tags(spans, 2)


def test_iob1_to_iob2():
    assert iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == [
        "B-PER", "I-PER", "B-PER", "O", "B-LOC"
    ]
    assert iob1_to_iob2(["B-X", "I-Y"]) == ["B-X", "B-Y"]


def test_parse_tag():
    assert parse_tag("O") == ("O", "")
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("I-B-NP") == ("I", "B-NP")


@pytest.mark.parametrize("tag,words", [("B-", "missing"), ("X-PER", "prefix"), ("PER", "expected")])
def test_parse_tag_errors(tag, words):
    with pytest.raises(TagError, match=words):
        parse_tag(tag)
    with pytest.raises(TagError):
        tags_to_spans(["O", tag])


def test_bio_tag_names():
    assert bio_tag_names(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_allowed_transitions():
    names = bio_tag_names(["X", "Y"])
    index = {name: i for i, name in enumerate(names)}
    start, trans, end = allowed_transitions(names)
    assert not trans[index["O"], index["I-X"]]
    assert trans[index["B-X"], index["I-X"]]
    assert trans[index["I-X"], index["I-X"]]
    assert not trans[index["B-X"], index["I-Y"]]
    assert not trans[index["I-Y"], index["I-X"]]
    assert trans[index["I-X"], index["B-Y"]] and trans[index["O"], index["B-X"]]
    assert not start[index["I-X"]] and start[index["B-X"]] and start[index["O"]]
    assert end.all()
    assert start.dtype == trans.dtype == end.dtype == np.bool_


def test_allowed_transitions_agree_with_is_valid_bio():
    names = bio_tag_names(["X", "Y"])
    start, trans, _ = allowed_transitions(names)
    for i, a in enumerate(names):
        assert is_valid_bio([a]) == start[i]
        for j, b in enumerate(names):
            if start[i]:
                assert is_valid_bio([a, b]) == trans[i, j], (a, b)


@pytest.mark.parametrize(
    "tags,valid",
    [
        ([], True),
        (["O", "B-X", "I-X", "B-Y"], True),
        (["I-X"], False),
        (["O", "I-X"], False),
        (["B-X", "I-Y"], False),
    ],
)
def test_is_valid_bio(tags, valid):
    assert is_valid_bio(tags) == valid


def test_random_sequences_round_trip_to_valid_bio():
    rng = random.Random(13)
    inventory = bio_tag_names(["X", "Y", "Z"])
    for _ in range(2000):
        tags = [rng.choice(inventory) for _ in range(rng.randint(0, 12))]
        spans = tags_to_spans(tags)
        rewritten = spans_to_tags(spans, len(tags))
        assert tags_to_spans(rewritten) == spans
        assert is_valid_bio(rewritten)
        assert iob1_to_iob2(tags) == rewritten
