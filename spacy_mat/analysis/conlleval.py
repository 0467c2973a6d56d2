"""Chunk-level precision/recall/F1 and token accuracy as the CoNLL
``conlleval`` script (version 2004-01-26) computes and prints them.

Chunks come from :func:`spacy_mat.tags.tags_to_spans`, which has conlleval's
semantics: ``B-X`` starts a chunk, ``I-X`` continues an open chunk of type X
and otherwise (after ``O``, after another type, at a sentence start) starts a
new one, ``O`` and the end of a sentence close it. A predicted chunk is
correct when a gold chunk has the same start, end and type.

As in conlleval:

* precision = correct / found predicted chunks, recall = correct / found gold
  chunks, FB1 = 2PR / (P + R); each is 0 when its denominator is 0;
* token accuracy = tokens whose gold and predicted tags are the same string
  (``B-PER`` and ``I-PER`` differ) / tokens; sentence boundaries are not
  tokens;
* per-type rows cover every type found in gold or predictions, sorted, and
  end with the number of predicted chunks of the type.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Sequence, Tuple

from ..tags import tags_to_spans


@dataclass
class ChunkCounts:
    """Chunk counts of one type (or all): gold, predicted and correct."""

    gold: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def to_dict(self) -> Dict[str, float]:
        return {"p": self.precision, "r": self.recall, "f": self.f1,
                "gold": self.gold, "predicted": self.predicted, "correct": self.correct}


@dataclass
class ConllevalResult:
    """Totals of an evaluation; fractions in [0, 1] (the table prints percentages)."""

    tokens: int = 0
    correct_tags: int = 0
    overall: ChunkCounts = field(default_factory=ChunkCounts)
    per_type: Dict[str, ChunkCounts] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct_tags / self.tokens if self.tokens else 0.0

    @property
    def precision(self) -> float:
        return self.overall.precision

    @property
    def recall(self) -> float:
        return self.overall.recall

    @property
    def f1(self) -> float:
        return self.overall.f1

    def to_dict(self) -> Dict[str, Any]:
        return {
            "tokens": self.tokens, "accuracy": self.accuracy,
            "p": self.precision, "r": self.recall, "f": self.f1,
            "gold": self.overall.gold, "predicted": self.overall.predicted,
            "correct": self.overall.correct,
            "per_type": {label: counts.to_dict() for label, counts in sorted(self.per_type.items())},
        }

    def format(self) -> str:
        """The text conlleval prints (without a trailing newline)."""
        o = self.overall
        lines = [f"processed {self.tokens} tokens with {o.gold} phrases; "
                 f"found: {o.predicted} phrases; correct: {o.correct}."]
        if self.tokens > 0:
            lines.append(f"accuracy: {100 * self.accuracy:6.2f}%; "
                         f"precision: {100 * o.precision:6.2f}%; "
                         f"recall: {100 * o.recall:6.2f}%; FB1: {100 * o.f1:6.2f}")
        for label in sorted(self.per_type):
            c = self.per_type[label]
            lines.append(f"{label:>17s}: precision: {100 * c.precision:6.2f}%; "
                         f"recall: {100 * c.recall:6.2f}%; FB1: {100 * c.f1:6.2f}  {c.predicted}")
        return "\n".join(lines)


def evaluate(sentences: Iterable[Tuple[Sequence[str], Sequence[str]]]) -> ConllevalResult:
    """Score ``(gold_tags, predicted_tags)`` pairs, one pair per sentence.

    Tags are IOB1 or IOB2 strings; an invalid tag raises
    :class:`spacy_mat.tags.TagError`, sequences of different lengths a
    ValueError naming the sentence.
    """
    result = ConllevalResult()
    gold_n: Counter = Counter()
    pred_n: Counter = Counter()
    correct_n: Counter = Counter()
    for i, (gold, pred) in enumerate(sentences):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted tags")
        gold_spans = tags_to_spans(gold)
        pred_spans = tags_to_spans(pred)
        gold_n.update(label for _, _, label in gold_spans)
        pred_n.update(label for _, _, label in pred_spans)
        correct_n.update(label for _, _, label in set(gold_spans) & set(pred_spans))
        result.tokens += len(gold)
        result.correct_tags += sum(g == p for g, p in zip(gold, pred))
    for label in set(gold_n) | set(pred_n):
        result.per_type[label] = ChunkCounts(gold_n[label], pred_n[label], correct_n[label])
    result.overall = ChunkCounts(sum(gold_n.values()), sum(pred_n.values()),
                                 sum(correct_n.values()))
    return result

