import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from spacy_mat.cli import main
from spacy_mat.corpus import (
    ConllFormatError,
    ConllSentence,
    ConversionError,
    Counts,
    convert_conll,
    count_docs,
    docs_to_conll_lines,
    output_name,
    read_conll,
    read_conll_counted,
    read_docbin,
    split_at_sentence,
)
from spacy_mat.tags import iob1_to_iob2

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"

SMALL_2003 = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O


Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""

# IOB1 (I- starts chunks, B- only between touching chunks of one type).
IOB1_2003 = """\
John NNP I-NP I-PER
Smith NNP I-NP I-PER
Mary NNP B-NP B-PER
saw VBD I-VP O
Paris NNP I-NP I-LOC
France NNP I-NP I-MISC

New NNP I-NP I-LOC
York NNP I-NP I-LOC
"""

SMALL_2000 = """\
Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP

is VBZ B-VP
widely RB I-VP
"""


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def rewrite_iob2(text: str) -> str:
    """The same CoNLL text with every tag column rewritten to IOB2."""
    out, block = [], []
    for line in text.splitlines() + [""]:
        if line:
            block.append(line.split())
            continue
        columns = [list(col) for col in zip(*block)] if block else []
        for j in range(2, len(columns)):
            columns[j] = iob1_to_iob2(columns[j])
        out.extend(" ".join(row) for row in zip(*columns))
        out.append("")
        block = []
    return "\n".join(out)


def flat_sentences(docs):
    return [sentence for doc in docs for sentence in doc]


def as_iob2(sentence: ConllSentence) -> ConllSentence:
    ner = iob1_to_iob2(sentence.ner) if sentence.ner is not None else None
    return ConllSentence(sentence.words, sentence.pos, iob1_to_iob2(sentence.chunks), ner)


# --- real corpora -------------------------------------------------------------

EXPECTED = {
    ("conll2003", "train"): (946, 14041, 203621),
    ("conll2003", "dev"): (216, 3250, 51362),
    ("conll2003", "test"): (231, 3453, 46435),
    ("conll2000", "test"): (2012, 2012, 47377),
}


@pytest.fixture(scope="module")
def convert_real(tmp_path_factory):
    """Convert a real corpus file once per module: ``(fmt, name, dev_size) -> report``."""
    if not DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {DATA}")
    cache = {}

    def convert(fmt, name, dev_size=None):
        key = (fmt, name, dev_size)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{fmt}-{name}")
            cache[key] = convert_conll(DATA / fmt / f"{name}.txt", out, fmt, dev_size=dev_size)
        return cache[key]

    return convert


def _main_counts(counts: Counts):
    return counts.documents, counts.sentences, counts.tokens


@pytest.mark.parametrize("fmt,name", list(EXPECTED))
def test_real_counts(convert_real, fmt, name):
    report = convert_real(fmt, name)
    assert _main_counts(report.read) == EXPECTED[fmt, name]
    assert report.total_in == report.total_out == report.read
    assert [p.name for p in report.written] == [f"{name}.spacy"]


def test_real_conll2003_test_entities(convert_real):
    report = convert_real("conll2003", "test")
    expected = {"LOC": 1668, "ORG": 1661, "PER": 1617, "MISC": 702}
    assert dict(report.total_out.entities) == expected
    assert sum(report.total_out.entities.values()) == 5648


def test_real_conll2000_train_dev_split(convert_real):
    report = convert_real("conll2000", "train", 1000)
    assert _main_counts(report.read) == (8936, 8936, 211727)
    (train, (train_in, train_out)), (dev, (dev_in, dev_out)) = report.written.items()
    assert (train.name, dev.name) == ("train.spacy", "dev.spacy")
    assert train_in == train_out and dev_in == dev_out
    assert train_out.sentences == train_out.documents == 7936
    assert dev_out.sentences == dev_out.documents == 1000
    assert report.total_out == report.read
    assert report.split_documents == 0


def test_real_round_trip_to_conll_lines(convert_real, tmp_path):
    report = convert_real("conll2003", "test")
    docs = read_docbin(next(iter(report.written)), spacy.blank("en").vocab)
    lines = docs_to_conll_lines(docs, columns=("tag", "chunks", "ents"))
    exported = write(tmp_path / "export.txt", "\n".join(lines) + "\n")
    original = flat_sentences(read_conll(DATA / "conll2003" / "test.txt", "conll2003"))
    assert flat_sentences(read_conll(exported, "conll2003")) == [as_iob2(s) for s in original]


# --- conversion of small files -----------------------------------------------------


def test_convert_small_conll2003(tmp_path):
    src = write(tmp_path / "small.txt", SMALL_2003)
    report = convert_conll(src, tmp_path / "out", "conll2003")
    counts = report.total_out
    assert report.read == report.total_in == counts
    assert _main_counts(counts) == (2, 3, 8)
    assert counts.entities == {"ORG": 1, "MISC": 1, "PER": 1, "LOC": 1}
    assert counts.chunks == {"NP": 4, "VP": 1}
    doc = read_docbin(tmp_path / "out" / "small.spacy", spacy.blank("en").vocab)[0]
    assert doc.has_unknown_spaces
    assert [t.text for t in doc] == ["EU", "rejects", "German", "call", "Peter", "Blackburn"]
    assert [t.is_sent_start for t in doc] == [True, False, False, False, True, False]
    assert [t.tag_ for t in doc] == ["NNP", "VBZ", "JJ", "NN", "NNP", "NNP"]
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [
        (0, 1, "ORG"), (2, 3, "MISC"), (4, 6, "PER")
    ]
    assert [t.ent_iob_ for t in doc] == ["B", "O", "B", "O", "B", "I"]
    assert [(s.start, s.end, s.label_) for s in doc.spans["chunks"]] == [
        (0, 1, "NP"), (1, 2, "VP"), (2, 4, "NP"), (4, 6, "NP")
    ]


def test_convert_small_conll2000(tmp_path):
    src = write(tmp_path / "chunks.txt", SMALL_2000)
    report = convert_conll(src, tmp_path, "conll2000")
    assert _main_counts(report.total_out) == (2, 2, 6)
    assert report.total_out.entities == {}
    docs = read_docbin(tmp_path / "chunks.spacy", spacy.blank("en").vocab)
    assert [len(doc) for doc in docs] == [4, 2]
    assert all(doc.has_unknown_spaces for doc in docs)
    assert [(s.start, s.end, s.label_) for s in docs[0].spans["chunks"]] == [
        (0, 1, "NP"), (1, 2, "PP"), (2, 4, "NP")
    ]
    assert not docs[0].has_annotation("ENT_IOB")


def test_document_rule(tmp_path):
    text = (
        "a X B-NP O\n\nb X B-NP O\n"  # before the first marker: a document
        "-DOCSTART- -X- -X- O\n-DOCSTART- -X- -X- O\n\n"  # a marker opening no sentence
        "c X B-NP O\n\n\nd X O O\n"
        "-DOCSTART-\n"  # a trailing marker: another empty one
    )
    docs = read_conll(write(tmp_path / "docs.txt", text), "conll2003")
    assert [[s.words for s in doc] for doc in docs] == [[["a"], ["b"]], [["c"], ["d"]]]
    assert read_conll_counted(tmp_path / "docs.txt", "conll2003")[1] == 2
    plain = write(tmp_path / "plain.txt", "a X B-NP O\n\nb X B-NP O\n")
    no_markers = read_conll(plain, "conll2003")
    assert [[s.words for s in doc] for doc in no_markers] == [[["a"]], [["b"]]]


def test_consecutive_docstarts_write_no_empty_docs(tmp_path, capsys):
    text = "-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n\nx X B-NP O\n\n-DOCSTART- -X- O O\n"
    src = write(tmp_path / "e.txt", text)
    report = convert_conll(src, tmp_path / "out", "conll2003")
    assert _main_counts(report.total_out) == (1, 1, 1)
    assert report.empty_documents == 2
    docs = read_docbin(tmp_path / "out" / "e.spacy", spacy.blank("en").vocab)
    assert [len(d) for d in docs] == [1]
    assert main(["convert", str(src), str(tmp_path / "cli"), "--format", "conll2003"]) == 0
    assert "2 -DOCSTART- marker(s) opened no sentence" in capsys.readouterr().out


def test_windows_line_endings(tmp_path):
    lf = read_conll(write(tmp_path / "lf.txt", SMALL_2003), "conll2003")
    crlf = read_conll(write(tmp_path / "crlf.txt", SMALL_2003.replace("\n", "\r\n")), "conll2003")
    assert crlf == lf


def test_iob1_gives_same_spans_as_iob2(tmp_path):
    iob2_text = rewrite_iob2(IOB1_2003)
    assert iob2_text != IOB1_2003
    vocab = spacy.blank("en").vocab
    for name, text in (("iob1", IOB1_2003), ("iob2", iob2_text)):
        convert_conll(write(tmp_path / f"{name}.txt", text), tmp_path, "conll2003")
    iob1, iob2 = (read_docbin(tmp_path / f"{n}.spacy", vocab) for n in ("iob1", "iob2"))

    def spans(docs):
        return [
            ([(e.start, e.end, e.label_) for e in d.ents],
             [(s.start, s.end, s.label_) for s in d.spans["chunks"]])
            for d in docs
        ]

    assert spans(iob1) == spans(iob2)
    assert spans(iob1)[0][0] == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "MISC")]


def test_docs_to_conll_lines_writes_iob2(tmp_path):
    convert_conll(write(tmp_path / "iob1.txt", IOB1_2003), tmp_path, "conll2003")
    docs = read_docbin(tmp_path / "iob1.spacy", spacy.blank("en").vocab)
    lines = list(docs_to_conll_lines(docs))
    assert lines == rewrite_iob2(IOB1_2003).split("\n")
    assert list(docs_to_conll_lines(docs[1:], columns=("ents",))) == ["New B-LOC", "York I-LOC", ""]


def test_split_at_sentence():
    s = [ConllSentence([w], ["X"], ["O"]) for w in "abcde"]
    docs = [[s[0], s[1]], [], [s[2], s[3]], [], [s[4]]]
    assert split_at_sentence(docs, 1) == ([[s[0]]], [[s[1]], [], [s[2], s[3]], [], [s[4]]])
    assert split_at_sentence(docs, 2) == ([[s[0], s[1]]], [[], [s[2], s[3]], [], [s[4]]])
    assert split_at_sentence(docs, 3) == ([[s[0], s[1]], [], [s[2]]], [[s[3]], [], [s[4]]])
    assert split_at_sentence(docs, 5) == (docs, [])


def test_dev_split_splits_a_document(tmp_path):
    src = write(tmp_path / "train.txt", SMALL_2003)
    report = convert_conll(src, tmp_path, "conll2003", dev_size=2)
    assert [p.name for p in report.written] == ["train.spacy", "dev.spacy"]
    (train_in, train_out), (dev_in, dev_out) = report.written.values()
    assert train_in == train_out and dev_in == dev_out
    assert _main_counts(train_out) == (1, 1, 4) and _main_counts(dev_out) == (2, 2, 4)
    assert report.split_documents == 1
    assert report.total_out.documents == report.read.documents + 1
    report = convert_conll(src, tmp_path, "conll2003", dev_size=1)
    assert report.split_documents == 0
    assert [_main_counts(c) for c, _ in report.written.values()] == [(1, 2, 6), (1, 1, 2)]


def test_n_sents_keeps_first_sentences(tmp_path):
    src = write(tmp_path / "small.txt", SMALL_2003)
    report = convert_conll(src, tmp_path, "conll2003", n_sents=2)
    assert _main_counts(report.read) == (2, 3, 8)
    assert _main_counts(report.total_out) == (1, 2, 6)
    assert report.total_in == report.total_out
    report = convert_conll(src, tmp_path, "conll2003", n_sents=2, dev_size=1)
    assert [c.sentences for _, c in report.written.values()] == [1, 1]


@pytest.mark.parametrize("dev_size", [3, 4])
def test_dev_size_must_leave_training_sentences(tmp_path, dev_size):
    src = write(tmp_path / "small.txt", SMALL_2003)
    with pytest.raises(ConversionError, match="smaller than the 3 sentences"):
        convert_conll(src, tmp_path, "conll2003", dev_size=dev_size)


def test_dev_output_collision(tmp_path):
    src = write(tmp_path / "dev.txt", SMALL_2003)
    with pytest.raises(ConversionError, match="collide"):
        convert_conll(src, tmp_path / "out", "conll2003", dev_size=1)


@pytest.mark.parametrize("option", ["dev_size", "n_sents"])
def test_non_positive_options(tmp_path, option):
    src = write(tmp_path / "small.txt", SMALL_2003)
    with pytest.raises(ConversionError, match=option):
        convert_conll(src, tmp_path, "conll2003", **{option: 0})


# --- malformed input ------------------------------------------------------------------


def assert_format_error(path: Path, fmt: str, line, *fragments: str) -> None:
    with pytest.raises(ConllFormatError) as info:
        convert_conll(path, path.parent / "out", fmt)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"{path}:{line}:" if line is not None else f"{path}:")
    assert info.value.line == line
    for fragment in fragments:
        assert fragment in message
    assert not (path.parent / "out").exists()


@pytest.mark.parametrize(
    "text,fmt,line,fragments",
    [
        ("a X B-NP\n", "conll2003", 1, ["expected 4", "found 3", "'conll2000'"]),
        ("a X B-NP O\n\nb X B-NP O extra\n", "conll2003", 3, ["expected 4", "found 5"]),
        ("a X B-NP\nb X I-NP O\n", "conll2000", 2, ["expected 3", "found 4", "'conll2003'"]),
        ("-DOCSTART- -X- -X- O\n\na X B-NP\n", "conll2003", 3, ["found 3"]),
    ],
)
def test_wrong_column_count(tmp_path, text, fmt, line, fragments):
    assert_format_error(write(tmp_path / "bad.txt", text), fmt, line, *fragments)


@pytest.mark.parametrize("tag", ["B-", "X-PER", "PER"])
def test_invalid_ner_tag(tmp_path, tag):
    src = write(tmp_path / "bad.txt", f"a X B-NP O\nb X I-NP B-PER\n\nc X B-NP {tag}\n")
    assert_format_error(src, "conll2003", 4, "NER column", repr(tag))


def test_invalid_chunk_tag(tmp_path):
    src = write(tmp_path / "bad.txt", "a X B-NP\nb X NP\n")
    assert_format_error(src, "conll2000", 2, "chunk column", "'NP'")


def test_non_utf8_byte(tmp_path):
    src = tmp_path / "latin1.txt"
    src.write_bytes("a X B-NP O\n\n".encode() + "Müller X B-NP B-PER\n".encode("latin-1"))
    assert_format_error(src, "conll2003", 3, "UTF-8", "0xfc")


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_no_tokens(tmp_path, text):
    assert_format_error(write(tmp_path / "empty.txt", text), "conll2003", None, "no tokens")


def test_missing_input(tmp_path):
    with pytest.raises(ConversionError, match="not found") as info:
        convert_conll(tmp_path / "nope.txt", tmp_path, "conll2003")
    assert str(tmp_path / "nope.txt") in str(info.value)


def test_output_dir_not_creatable(tmp_path):
    src = write(tmp_path / "small.txt", SMALL_2003)
    blocker = write(tmp_path / "file", "")
    with pytest.raises(ConversionError, match="cannot create output directory") as info:
        convert_conll(src, blocker / "out", "conll2003")
    assert str(blocker / "out") in str(info.value)


def test_count_docs_matches_conversion(tmp_path):
    src = write(tmp_path / "small.txt", SMALL_2003)
    report = convert_conll(src, tmp_path, "conll2003")
    assert count_docs(read_docbin(tmp_path / "small.spacy", spacy.blank("en").vocab)) == report.read


def test_count_mismatch_fails(tmp_path, monkeypatch):
    import spacy_mat.corpus as corpus

    monkeypatch.setattr(corpus, "count_docs", lambda docs: Counts(documents=-1))
    src = write(tmp_path / "small.txt", SMALL_2003)
    with pytest.raises(ConversionError, match="differ"):
        convert_conll(src, tmp_path, "conll2003")
    assert main(["convert", str(src), str(tmp_path), "--format", "conll2003"]) == 1


# --- command line ----------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "spacy_mat", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_cli_convert(tmp_path):
    src = write(tmp_path / "small.txt", SMALL_2003)
    result = run_cli("convert", str(src), str(tmp_path / "out"), "--format", "conll2003")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "small.spacy").is_file()
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["documents"] == ["2", "2", "2"]
    assert rows["tokens"] == ["8", "8", "8"]
    assert rows["entities"] == ["4", "4", "4"]
    assert "small.spacy out" in result.stdout.splitlines()[0]


def test_cli_bad_file(tmp_path):
    src = write(tmp_path / "bad.txt", "a X B-NP O\nb X B-NP X-PER\n")
    result = run_cli("convert", str(src), str(tmp_path / "out"), "--format", "conll2003")
    assert result.returncode == 1
    assert f"{src}:2:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_main_returns_exit_codes(tmp_path, capsys):
    src = write(tmp_path / "chunks.txt", SMALL_2000)
    args = ["convert", str(src), str(tmp_path), "--format", "conll2000"]
    assert main(args + ["--n-sents", "1"]) == 0
    assert "kept the first 1 of 2 sentences" in capsys.readouterr().out
    assert main(args + ["--dev-size", "2"]) == 1
    assert "dev size 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--dev-size", "0"])


# --- output names, gzip, encodings, column files (issue 14) ------------------------------


@pytest.mark.parametrize("name,expected", [
    ("train.txt", "train.spacy"), ("train.txt.gz", "train.spacy"), ("eng.testa", "eng.testa.spacy"),
    ("eng.train.gz", "eng.train.spacy"), ("wikiann-en.bio", "wikiann-en.spacy"), ("data", "data.spacy"),
])
def test_output_name(name, expected):
    assert output_name(Path("some/dir") / name) == expected


def test_clashing_outputs_are_refused(tmp_path):
    """eng.train then eng.testa with one --output-name: the second is refused,
    the first file stays; rerunning the same input overwrites it."""
    train = write(tmp_path / "eng.train", SMALL_2003)
    testa = write(tmp_path / "eng.testa", IOB1_2003)
    out = tmp_path / "out"
    convert_conll(train, out, "conll2003", name="eng")
    before = (out / "eng.spacy").read_bytes()
    with pytest.raises(ConversionError, match="--output-name") as info:
        convert_conll(testa, out, "conll2003", name="eng")
    assert str(train.resolve()) in str(info.value) or str(train) in str(info.value)
    assert (out / "eng.spacy").read_bytes() == before
    convert_conll(train, out, "conll2003", name="eng")  # same input again: fine
    # the default names no longer clash
    report = convert_conll(testa, out, "conll2003")
    assert [p.name for p in report.written] == ["eng.testa.spacy"]
    # a --dev-size split may not overwrite another input's dev.spacy either
    write(tmp_path / "dev.txt", SMALL_2003)
    convert_conll(tmp_path / "dev.txt", out, "conll2003")
    with pytest.raises(ConversionError, match="dev.spacy was converted from"):
        convert_conll(train, out, "conll2003", dev_size=1)


def test_output_name_option(tmp_path):
    src = write(tmp_path / "a.txt", SMALL_2003)
    report = convert_conll(src, tmp_path / "o", "conll2003", name="renamed")
    assert [p.name for p in report.written] == ["renamed.spacy"]
    with pytest.raises(ConversionError, match="without a folder"):
        convert_conll(src, tmp_path / "o", "conll2003", name="sub/x")
    assert main(["convert", str(src), str(tmp_path / "c"), "--format", "conll2003",
                 "--output-name", "x.spacy"]) == 0
    assert (tmp_path / "c" / "x.spacy").is_file()


def test_gzip_input(tmp_path):
    import gzip

    plain = write(tmp_path / "p.txt", SMALL_2003)
    packed = tmp_path / "g.txt.gz"
    packed.write_bytes(gzip.compress(SMALL_2003.encode("utf8")))
    assert read_conll(packed, "conll2003") == read_conll(plain, "conll2003")
    report = convert_conll(packed, tmp_path / "gz", "conll2003")
    assert [p.name for p in report.written] == ["g.spacy"]
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(gzip.compress(SMALL_2003.encode("utf8"))[:30])
    assert_format_error(broken, "conll2003", None, "gzip", "truncated or corrupt")


@pytest.mark.parametrize("encoding,fragment", [
    ("utf-16", "UTF-16 (little-endian)"), ("utf-16-be", "UTF-16 (no byte order mark)"),
])
def test_utf16_is_named(tmp_path, encoding, fragment):
    src = tmp_path / "u16.txt"
    src.write_bytes(SMALL_2003.encode(encoding))
    assert_format_error(src, "conll2003", 1, fragment, "iconv")


COLUMNS_BIO = """\
-DOCSTART-\tO

Ana\tx\tB-PER
Blandiana\tx\tI-PER
lives\tx\tO
in\tx\tO
Paris\tx\tB-LOC

New\tx\tB-LOC
York\tx\tI-LOC
"""

COLUMNS_BIOES = """\
Ana B-PER
Blandiana E-PER
in O
Paris S-LOC

New B-LOC
Big I-LOC
York E-LOC
"""


def _ents(path: Path):
    return [[(e.start, e.end, e.label_) for e in d.ents]
            for d in read_docbin(path, spacy.blank("en").vocab)]


def test_columns_bio(tmp_path):
    report = convert_conll(write(tmp_path / "wiki.tsv", COLUMNS_BIO), tmp_path / "o", "columns")
    assert _ents(tmp_path / "o" / "wiki.spacy") == [[(0, 2, "PER"), (4, 5, "LOC"), (5, 7, "LOC")]]
    assert sum(report.read.entities.values()) == 3 and report.read.sentences == 2
    doc = read_docbin(tmp_path / "o" / "wiki.spacy", spacy.blank("en").vocab)[0]
    assert [s.text for s in doc.sents] == ["Ana Blandiana lives in Paris", "New York"]
    assert "chunks" not in doc.spans


def test_columns_tag_column_and_bioes(tmp_path):
    # the tag in the middle: word tag extra
    mid = "\n".join(" ".join((l.split()[0], l.split()[1], "z")) if l else "" for l in COLUMNS_BIOES.splitlines())
    convert_conll(write(tmp_path / "mid.txt", mid), tmp_path / "o", "columns", tag_column=2, scheme="BIOES")
    convert_conll(write(tmp_path / "end.txt", COLUMNS_BIOES), tmp_path / "o", "columns", scheme="BIOES")
    expected = [[(0, 2, "PER"), (3, 4, "LOC")], [(0, 3, "LOC")]]
    assert _ents(tmp_path / "o" / "mid.spacy") == _ents(tmp_path / "o" / "end.spacy") == expected
    bilou = COLUMNS_BIOES.replace("E-", "L-").replace("S-", "U-")
    convert_conll(write(tmp_path / "bilou.txt", bilou), tmp_path / "o", "columns", scheme="BIOES")
    assert _ents(tmp_path / "o" / "bilou.spacy") == expected


def test_columns_iob1(tmp_path):
    text = "John I-PER\nSmith I-PER\nMary B-PER\nsaw O\nParis I-LOC\n"
    convert_conll(write(tmp_path / "i.txt", text), tmp_path / "o", "columns", scheme="IOB1")
    assert _ents(tmp_path / "o" / "i.spacy") == [[(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]]


@pytest.mark.parametrize("text,scheme,line,fragments", [
    ("a O\nb I-PER\n", "BIO", 2, ["follows no open entity", "--scheme IOB1"]),
    ("a B-LOC\nb I-PER\n", "BIO", 2, ["follows an open LOC entity"]),
    ("a B-PER\nb E-PER\n", "BIO", 2, ["--scheme BIOES"]),
    ("a B-PER\nb O\n", "BIOES", 1, ["not closed with E-PER", "line 2"]),
    ("x O\na B-PER\n\nb O\n", "BIOES", 2, ["before the sentence ends"]),
    ("a E-PER\n", "BIOES", 1, ["follows no open entity"]),
    ("a X-PER\n", "BIOES", 1, ["invalid BIOES tag 'X-PER'"]),
    ("a O\nb O extra\n", "BIO", 2, ["found 3 columns", "line 1 has 2"]),
    ("lonely\n", "BIO", 1, ["at least 2"]),
])
def test_columns_errors(tmp_path, text, scheme, line, fragments):
    with pytest.raises(ConllFormatError) as info:
        convert_conll(write(tmp_path / "bad.txt", text), tmp_path / "out", "columns", scheme=scheme)
    assert info.value.line == line and str(info.value).startswith(f"{tmp_path / 'bad.txt'}:{line}:")
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not (tmp_path / "out").exists()


def test_columns_bad_options(tmp_path):
    src = write(tmp_path / "c.txt", "a x B-PER\n")
    with pytest.raises(ConllFormatError, match="--tag-column 1 does not name a tag column"):
        convert_conll(src, tmp_path / "o", "columns", tag_column=1)
    with pytest.raises(ConllFormatError, match="--tag-column 5"):
        convert_conll(src, tmp_path / "o", "columns", tag_column=5)
    with pytest.raises(ConversionError, match="columns only"):
        convert_conll(write(tmp_path / "s.txt", SMALL_2003), tmp_path / "o", "conll2003", scheme="BIO")


def test_cli_columns(tmp_path):
    src = write(tmp_path / "wiki.tsv.gz", "")
    import gzip

    src.write_bytes(gzip.compress(COLUMNS_BIOES.encode()))
    result = run_cli("convert", str(src), str(tmp_path / "out"), "--format", "columns",
                     "--scheme", "BIOES", "--output-name", "wiki")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert rows["entities"] == ["3", "3", "3"]
    assert "chunks" not in rows
    assert "tags read as BIOES" in result.stdout
