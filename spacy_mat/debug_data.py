"""``python -m spacy_mat debug-data``: what ``spacy debug data`` reports for
``ner`` (it keys on the factory name and says nothing about mat_tagger):
label counts per file, missing annotation, entities that cross a sentence
boundary, labels of the dev data unseen in training, empty docs.

    python -m spacy_mat debug-data TRAIN.spacy [DEV.spacy] [--target ents|spans:KEY] [--json OUT]

Exit status 1 when a problem that breaks or silently changes training was
found (a sentence-crossing entity: mat_tagger labels one sentence at a time;
dev labels unseen in training), 0 otherwise.
"""
import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional


def file_report(path: Path, target: str = "ents", examples_shown: int = 5) -> Dict[str, Any]:
    """Counts of one .spacy file for the target layer (``ents`` or ``spans:KEY``)."""
    import spacy
    from spacy.tokens import DocBin

    from .scoring import ENTS, parse_target

    kind, key = parse_target(target)
    nlp = spacy.blank("en")
    labels: Counter = Counter()
    report: Dict[str, Any] = {"path": str(path), "target": target, "docs": 0, "sentences": 0,
                              "tokens": 0, "empty_docs": 0, "docs_without_annotation": 0,
                              "tokens_missing": 0, "sentence_crossing": 0,
                              "sentence_crossing_examples": []}
    for i, doc in enumerate(DocBin().from_disk(path).get_docs(nlp.vocab)):
        report["docs"] += 1
        report["tokens"] += len(doc)
        if not len(doc):
            report["empty_docs"] += 1
            continue
        has_sents = doc.has_annotation("SENT_START")
        starts = [t.i for t in doc if t.is_sent_start] if has_sents else [0]
        report["sentences"] += len(starts)
        if kind == ENTS:
            iob = doc.to_array("ENT_IOB").reshape(-1)
            missing = int((iob == 0).sum())
            spans = list(doc.ents)
        else:
            missing = 0 if key in doc.spans else len(doc)
            spans = list(doc.spans.get(key, []))
        report["tokens_missing"] += missing
        report["docs_without_annotation"] += int(missing == len(doc))
        boundaries = set(starts[1:])
        for span in spans:
            labels[span.label_] += 1
            if any(b in boundaries for b in range(span.start + 1, span.end)):
                report["sentence_crossing"] += 1
                if len(report["sentence_crossing_examples"]) < examples_shown:
                    report["sentence_crossing_examples"].append(
                        f"doc {i}, tokens {span.start}-{span.end}: {span.text!r} ({span.label_})")
    report["labels"] = dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0])))
    report["spans"] = sum(labels.values())
    return report


def debug_data(train: Path, dev: Optional[Path] = None, target: str = "ents") -> Dict[str, Any]:
    """Reports of the files and the problems found across them."""
    reports = [file_report(train, target)] + ([file_report(dev, target)] if dev else [])
    problems: List[str] = []
    warnings: List[str] = []
    for r in reports:
        if r["sentence_crossing"]:
            problems.append(f"{r['path']}: {r['sentence_crossing']} span(s) cross a sentence "
                            "boundary; mat_tagger labels one sentence at a time (use_sents) and "
                            "cannot predict them: fix the sentence boundaries or set use_sents = false")
        if r["tokens_missing"]:
            warnings.append(f"{r['path']}: {r['tokens_missing']:,} token(s) with missing annotation "
                            f"({r['docs_without_annotation']:,} doc(s) without any): trained as "
                            "unknown (partial-label CRF likelihood), not as O")
        if r["empty_docs"]:
            warnings.append(f"{r['path']}: {r['empty_docs']} empty doc(s)")
        if not r["labels"]:
            problems.append(f"{r['path']}: no {target} annotation at all")
    if dev:
        unseen = sorted(set(reports[1]["labels"]) - set(reports[0]["labels"]))
        if unseen:
            problems.append(f"labels in the dev data but not in training: {unseen}")
    return {"files": reports, "problems": problems, "warnings": warnings}


def format_report(result: Dict[str, Any]) -> str:
    lines = []
    for r in result["files"]:
        lines.append(f"== {r['path']} ({r['target']})")
        lines.append(f"{r['docs']:,} docs, {r['sentences']:,} sentences, {r['tokens']:,} tokens, "
                     f"{r['spans']:,} spans")
        lines.append(f"missing annotation: {r['tokens_missing']:,} tokens, "
                     f"{r['docs_without_annotation']:,} docs without any")
        lines.append(f"sentence-crossing spans: {r['sentence_crossing']:,}")
        lines.extend(f"  {e}" for e in r["sentence_crossing_examples"])
        width = max((len(label) for label in r["labels"]), default=5)
        lines.append("label counts:")
        lines.extend(f"  {label.ljust(width)}  {count:>8,}" for label, count in r["labels"].items())
    lines.extend(f"warning: {w}" for w in result["warnings"])
    lines.extend(f"problem: {p}" for p in result["problems"])
    if not result["problems"]:
        lines.append("no problems found")
    return "\n".join(lines)


def add_subparser(subparsers: "argparse._SubParsersAction") -> None:
    parser = subparsers.add_parser(
        "debug-data", help="label counts, missing annotation and sentence-crossing spans of .spacy data",
        description="What `spacy debug data` reports for ner, for mat_tagger's data: label "
        "counts, missing annotation (trained as unknown), spans that cross a sentence boundary, "
        "dev labels unseen in training. Exit status 1 on a problem.")
    parser.add_argument("train", help="training data (.spacy)")
    parser.add_argument("dev", nargs="?", default=None, help="development data (.spacy)")
    parser.add_argument("--target", default="ents", help="ents or spans:KEY (default: ents)")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the report as JSON")
    parser.set_defaults(func=cmd_debug_data)


def cmd_debug_data(args: argparse.Namespace) -> int:
    import sys

    for path in filter(None, (args.train, args.dev)):
        if not Path(path).exists():
            print(f"error: data file not found: {path}", file=sys.stderr)
            return 1
    try:
        result = debug_data(Path(args.train), Path(args.dev) if args.dev else None, args.target)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
        print(f"wrote {out}")
    return 1 if result["problems"] else 0
