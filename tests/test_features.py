import numpy as np
import pytest

from spacy_mat.features import MASK_ID, PAD_ID, SPECIALS, UNK_ID, IndexTables

SEQS = [["The", "cat", "sat"], ["the", "dog", "sat", "down"], ["A", "cat"]]


def test_specials_and_counts():
    t = IndexTables.from_sequences(SEQS, min_freq=2)
    assert t.words[:3] == list(SPECIALS)
    assert (PAD_ID, UNK_ID, MASK_ID) == (0, 1, 2)
    # "cat" and "sat" occur twice; the 5 other tokens go to <UNK>
    assert t.words[3:] == ["cat", "sat"]
    assert t.word_counts == [0, 5, 0, 2, 2]
    assert sum(t.word_counts) == sum(len(s) for s in SEQS)
    assert sum(t.char_counts) == sum(len(w) for s in SEQS for w in s)


def test_lowercase_and_digits():
    t = IndexTables.from_sequences([["The", "the", "1996"]], lowercase=True, normalize_digits=True)
    assert t.word_id("THE") == t.word_id("the") != UNK_ID
    assert t.word_id("2001") == t.word_id("1996") != UNK_ID
    assert t.word_counts[t.word_id("the")] == 2


def test_featurize_shapes_and_padding():
    t = IndexTables.from_sequences(SEQS, max_word_length=3)
    b = t.featurize([["The", "cat"], ["dog", "sat", "downward", "zzz"]])
    assert b.word_ids.shape == (2, 4) and b.char_ids.shape == (2, 4, 3)
    assert list(b.lengths) == [2, 4]
    assert (b.word_ids[0, 2:] == PAD_ID).all() and (b.char_ids[0, 2:] == PAD_ID).all()
    assert b.word_ids[1, 2] == UNK_ID  # "downward" unseen
    assert b.char_ids[1, 3, 0] == UNK_ID  # "z" unseen char
    assert (b.char_ids[1, 2] != PAD_ID).all()  # clipped to 3 chars, none padded
    with pytest.raises(ValueError, match="empty sequence"):
        t.featurize([["a"], []])


def test_dict_round_trip():
    t = IndexTables.from_sequences(SEQS, lowercase=True, extra_words=["zebra"])
    t2 = IndexTables.from_dict(t.to_dict())
    assert t2.to_dict() == t.to_dict()
    assert t2.word_id("Zebra") == t.word_id("zebra") != UNK_ID
    b1, b2 = t.featurize(SEQS), t2.featurize(SEQS)
    assert all(np.array_equal(x, y) for x, y in zip(b1, b2))
