"""Surface-form probes: the test set lowercased, and with typos.

* ``lowercase``: every token lowercased ("angela merkel met emmanuel macron
  in paris"): taggers trained on cased text lean on capitals and collapse.
* ``typos``: a share of the alphabetic tokens (3+ characters) gets one
  character edit (deletion, insertion, substitution or transposition of two
  neighbours, drawn uniformly), as a typing slip would.

Tokens, spaces, sentence starts and the gold spans of the target layer stay
aligned (same token count); only the token strings change.
"""
import random
import string
from typing import List, Sequence, Tuple

from spacy.tokens import Doc

from .tagging import build_doc, sent_starts_of, target_spans

EDITS = ("delete", "insert", "substitute", "transpose")


def _rebuild(doc: Doc, words: Sequence[str], target: str) -> Doc:
    return build_doc(doc.vocab, words, [bool(t.whitespace_) for t in doc], sent_starts_of(doc),
                     target_spans(doc, target), target)


def lowercase_docs(docs: Sequence[Doc], target: str) -> Tuple[List[Doc], int]:
    """Copies of ``docs`` with every token lowercased, and how many tokens changed."""
    out, changed = [], 0
    for doc in docs:
        words = [t.text.lower() for t in doc]
        changed += sum(w != t.text for w, t in zip(words, doc))
        out.append(_rebuild(doc, words, target))
    return out, changed


def typo(word: str, rng: random.Random) -> str:
    """``word`` with one character edit (the result always differs from it)."""
    letters = string.ascii_lowercase
    while True:
        edit = rng.choice(EDITS)
        i = rng.randrange(len(word))
        if edit == "delete":
            new = word[:i] + word[i + 1:]
        elif edit == "insert":
            new = word[:i] + rng.choice(letters) + word[i:]
        elif edit == "substitute":
            new = word[:i] + rng.choice(letters.replace(word[i].lower(), "")) + word[i + 1:]
        else:
            i = min(i, len(word) - 2)
            new = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if new != word and new:
            return new


def typo_docs(docs: Sequence[Doc], target: str, *, share: float = 0.1,
              seed: int = 0) -> Tuple[List[Doc], int]:
    """Copies of ``docs`` where each alphabetic token of 3+ characters gets a
    typo with probability ``share``; returns them and how many tokens changed.
    Deterministic for a given seed."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"typo share must be in [0, 1], got {share}")
    rng = random.Random(f"typos:{seed}")
    out, changed = [], 0
    for doc in docs:
        words = []
        for token in doc:
            text = token.text
            if text.isalpha() and len(text) >= 3 and rng.random() < share:
                text = typo(text, rng)
                changed += 1
            words.append(text)
        out.append(_rebuild(doc, words, target))
    return out, changed
