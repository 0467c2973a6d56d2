"""F1 on words never seen in training (the paper's Table 3).

Definitions (``train_words`` is the set of word forms of the training data,
compared as exact, case-sensitive strings; tags are first rewritten to IOB2
with conlleval's chunk semantics, so IOB1 and IOB2 files give the same
result):

* an **unseen token** is a token of the evaluated data whose word form is not
  in ``train_words``;
* over the unseen tokens only: a token is a *gold positive* when its gold tag
  is not ``O``, a *predicted positive* when its predicted tag is not ``O``,
  and *correct* when gold and predicted tags are the same string and not
  ``O`` (``B-PER`` vs ``I-PER`` is an error);
* token precision = correct / predicted positives, recall = correct / gold
  positives, F1 = 2PR / (P + R); each is 0 when its denominator is 0.

Also reported, chunk level: gold and predicted chunks that contain at least
one unseen token; a predicted chunk is correct when a gold chunk has the
same start, end and type (it then contains the same unseen token).
"""
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, Iterable

from ..tags import iob1_to_iob2, tags_to_spans
from .conlleval import ChunkCounts
from .predictions import PredictionSentence

OUTSIDE = "O"


@dataclass
class UnseenScores:
    tokens: int = 0
    unseen_tokens: int = 0
    token: ChunkCounts = field(default_factory=ChunkCounts)
    chunk: ChunkCounts = field(default_factory=ChunkCounts)

    @property
    def f1(self) -> float:
        return self.token.f1

    def to_dict(self) -> Dict[str, Any]:
        return {"tokens": self.tokens, "unseen_tokens": self.unseen_tokens,
                "token": self.token.to_dict(), "chunk": self.chunk.to_dict()}

    def format(self, source: str = "the training data") -> str:
        share = 100 * self.unseen_tokens / self.tokens if self.tokens else 0.0
        t, c = self.token, self.chunk
        return "\n".join([
            f"unseen words (not in {source}): {self.unseen_tokens} of {self.tokens} tokens "
            f"({share:.2f}%); {t.gold} gold and {t.predicted} predicted non-O",
            f"  unseen-word token F1: precision: {100 * t.precision:6.2f}%; "
            f"recall: {100 * t.recall:6.2f}%; FB1: {100 * t.f1:6.2f}",
            f"  chunks with an unseen word: precision: {100 * c.precision:6.2f}%; "
            f"recall: {100 * c.recall:6.2f}%; FB1: {100 * c.f1:6.2f}  "
            f"({c.gold} gold, {c.predicted} predicted)",
        ])


def unseen_word_scores(sentences: Iterable[PredictionSentence],
                       train_words: Collection[str]) -> UnseenScores:
    """Scores over the unseen tokens of ``sentences`` (which need words)."""
    scores = UnseenScores()
    for i, sent in enumerate(sentences):
        if sent.words is None:
            raise ValueError("unseen-word F1 needs the words: the prediction file has only "
                             "the two tag columns")
        gold, pred = iob1_to_iob2(sent.gold), iob1_to_iob2(sent.pred)
        unseen = [w not in train_words for w in sent.words]
        scores.tokens += len(unseen)
        scores.unseen_tokens += sum(unseen)
        for new, g, p in zip(unseen, gold, pred):
            if not new:
                continue
            scores.token.gold += g != OUTSIDE
            scores.token.predicted += p != OUTSIDE
            scores.token.correct += g == p != OUTSIDE
        gold_chunks = {s for s in tags_to_spans(gold) if any(unseen[s[0]: s[1]])}
        pred_chunks = {s for s in tags_to_spans(pred) if any(unseen[s[0]: s[1]])}
        scores.chunk.gold += len(gold_chunks)
        scores.chunk.predicted += len(pred_chunks)
        scores.chunk.correct += len(gold_chunks & pred_chunks)
    return scores
