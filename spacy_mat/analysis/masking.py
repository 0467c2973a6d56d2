"""Word-masking probe: in every sentence, one random token becomes a word the
model never saw in training (``<unk>``, or ``<unk>1``, ... if that occurs in
the training data). Tokens and gold labels stay aligned (same token count).

``mode`` picks the tokens eligible for masking: ``non-entity`` (outside every
gold span of the target layer: does the context hold?), ``entity`` (inside a
gold span) or ``any``. A sentence without an eligible token is left as it is.
"""
import random
from typing import Collection, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

from .tagging import build_doc, sent_starts_of, target_spans

MODES = ("non-entity", "entity", "any")


def unknown_word(train_words: Collection[str], base: str = "<unk>") -> str:
    """``base``, or ``base`` with the smallest number suffix not in ``train_words``."""
    word, n = base, 0
    while word in train_words:
        n += 1
        word = f"{base}{n}"
    return word


def eligible_positions(doc: Doc, target: str, mode: str) -> List[int]:
    if mode not in MODES:
        raise ValueError(f"unknown masking mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "any":
        return list(range(len(doc)))
    inside = {i for start, end, _ in target_spans(doc, target) for i in range(start, end)}
    want_inside = mode == "entity"
    return [i for i in range(len(doc)) if (i in inside) == want_inside]


def mask_tokens(docs: Sequence[Doc], target: str, *, mode: str = "non-entity", seed: int = 0,
                word: str = "<unk>") -> Tuple[List[Doc], List[Optional[int]]]:
    """Copies of ``docs`` (target layer only) with one eligible token per doc
    replaced by ``word``, and the masked position per doc (None: nothing
    eligible). Deterministic for a given seed and mode."""
    rng = random.Random(f"mask:{mode}:{seed}")
    out, positions = [], []
    for doc in docs:
        words = [t.text for t in doc]
        eligible = eligible_positions(doc, target, mode)
        position = rng.choice(eligible) if eligible else None
        if position is not None:
            words[position] = word
        out.append(build_doc(doc.vocab, words, [bool(t.whitespace_) for t in doc],
                             sent_starts_of(doc), target_spans(doc, target), target))
        positions.append(position)
    return out, positions
