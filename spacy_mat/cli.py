"""Command line: ``python -m spacy_mat <subcommand>``.

Each subcommand has an ``_add_<name>`` function that declares its arguments
and a ``cmd_<name>(args) -> int`` function that runs it. Heavy imports (spaCy,
which pulls in torch through thinc) happen inside the ``cmd_`` functions so
that ``--help`` stays fast.
"""
import argparse
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .corpus import ConversionReport, Counts


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _table_rows(counts: "Counts", has_ner: bool) -> List[Tuple[str, int]]:
    """``(name, value)`` rows of a counts column."""
    rows = [
        ("documents", counts.documents),
        ("sentences", counts.sentences),
        ("tokens", counts.tokens),
    ]
    if has_ner:
        rows.append(("entities", sum(counts.entities.values())))
    rows.append(("chunks", sum(counts.chunks.values())))
    return rows


def format_report(report: "ConversionReport") -> str:
    """A counts table: read from the input, then in and out per written file."""
    from .corpus import FORMATS

    has_ner = "NER" in FORMATS[report.fmt]
    header = ["", "read"]
    columns = [_table_rows(report.read, has_ner)]
    for path, (counts_in, counts_out) in report.written.items():
        header += [f"{path.name} in", f"{path.name} out"]
        columns += [_table_rows(counts_in, has_ner), _table_rows(counts_out, has_ner)]
    table = [header] + [
        [name] + [f"{column[i][1]:,}" for column in columns]
        for i, (name, _) in enumerate(columns[0])
    ]
    widths = [max(len(row[j]) for row in table) for j in range(len(header))]
    lines = [
        "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])
        for row in table
    ]
    return "\n".join(lines + _report_notes(report))


def _report_notes(report: "ConversionReport") -> List[str]:
    """Why the written counts differ from those read, if they do."""
    notes = []
    if report.n_sents is not None:
        notes.append(
            f"--n-sents {report.n_sents}: kept the first {report.total_in.sentences:,} "
            f"of {report.read.sentences:,} sentences read"
        )
    if report.split_documents:
        notes.append(
            f"--dev-size {report.dev_size}: {report.split_documents} document split in two "
            "at the dev boundary; each part counts as a document"
        )
    return notes


def _add_convert(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a CoNLL-2003/2000 file to spaCy's .spacy format",
        description="Convert a CoNLL file to OUTPUT_DIR/<input stem>.spacy (and dev.spacy "
        "with --dev-size), then re-read the output and check its counts.",
    )
    parser.add_argument("input", help="CoNLL input file")
    parser.add_argument("output_dir", help="directory for the .spacy file(s)")
    parser.add_argument("--format", required=True, choices=["conll2003", "conll2000"], dest="fmt")
    parser.add_argument(
        "--dev-size", type=_positive_int, default=None,
        help="send the last N sentences to OUTPUT_DIR/dev.spacy",
    )
    parser.add_argument(
        "--n-sents", type=_positive_int, default=None,
        help="keep only the first N sentences (for small demo/CI slices)",
    )
    parser.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from .corpus import ConversionError, convert_conll

    try:
        report = convert_conll(args.input, args.output_dir, args.fmt, args.dev_size, args.n_sents)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


SUBCOMMANDS = (_add_convert,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_mat", description="spacy_mat tools.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)
