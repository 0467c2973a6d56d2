"""Prediction files in conlleval's input format: one token per line, the
word first and the gold and predicted tags last (``word gold pred``), a blank
line between sentences.

Reading follows conlleval: fields are separated by whitespace (conlleval
splits on single spaces; runs of spaces and tabs are accepted here), every
non-blank line has the same number of fields (at least 2: the last two are the
gold and predicted tags), and a blank line or a line whose first field is
``-X-`` is a sentence boundary, not a token. Any other line is a token,
``-DOCSTART-`` lines included (conlleval counts them too). Malformed input
raises :class:`spacy_mat.corpus.ConllFormatError` naming ``file:line``.
"""
import re
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Union

from ..corpus import ConllFormatError, iter_lines
from ..tags import TagError, parse_tag

BOUNDARY = "-X-"
_FIELD_SEP = re.compile(r"[ \t]+")
_WHITESPACE = re.compile(r"\s")
_BLANK = " \t\r"

PathLike = Union[str, Path]


class PredictionSentence(NamedTuple):
    """One sentence: words (None when the file has only the two tag columns),
    gold tags and predicted tags."""

    words: Optional[List[str]]
    gold: List[str]
    pred: List[str]


def file_word(text: str) -> str:
    """A token as written to a prediction file: whitespace inside it becomes
    ``_`` (an empty token too), so that the file can be split into fields."""
    return _WHITESPACE.sub("_", text) or "_"


def prediction_lines(sentences: Iterable[PredictionSentence]) -> Iterable[str]:
    """Lines (no newline) of a prediction file, a blank line after each sentence."""
    for i, sent in enumerate(sentences):
        if len(sent.gold) != len(sent.pred) or (sent.words is not None and len(sent.words) != len(sent.gold)):
            raise ValueError(f"sentence {i}: words, gold and predicted tags differ in length")
        words = sent.words if sent.words is not None else ["_"] * len(sent.gold)
        for word, gold, pred in zip(words, sent.gold, sent.pred):
            yield f"{file_word(word)} {gold} {pred}"
        yield ""


def write_predictions(path: PathLike, sentences: Iterable[PredictionSentence]) -> Path:
    """Write ``word gold pred`` lines to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf8") as out:
        for line in prediction_lines(sentences):
            out.write(line + "\n")
    return path


def _check_tag(path: PathLike, number: int, column: str, tag: str) -> None:
    try:
        parse_tag(tag)
    except TagError as err:
        raise ConllFormatError(path, number, f"{column} tag column: {err}") from None


def read_predictions(path: PathLike) -> List[PredictionSentence]:
    """Sentences of a prediction file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise ConllFormatError(path, None, "prediction file not found (or not a file)")
    sentences: List[PredictionSentence] = []
    words: List[str] = []
    gold: List[str] = []
    pred: List[str] = []
    n_fields, first_line = -1, 0

    def close() -> None:
        nonlocal words, gold, pred
        if gold:
            sentences.append(PredictionSentence(words if n_fields >= 3 else None, gold, pred))
        words, gold, pred = [], [], []

    for number, line in iter_lines(path):
        stripped = line.strip(_BLANK)
        if not stripped:
            close()
            continue
        fields = _FIELD_SEP.split(stripped)
        if n_fields < 0:
            n_fields, first_line = len(fields), number
            if n_fields < 2:
                raise ConllFormatError(
                    path, number, f"found {n_fields} field; a prediction line needs at least "
                    "2 (gold and predicted tag, last), e.g. 'word gold pred'")
        elif len(fields) != n_fields:
            raise ConllFormatError(
                path, number, f"found {len(fields)} fields but line {first_line} has {n_fields}; "
                "every token line needs the same columns (the last two: gold and predicted tag)")
        if fields[0] == BOUNDARY:
            close()
            continue
        _check_tag(path, number, "gold (second to last)", fields[-2])
        _check_tag(path, number, "predicted (last)", fields[-1])
        words.append(fields[0])
        gold.append(fields[-2])
        pred.append(fields[-1])
    close()
    if not sentences:
        raise ConllFormatError(path, None, "no tokens found (empty file, or only blank lines)")
    return sentences

