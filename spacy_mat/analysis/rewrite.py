"""Context robustness: rewrite a test set so that its entities are ones the
model never saw in training, keeping the gold labels aligned.

Each chosen gold span (entity or chunk of the target layer) is replaced by a
span of the same type drawn from a :class:`ReplacementPool` whose surfaces
(word sequences) are never annotated as a span, of any type, in the training
data. The replacement may have another number of tokens: the doc is rebuilt
with the new words, and every later span is shifted. Only the target layer is
kept on the rewritten docs (POS tags and other span groups would no longer be
aligned).
"""
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from spacy.tokens import Doc

from ..corpus import ConllFormatError, iter_lines
from .tagging import build_doc, sent_starts_of, target_spans

Surface = Tuple[str, ...]
PathLike = Union[str, Path]


def span_surfaces(docs: Iterable[Doc], target: str) -> Dict[str, Set[Surface]]:
    """The word sequences of the target spans of ``docs``, per label."""
    out: Dict[str, Set[Surface]] = {}
    for doc in docs:
        words = [t.text for t in doc]
        for start, end, label in target_spans(doc, target):
            out.setdefault(label, set()).add(tuple(words[start:end]))
    return out


def all_surfaces(by_label: Dict[str, Set[Surface]]) -> Set[Surface]:
    return set().union(*by_label.values()) if by_label else set()


class ReplacementPool:
    """Candidate replacement surfaces per label (sorted, without duplicates)."""

    def __init__(self, by_label: Dict[str, Iterable[Surface]], source: str = "") -> None:
        self.by_label: Dict[str, List[Surface]] = {
            label: sorted(set(surfaces)) for label, surfaces in sorted(by_label.items())
        }
        self.source = source

    @classmethod
    def from_docs(cls, docs: Iterable[Doc], target: str, source: str = "") -> "ReplacementPool":
        """Every target span of ``docs`` (e.g. a dev set) as a candidate."""
        return cls(span_surfaces(docs, target), source)

    @classmethod
    def from_file(cls, path: PathLike) -> "ReplacementPool":
        """A list file: one candidate per line, ``LABEL`` then the words,
        separated by whitespace (e.g. ``PER<TAB>Ana Blandiana``); blank lines
        and lines starting with ``#`` are skipped."""
        path = Path(path)
        if not path.is_file():
            raise ConllFormatError(path, None, "replacement list not found (or not a file)")
        by_label: Dict[str, Set[Surface]] = {}
        for number, line in iter_lines(path):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) < 2:
                raise ConllFormatError(path, number, "expected a label and at least one word "
                                       f"(e.g. 'PER\tAna Blandiana'), found {text!r}")
            label = fields[0]
            if label.startswith(("B-", "I-")) or label == "O":
                raise ConllFormatError(path, number, f"label {label!r} looks like a tag; "
                                       "give the type alone (e.g. PER)")
            by_label.setdefault(label, set()).add(tuple(fields[1:]))
        if not by_label:
            raise ConllFormatError(path, None, "no replacement entries found")
        return cls(by_label, str(path))

    def excluding(self, forbidden: Set[Surface]) -> "ReplacementPool":
        """The pool without the given surfaces (e.g. the training entities)."""
        kept = {label: [s for s in surfaces if s not in forbidden]
                for label, surfaces in self.by_label.items()}
        return ReplacementPool({k: v for k, v in kept.items() if v}, self.source)

    def sizes(self) -> Dict[str, int]:
        return {label: len(surfaces) for label, surfaces in self.by_label.items()}

    def choose(self, rng: random.Random, label: str, original: Surface) -> Optional[Surface]:
        """A random candidate of ``label`` other than ``original``, or None."""
        candidates = self.by_label.get(label, [])
        if not candidates or candidates == [original]:
            return None
        while True:
            choice = candidates[rng.randrange(len(candidates))]
            if choice != original:
                return choice


@dataclass
class Replacement:
    """One replaced span: where it is in the rewritten doc, and what it was."""

    doc: int
    start: int
    end: int
    label: str
    original: Surface
    replacement: Surface

    def to_dict(self) -> Dict:
        return {"doc": self.doc, "start": self.start, "end": self.end, "label": self.label,
                "original": " ".join(self.original), "replacement": " ".join(self.replacement)}


@dataclass
class RewriteResult:
    docs: List[Doc]
    replacements: List[Replacement] = field(default_factory=list)
    chosen: int = 0     # spans chosen for replacement (the share of all spans)
    skipped: int = 0    # chosen spans left as they were: no candidate of their type


def replace_entities(docs: Sequence[Doc], target: str, pool: ReplacementPool, *,
                     share: float = 1.0, seed: int = 0) -> RewriteResult:
    """Rewrite ``docs``, replacing ``round(share * n)`` of their ``n`` target
    spans (a seeded random choice; all of them for share 1.0) by pool
    candidates of the same type. Deterministic for a given seed."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    rng = random.Random(f"replace:{seed}")
    spans = [target_spans(doc, target) for doc in docs]
    every = [(d, j) for d, doc_spans in enumerate(spans) for j in range(len(doc_spans))]
    chosen = set(every) if share >= 1.0 else set(rng.sample(every, round(share * len(every))))
    result = RewriteResult(docs=[], chosen=len(chosen))
    for d, doc in enumerate(docs):
        picks = [pool.choose(rng, label, tuple(t.text for t in doc[start:end]))
                 if (d, j) in chosen else None
                 for j, (start, end, label) in enumerate(spans[d])]
        result.skipped += sum(p is None and (d, j) in chosen for j, p in enumerate(picks))
        new_doc, replaced = _rewrite_doc(doc, spans[d], picks, target)
        result.docs.append(new_doc)
        result.replacements.extend(Replacement(d, *r) for r in replaced)
    return result


def _rewrite_doc(doc: Doc, spans: Sequence[Tuple[int, int, str]],
                 picks: Sequence[Optional[Surface]], target: str) -> Tuple[Doc, List[tuple]]:
    """``doc`` with ``spans[j]`` replaced by ``picks[j]`` (None: kept), and
    ``(start, end, label, original, replacement)`` of each replaced span in
    the new doc. Tokens outside spans keep their text, whitespace and
    sentence starts; a replacement's first token takes the sentence start of
    the original's first token, its last token the original's whitespace."""
    texts = [t.text for t in doc]
    spaces = [bool(t.whitespace_) for t in doc]
    starts = sent_starts_of(doc)
    words: List[str] = []
    new_spaces: List[bool] = []
    new_starts: List[bool] = []
    new_spans, replaced = [], []

    def copy(begin: int, end: int) -> None:
        words.extend(texts[begin:end])
        new_spaces.extend(spaces[begin:end])
        new_starts.extend(starts[begin:end] if starts is not None else [])

    cursor = 0
    for (start, end, label), surface in zip(spans, picks):
        copy(cursor, start)
        cursor = end
        begin = len(words)
        if surface is None:
            copy(start, end)
        else:
            words.extend(surface)
            new_spaces.extend([True] * (len(surface) - 1) + [spaces[end - 1]])
            if starts is not None:
                new_starts.extend([starts[start]] + [False] * (len(surface) - 1))
            replaced.append((begin, len(words), label, tuple(texts[start:end]), surface))
        new_spans.append((begin, len(words), label))
    copy(cursor, len(texts))
    new_doc = build_doc(doc.vocab, words, new_spaces, new_starts if starts is not None else None,
                        new_spans, target)
    return new_doc, replaced
