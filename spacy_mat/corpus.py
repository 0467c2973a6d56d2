"""CoNLL-2003 / CoNLL-2000 / generic column readers, validation and
conversion to spaCy DocBin.

A CoNLL file holds one token per line with whitespace-separated columns
(``word POS chunk NER`` for conll2003, ``word POS chunk`` for conll2000,
``word ... tag`` for ``columns``: 2 or more columns, the word first, the tag
column chosen with ``tag_column``); a blank line ends a sentence and
``-DOCSTART-`` lines start documents. CoNLL tags may be IOB1 or IOB2: spans
come from :func:`spacy_mat.tags.tags_to_spans`. ``columns`` files declare
their scheme: ``BIO`` (IOB2, checked strictly), ``IOB1`` or ``BIOES`` (also
read as BILOU), and are stored as IOB2 after validation.
Input may be gzip-compressed; it must be UTF-8 (a UTF-16 file is named as
such in the error).

Converted docs keep the gold tokens (``spaces`` unknown), sentence starts, POS
in ``token.tag_``, NER in ``doc.ents`` and chunks in ``doc.spans["chunks"]``.
Nothing is dropped or repaired: malformed input raises :class:`ConllFormatError`
naming the file and line.
"""
import gzip
import json
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from .tags import TagError, iob1_to_iob2, parse_tag, spans_to_tags, tags_to_spans

CHUNKS_KEY = "chunks"
DEV_NAME = "dev.spacy"
DOCSTART = "-DOCSTART-"
FORMATS: Dict[str, Tuple[str, ...]] = {
    "conll2003": ("word", "POS", "chunk", "NER"),
    "conll2000": ("word", "POS", "chunk"),
    # generic: the word first, the tag in column ``tag_column``, any others ignored
    "columns": ("word", "tag"),
}
# tag schemes of the "columns" format (CoNLL formats: IOB1 or IOB2, read alike)
SCHEMES = ("BIO", "IOB1", "BIOES")
# file-name endings dropped to name the output (`train.txt.gz` -> `train.spacy`)
TEXT_SUFFIXES = (".txt", ".conll", ".conllx", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".tsv", ".tab")
# in every output directory: which input file each .spacy file was converted from
SOURCES_NAME = ".convert-sources.json"
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
    """One sentence's columns; ``ner`` is None for formats without NER,
    ``pos`` and ``chunks`` are None for the ``columns`` format."""

    words: List[str] = field(default_factory=list)
    pos: Optional[List[str]] = field(default_factory=list)
    chunks: Optional[List[str]] = field(default_factory=list)
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
    ``empty_documents`` counts the ``-DOCSTART-`` markers that opened no
    sentence (consecutive or trailing markers): they are not written.
    """

    input_path: Path
    fmt: str
    read: Counts
    written: Dict[Path, Tuple[Counts, Counts]]
    n_sents: Optional[int] = None
    dev_size: Optional[int] = None
    split_documents: int = 0
    empty_documents: int = 0
    scheme: Optional[str] = None

    @property
    def total_in(self) -> Counts:
        return sum((c_in for c_in, _ in self.written.values()), Counts())

    @property
    def total_out(self) -> Counts:
        return sum((c_out for _, c_out in self.written.values()), Counts())


# --- reading -----------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_UTF16_BOMS = {b"\xff\xfe": "UTF-16 (little-endian)", b"\xfe\xff": "UTF-16 (big-endian)"}


def read_bytes(path: PathLike) -> bytes:
    """The file's bytes, gunzipped when it is gzip data (by content, not name)."""
    data = Path(path).read_bytes()
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ConllFormatError(
                path, None, f"gzip-compressed but cannot be decompressed ({err}); "
                "the file is truncated or corrupt: download it again") from None
    return data


def _utf16_name(data: bytes) -> Optional[str]:
    """``"UTF-16 ..."`` when the bytes look UTF-16 encoded (a BOM, or NUL
    bytes in every other position of the first line)."""
    for bom, name in _UTF16_BOMS.items():
        if data.startswith(bom):
            return name
    head = data[:200]
    if len(head) >= 4 and head.count(b"\x00") * 3 >= len(head):
        return "UTF-16 (no byte order mark)"
    return None


def iter_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """``(1-based line number, text)`` per line, decoded as UTF-8 one line at a
    time; gzip input is decompressed, UTF-16 input is refused by name."""
    data = read_bytes(path)
    utf16 = _utf16_name(data)
    if utf16:
        raise ConllFormatError(
            path, 1, f"the file is encoded as {utf16}, not UTF-8; re-encode it, e.g. "
            f"`iconv -f UTF-16 -t UTF-8 {path} > {Path(path).name}.utf8`")
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
    others = [name for name, cols in FORMATS.items() if len(cols) == n_fields and name != "columns"]
    if others:
        message += f"; if the whole file has {n_fields} columns, use format {others[0]!r}"
    elif n_fields >= 2:
        message += f"; for another layout use --format columns (word first, tag column with --tag-column)"
    return ConllFormatError(path, number, message)


def _add_token(sentence: ConllSentence, fields: List[str]) -> None:
    sentence.words.append(fields[0])
    sentence.pos.append(fields[1])
    sentence.chunks.append(fields[2])
    if sentence.ner is not None:
        sentence.ner.append(fields[3])


# BIOES prefixes (BILOU's L and U are E and S) and what each becomes in IOB2
_BIOES_PREFIXES = {"B": "B", "I": "I", "E": "I", "L": "I", "S": "B", "U": "B"}


def _parse_scheme_tag(path: PathLike, number: int, tag: str, scheme: str) -> Tuple[str, str]:
    """``(prefix, type)`` of a ``columns`` tag under ``scheme``, or a file:line error."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    allowed = _BIOES_PREFIXES if scheme == "BIOES" else {"B": "B", "I": "I"}
    if not sep or not label or prefix not in allowed:
        hint = ""
        if scheme != "BIOES" and sep and label and prefix in _BIOES_PREFIXES:
            hint = "; the file looks like BIOES/BILOU: use --scheme BIOES"
        expected = "'O' or B-, I-, E-, S- (or L-, U-) + TYPE" if scheme == "BIOES" else "'O', 'B-TYPE' or 'I-TYPE'"
        raise ConllFormatError(path, number, f"tag column: invalid {scheme} tag {tag!r}: expected {expected}{hint}")
    return prefix, label


def _scheme_to_iob2(path: PathLike, tags: Sequence[str], lines: Sequence[int], scheme: str) -> List[str]:
    """Validate a sentence's ``columns`` tags under ``scheme`` and return them as IOB2.

    BIO: ``I-X`` must continue a ``B-X``/``I-X`` (strict IOB2). IOB1: conlleval
    semantics, anything goes. BIOES: every entity is ``S-X`` or ``B-X I-X* E-X``.
    """
    parsed = [_parse_scheme_tag(path, n, tag, scheme) for tag, n in zip(tags, lines)]
    if scheme == "IOB1":
        return iob1_to_iob2([t if p == "O" else f"{p}-{x}" for (p, x), t in zip(parsed, tags)])
    out: List[str] = []
    open_label: Optional[str] = None  # type of the entity an I-/E- may continue
    open_line = 0
    for (prefix, label), tag, number in zip(parsed, tags, lines):
        inside = _BIOES_PREFIXES.get(prefix) == "I" or (scheme == "BIO" and prefix == "I")
        if inside:
            if open_label != label:
                after = f"an open {open_label} entity" if open_label else "no open entity"
                raise ConllFormatError(path, number, (
                    f"tag column: {tag!r} continues an entity, but follows {after}; not valid {scheme}"
                    + ("; if the file is IOB1, use --scheme IOB1" if scheme == "BIO" else "")))
        elif scheme == "BIOES" and open_label is not None:
            raise ConllFormatError(path, open_line, (
                f"tag column: the {open_label} entity opened here is not closed with E-{open_label} "
                f"before {tag!r} (line {number}); not valid BIOES"))
        out.append("O" if prefix == "O" else f"{_BIOES_PREFIXES[prefix]}-{label}")
        # B-X and I-X leave an entity open; O, E-X and S-X (BIOES) close it
        open_label = label if prefix in ("B", "I") else None
        if prefix == "B":
            open_line = number
    if scheme == "BIOES" and open_label is not None:
        raise ConllFormatError(path, open_line, (
            f"tag column: the {open_label} entity opened here is not closed with E-{open_label} "
            "before the sentence ends; not valid BIOES"))
    return out


def _tag_index(path: PathLike, tag_column: int, n_fields: int, number: int) -> int:
    """0-based index of the 1-based (negative: from the end) ``tag_column``."""
    index = tag_column - 1 if tag_column > 0 else n_fields + tag_column
    if not 1 <= index < n_fields:
        raise ConllFormatError(path, number, (
            f"--tag-column {tag_column} does not name a tag column in a line of {n_fields} "
            "columns (column 1 is the word; -1 is the last)"))
    return index


def read_conll(
    path: PathLike, fmt: str, tag_column: int = -1, scheme: Optional[str] = None
) -> List[ConllDocument]:
    """Parse and validate a CoNLL file into documents of sentences.

    With ``-DOCSTART-`` markers, they delimit documents (sentences before the
    first marker form a document; a marker that opens no sentence, e.g. one
    of two consecutive markers, gives no document: :func:`read_conll_counted`
    counts them). Without markers every sentence is its own document.
    ``tag_column`` (1-based, negative from the end) and ``scheme`` (``BIO``,
    ``IOB1``, ``BIOES``; default ``BIO``) apply to ``fmt="columns"``.
    """
    return read_conll_counted(path, fmt, tag_column, scheme)[0]


def read_conll_counted(
    path: PathLike, fmt: str, tag_column: int = -1, scheme: Optional[str] = None
) -> Tuple[List[ConllDocument], int]:
    """:func:`read_conll`, plus the number of empty documents not returned."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    columns = fmt == "columns"
    if columns:
        scheme = scheme or "BIO"
        if scheme not in SCHEMES:
            raise ConversionError(f"unknown tag scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    elif scheme is not None:
        raise ConversionError(
            f"a tag scheme applies to --format columns only; {fmt} tags are read as IOB1 or IOB2")
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"input file not found (or not a file): {path}")
    n_columns = len(FORMATS[fmt])

    def new_sentence() -> ConllSentence:
        if columns:
            return ConllSentence(pos=None, chunks=None, ner=[])
        return ConllSentence(ner=[] if "NER" in FORMATS[fmt] else None)

    docs: List[ConllDocument] = []
    current: ConllDocument = []
    sentence = new_sentence()
    lines: List[int] = []
    has_markers = False
    n_empty = 0
    width: Optional[Tuple[int, int]] = None  # columns format: (columns, first line)

    def close_sentence() -> None:
        nonlocal sentence, lines
        if sentence.words:
            if columns:
                sentence.ner = _scheme_to_iob2(path, sentence.ner, lines, scheme)
            current.append(sentence)
            sentence, lines = new_sentence(), []

    for number, line in iter_lines(path):
        if not line.strip(_BLANK):
            close_sentence()
            continue
        fields = _FIELD_SEP.split(line.strip(_BLANK))
        if fields[0] == DOCSTART:
            close_sentence()
            if current:
                docs.append(current)
            elif has_markers:
                n_empty += 1
            current, has_markers = [], True
            continue
        if columns:
            if width is None:
                width = (len(fields), number)
                if len(fields) < 2:
                    raise ConllFormatError(path, number, (
                        "format 'columns' needs at least 2 whitespace-separated columns "
                        f"(word ... tag), found {len(fields)}"))
            if len(fields) != width[0]:
                raise ConllFormatError(path, number, (
                    f"found {len(fields)} columns, but line {width[1]} has {width[0]}; "
                    "every token line needs the same columns"))
            sentence.words.append(fields[0])
            sentence.ner.append(fields[_tag_index(path, tag_column, len(fields), number)])
            lines.append(number)
            continue
        if len(fields) != n_columns:
            raise _column_error(path, number, fmt, len(fields))
        for column, tag in zip(FORMATS[fmt][2:], fields[2:]):
            _check_tag(path, number, column, tag)
        _add_token(sentence, fields)
    close_sentence()
    if current:
        docs.append(current)
    elif has_markers:
        n_empty += 1
    if not has_markers:
        docs = [[s] for doc in docs for s in doc]
    if not docs:
        raise ConllFormatError(
            path, None, "no tokens found (empty file, or only blank and -DOCSTART- lines)"
        )
    return docs, n_empty


# --- counting and selecting ---------------------------------------------------


def count_conll(docs: Sequence[ConllDocument]) -> Counts:
    """Counts of parsed documents, spans taken with conlleval semantics."""
    counts = Counts(documents=len(docs))
    for doc in docs:
        for sentence in doc:
            counts.sentences += 1
            counts.tokens += len(sentence.words)
            if sentence.chunks is not None:
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
    has_pos = all(s.pos is not None for s in document)
    pos = [p for s in document for p in s.pos] if has_pos else None
    sent_starts = [i == 0 for s in document for i in range(len(s.words))]
    doc = Doc(vocab, words=words, spaces=None, tags=pos, sent_starts=sent_starts)
    ents: List[Span] = []
    chunks: List[Span] = []
    offset = 0
    for sentence in document:
        for start, end, label in tags_to_spans(sentence.chunks or []):
            chunks.append(Span(doc, offset + start, offset + end, label=label))
        if sentence.ner is not None:
            for start, end, label in tags_to_spans(sentence.ner):
                ents.append(Span(doc, offset + start, offset + end, label=label))
        offset += len(sentence.words)
    if any(s.ner is not None for s in document):
        doc.ents = ents
    if any(s.chunks is not None for s in document):
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


def output_name(input_path: PathLike) -> str:
    """Default output file name: the input's name without ``.gz`` and a text
    suffix such as ``.txt`` (``train.txt.gz`` -> ``train.spacy``), other
    suffixes kept (``eng.testa`` -> ``eng.testa.spacy``)."""
    name = Path(input_path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for suffix in TEXT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return f"{name}.spacy"


def _source_key(path: Path) -> str:
    return os.path.abspath(path)


def _read_sources(output_dir: Path) -> Dict[str, str]:
    manifest = output_dir / SOURCES_NAME
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_clashes(input_path: Path, outputs: Sequence[Path], output_dir: Path) -> None:
    """Refuse to overwrite an output that an earlier conversion wrote from
    another input file (their names clash: ``eng.train``/``eng.testa`` with
    ``--output-name eng``, ``dev.txt`` and a ``--dev-size`` split)."""
    sources = _read_sources(output_dir)
    for path in outputs:
        source = sources.get(path.name)
        if path.exists() and source is not None and source != _source_key(input_path):
            raise ConversionError(
                f"{path} was converted from {source}; converting {input_path} would overwrite it. "
                "Pass --output-name NAME (or another output directory), or delete the file first"
            )


def _record_sources(input_path: Path, outputs: Sequence[Path], output_dir: Path) -> None:
    sources = _read_sources(output_dir)
    sources.update({path.name: _source_key(input_path) for path in outputs})
    (output_dir / SOURCES_NAME).write_text(json.dumps(sources, indent=1, sort_keys=True) + "\n",
                                           encoding="utf8")


def convert_conll(
    input_path: PathLike,
    output_dir: PathLike,
    fmt: str,
    dev_size: Optional[int] = None,
    n_sents: Optional[int] = None,
    *,
    name: Optional[str] = None,
    tag_column: int = -1,
    scheme: Optional[str] = None,
) -> ConversionReport:
    """Convert a CoNLL file to ``output_dir/<name>.spacy`` (and ``dev.spacy``).

    ``name`` defaults to :func:`output_name` of the input. ``n_sents`` keeps
    only the first sentences; ``dev_size`` then sends the last sentences to
    ``dev.spacy``. Each output is re-read and its counts checked. An output
    that an earlier call wrote from a different input file is not overwritten
    (``output_dir/.convert-sources.json`` records each output's input).
    ``tag_column`` and ``scheme``: see :func:`read_conll` (``columns`` format).
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    _check_positive("n_sents", n_sents)
    _check_positive("dev_size", dev_size)
    if name is not None:
        if not name or Path(name).name != name or name in (".", ".."):
            raise ConversionError(f"--output-name must be a file name without a folder, got {name!r}")
        if not name.endswith(".spacy"):
            name += ".spacy"
    main_path = output_dir / (name or output_name(input_path))
    if dev_size is not None and main_path.name == DEV_NAME:
        raise ConversionError(
            f"{input_path}: with a dev split the output {main_path.name} would collide "
            f"with {DEV_NAME}; pass --output-name NAME"
        )
    docs, n_empty = read_conll_counted(input_path, fmt, tag_column, scheme)
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
    _check_clashes(input_path, list(plan), output_dir)
    _make_output_dir(output_dir)
    vocab = spacy.blank("en").vocab
    written = {path: _write_and_check(path, vocab, part) for path, part in plan.items()}
    _record_sources(input_path, list(plan), output_dir)
    split = sum(len(part) for part in plan.values()) - n_docs
    return ConversionReport(input_path, fmt, read, written, n_sents, dev_size, split, n_empty,
                            (scheme or "BIO") if fmt == "columns" else None)


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
