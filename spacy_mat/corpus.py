"""CoNLL-2003 / CoNLL-2000 readers, validation and conversion to spaCy DocBin.

A CoNLL file holds one token per line with whitespace-separated columns
(``word POS chunk NER`` for conll2003, ``word POS chunk`` for conll2000); a
blank line ends a sentence and ``-DOCSTART-`` lines start documents. Tags may
be IOB1 or IOB2: spans come from :func:`spacy_mat.tags.tags_to_spans`.

Converted docs keep the gold tokens (``spaces`` unknown), sentence starts, POS
in ``token.tag_``, NER in ``doc.ents`` and chunks in ``doc.spans["chunks"]``.
Nothing is dropped or repaired: malformed input raises :class:`ConllFormatError`
naming the file and line.
"""
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from .tags import TagError, parse_tag, spans_to_tags, tags_to_spans

CHUNKS_KEY = "chunks"
DEV_NAME = "dev.spacy"
DOCSTART = "-DOCSTART-"
FORMATS: Dict[str, Tuple[str, ...]] = {
    "conll2003": ("word", "POS", "chunk", "NER"),
    "conll2000": ("word", "POS", "chunk"),
}
_FIELD_SEP = re.compile(r"[ \t]+")
_BLANK = " \t\r"

PathLike = Union[str, Path]


class ConversionError(ValueError):
    """A conversion that cannot go ahead (missing input, bad option, count mismatch)."""


class ConllFormatError(ConversionError):
    """Malformed CoNLL input; the message names the file and 1-based line."""

    def __init__(self, path: PathLike, line: Optional[int], message: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class ConllSentence:
    """One sentence's columns; ``ner`` is None for formats without NER."""

    words: List[str] = field(default_factory=list)
    pos: List[str] = field(default_factory=list)
    chunks: List[str] = field(default_factory=list)
    ner: Optional[List[str]] = None


ConllDocument = List[ConllSentence]


@dataclass
class Counts:
    """Corpus statistics; ``entities``/``chunks`` count spans per label."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    chunks: Counter = field(default_factory=Counter)

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.documents + other.documents,
            self.sentences + other.sentences,
            self.tokens + other.tokens,
            self.entities + other.entities,
            self.chunks + other.chunks,
        )


@dataclass
class ConversionReport:
    """What :func:`convert_conll` read and wrote.

    ``read`` counts the whole input file; ``written`` maps each output file to
    ``(in, out)``: counts of the parsed documents sent to it and counts of the
    docs re-read from it on disk (equal, or conversion fails).
    """

    input_path: Path
    fmt: str
    read: Counts
    written: Dict[Path, Tuple[Counts, Counts]]
    n_sents: Optional[int] = None
    dev_size: Optional[int] = None
    split_documents: int = 0

    @property
    def total_in(self) -> Counts:
        return sum((c_in for c_in, _ in self.written.values()), Counts())

    @property
    def total_out(self) -> Counts:
        return sum((c_out for _, c_out in self.written.values()), Counts())


# --- reading -----------------------------------------------------------------


def iter_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """``(1-based line number, text)`` per line, decoded as UTF-8 one line at a time."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConllFormatError(
                path, number,
                f"not valid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1}); "
                "re-encode the file as UTF-8",
            ) from None
        yield number, text.rstrip("\r")


def _check_tag(path: PathLike, number: int, column: str, tag: str) -> None:
    try:
        parse_tag(tag)
    except TagError as err:
        raise ConllFormatError(
            path, number, f"{column} column: {err}; fix the tag (IOB1 and IOB2 are accepted)"
        ) from None


def _column_error(path: PathLike, number: int, fmt: str, n_fields: int) -> ConllFormatError:
    names = FORMATS[fmt]
    message = (
        f"expected {len(names)} whitespace-separated columns ({' '.join(names)}) "
        f"for format {fmt!r}, found {n_fields}"
    )
    others = [name for name, cols in FORMATS.items() if len(cols) == n_fields]
    if others:
        message += f"; if the whole file has {n_fields} columns, use format {others[0]!r}"
    return ConllFormatError(path, number, message)


def _add_token(sentence: ConllSentence, fields: List[str]) -> None:
    sentence.words.append(fields[0])
    sentence.pos.append(fields[1])
    sentence.chunks.append(fields[2])
    if sentence.ner is not None:
        sentence.ner.append(fields[3])


def read_conll(path: PathLike, fmt: str) -> List[ConllDocument]:
    """Parse and validate a CoNLL file into documents of sentences.

    With ``-DOCSTART-`` markers, they delimit documents (sentences before the
    first marker form a document; consecutive markers give an empty document).
    Without markers every sentence is its own document.
    """
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"input file not found (or not a file): {path}")
    n_columns = len(FORMATS[fmt])

    def new_sentence() -> ConllSentence:
        return ConllSentence(ner=[] if "NER" in FORMATS[fmt] else None)

    docs: List[ConllDocument] = []
    current: ConllDocument = []
    sentence = new_sentence()
    has_markers = False
    for number, line in iter_lines(path):
        if not line.strip(_BLANK):
            if sentence.words:
                current.append(sentence)
                sentence = new_sentence()
            continue
        fields = _FIELD_SEP.split(line.strip(_BLANK))
        if fields[0] == DOCSTART:
            if sentence.words:
                current.append(sentence)
                sentence = new_sentence()
            if has_markers or current:
                docs.append(current)
            current, has_markers = [], True
            continue
        if len(fields) != n_columns:
            raise _column_error(path, number, fmt, len(fields))
        for column, tag in zip(FORMATS[fmt][2:], fields[2:]):
            _check_tag(path, number, column, tag)
        _add_token(sentence, fields)
    if sentence.words:
        current.append(sentence)
    docs.extend([current] if has_markers else [[s] for s in current])
    if not any(doc for doc in docs):
        raise ConllFormatError(
            path, None, "no tokens found (empty file, or only blank and -DOCSTART- lines)"
        )
    return docs


# --- counting and selecting ---------------------------------------------------


def count_conll(docs: Sequence[ConllDocument]) -> Counts:
    """Counts of parsed documents, spans taken with conlleval semantics."""
    counts = Counts(documents=len(docs))
    for doc in docs:
        for sentence in doc:
            counts.sentences += 1
            counts.tokens += len(sentence.words)
            counts.chunks.update(label for _, _, label in tags_to_spans(sentence.chunks))
            if sentence.ner is not None:
                counts.entities.update(label for _, _, label in tags_to_spans(sentence.ner))
    return counts


def count_docs(docs: Iterable[Doc]) -> Counts:
    """Counts of spaCy docs: sentences from sentence starts, ents and chunk spans."""
    counts = Counts()
    for doc in docs:
        counts.documents += 1
        counts.sentences += sum(1 for _ in doc.sents)
        counts.tokens += len(doc)
        counts.entities.update(ent.label_ for ent in doc.ents)
        counts.chunks.update(span.label_ for span in doc.spans.get(CHUNKS_KEY, []))
    return counts


def split_at_sentence(
    docs: Sequence[ConllDocument], k: int
) -> Tuple[List[ConllDocument], List[ConllDocument]]:
    """Documents holding the first ``k`` sentences, and the rest.

    A document that starts before the cut goes to the first part (split in two
    if it extends past the cut); one starting at or after it, to the second.
    """
    head: List[ConllDocument] = []
    tail: List[ConllDocument] = []
    seen = 0
    for doc in docs:
        if seen >= k:
            tail.append(doc)
        elif seen + len(doc) <= k:
            head.append(doc)
        else:
            head.append(doc[: k - seen])
            tail.append(doc[k - seen:])
        seen += len(doc)
    return head, tail


# --- spaCy docs -------------------------------------------------------------------


def conll_to_doc(vocab: Vocab, document: ConllDocument) -> Doc:
    """One Doc from a document's sentences (spaces unknown, gold tokens kept)."""
    words = [w for s in document for w in s.words]
    pos = [p for s in document for p in s.pos]
    sent_starts = [i == 0 for s in document for i in range(len(s.words))]
    doc = Doc(vocab, words=words, spaces=None, tags=pos, sent_starts=sent_starts)
    ents: List[Span] = []
    chunks: List[Span] = []
    offset = 0
    for sentence in document:
        for start, end, label in tags_to_spans(sentence.chunks):
            chunks.append(Span(doc, offset + start, offset + end, label=label))
        if sentence.ner is not None:
            for start, end, label in tags_to_spans(sentence.ner):
                ents.append(Span(doc, offset + start, offset + end, label=label))
        offset += len(sentence.words)
    if any(s.ner is not None for s in document):
        doc.ents = ents
    doc.spans[CHUNKS_KEY] = chunks
    return doc


def read_docbin(path: PathLike, vocab: Vocab) -> List[Doc]:
    """All docs of a ``.spacy`` file."""
    return list(DocBin().from_disk(path).get_docs(vocab))


def _write_and_check(
    path: Path, vocab: Vocab, documents: Sequence[ConllDocument]
) -> Tuple[Counts, Counts]:
    """Write documents to a DocBin at ``path``; return counts in and re-read out."""
    DocBin(docs=[conll_to_doc(vocab, d) for d in documents]).to_disk(path)
    counts_in = count_conll(documents)
    counts_out = count_docs(read_docbin(path, vocab))
    if counts_in != counts_out:
        raise ConversionError(
            f"{path}: counts re-read from disk differ from the input: in {counts_in}, "
            f"out {counts_out}; the written file is not trustworthy"
        )
    return counts_in, counts_out


def _check_positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ConversionError(f"{name} must be a positive number of sentences, got {value}")


def _make_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConversionError(
            f"cannot create output directory {output_dir}: {err.strerror}"
        ) from None


def convert_conll(
    input_path: PathLike,
    output_dir: PathLike,
    fmt: str,
    dev_size: Optional[int] = None,
    n_sents: Optional[int] = None,
) -> ConversionReport:
    """Convert a CoNLL file to ``output_dir/<stem>.spacy`` (and ``dev.spacy``).

    ``n_sents`` keeps only the first sentences; ``dev_size`` then sends the last
    sentences to ``dev.spacy``. Each output is re-read and its counts checked.
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    _check_positive("n_sents", n_sents)
    _check_positive("dev_size", dev_size)
    main_path = output_dir / f"{input_path.stem}.spacy"
    if dev_size is not None and main_path.name == DEV_NAME:
        raise ConversionError(
            f"{input_path}: with a dev split the output {main_path.name} would collide "
            f"with {DEV_NAME}; rename the input file"
        )
    docs = read_conll(input_path, fmt)
    read = count_conll(docs)
    if n_sents is not None:
        docs = split_at_sentence(docs, n_sents)[0]
    plan = {main_path: docs}
    n_docs = len(docs)
    if dev_size is not None:
        available = sum(len(d) for d in docs)
        if dev_size >= available:
            raise ConversionError(
                f"{input_path}: dev size {dev_size} must be smaller than the "
                f"{available} sentences available"
            )
        train, dev = split_at_sentence(docs, available - dev_size)
        plan = {main_path: train, output_dir / DEV_NAME: dev}
    _make_output_dir(output_dir)
    vocab = spacy.blank("en").vocab
    written = {path: _write_and_check(path, vocab, part) for path, part in plan.items()}
    split = sum(len(part) for part in plan.values()) - n_docs
    return ConversionReport(input_path, fmt, read, written, n_sents, dev_size, split)


# --- writing CoNLL ------------------------------------------------------------------


def _column_values(doc: Doc, column: str) -> List[str]:
    if column == "tag":
        return [token.tag_ for token in doc]
    spans = doc.ents if column == "ents" else doc.spans.get(column, [])
    return spans_to_tags(((s.start, s.end, s.label_) for s in spans), len(doc))


def docs_to_conll_lines(
    docs: Iterable[Doc], columns: Sequence[str] = ("tag", CHUNKS_KEY, "ents")
) -> Iterator[str]:
    """CoNLL lines (no newline): the word, then one value per column per token.

    A column is ``"tag"`` (``token.tag_``), ``"ents"`` (IOB2 tags of
    ``doc.ents``) or a span key (IOB2 tags of ``doc.spans[key]``). A blank
    line follows every sentence.
    """
    for doc in docs:
        values = [_column_values(doc, column) for column in columns]
        for sent in doc.sents:
            for i in range(sent.start, sent.end):
                yield " ".join([doc[i].text, *(v[i] for v in values)])
            yield ""
