"""Evaluate a trained pipeline on a ``.spacy`` file, one gold sentence per
example, and write spaCy's score keys as JSON.

    python -m spacy_mat.evaluate MODEL DATA [--output metrics/x.json] [--gpu-id 0]

Why not ``spacy evaluate --gold-preproc``: spaCy's own reader splits docs into
sentences with ``Span.as_doc()``, which drops ``doc.spans``, so a chunking
model (``doc.spans["chunks"]``) would be scored against no gold chunks. This
entry point reads the examples with :class:`spacy_mat.readers.SentenceCorpus`
(the reader the configs train with: gold tokens, one example per sentence,
``doc.ents`` and every span group kept) and scores them with
``nlp.evaluate``, so the numbers are those of the training log's dev scores,
on any file.

The JSON holds the dict ``nlp.evaluate`` returns (``ents_p/r/f``,
``ents_per_type`` or ``spans_KEY_p/r/f``, ``spans_KEY_per_type``,
``token_acc``, ``speed``, ...), as ``spacy evaluate --output`` writes it.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

PathLike = Union[str, Path]


def evaluate(nlp: Any, data: PathLike, batch_size: int = 1000) -> Dict[str, Any]:
    """``nlp.evaluate`` on the gold sentences of ``data`` (a ``.spacy`` file)."""
    from .readers import SentenceCorpus

    examples = list(SentenceCorpus(data)(nlp))
    if not examples:
        raise ValueError(f"{data}: no sentences to evaluate on")
    return nlp.evaluate(examples, batch_size=batch_size)


def _prf_rows(scores: Dict[str, Any]) -> List[List[str]]:
    """``[name, value]`` rows: token accuracy, every ``*_p/_r/_f`` triple
    (tokenization P/R/F aside: gold tokens make them 100) and the speed."""
    rows = []
    if isinstance(scores.get("token_acc"), float):
        rows.append(["TOK", f"{scores['token_acc'] * 100:.2f}"])
    for key in scores:
        prefix = key[:-2]
        if key.endswith("_f") and prefix != "token" and isinstance(scores[key], float):
            name = "NER" if prefix == "ents" else prefix.upper().replace("SPANS_", "SPANS ")
            for suffix in ("p", "r", "f"):
                value = scores.get(f"{prefix}_{suffix}")
                rows.append([f"{name} {suffix.upper()}",
                             f"{value * 100:.2f}" if isinstance(value, float) else "-"])
    if isinstance(scores.get("speed"), (int, float)):
        rows.append(["SPEED", f"{scores['speed']:.0f}"])
    return rows


def format_scores(scores: Dict[str, Any]) -> str:
    """The totals table, then a P/R/F table per type for each ``*_per_type``."""
    from wasabi.tables import table

    parts = [table(_prf_rows(scores), header=["", "score"], aligns=("l", "r"))]
    for key, per_type in scores.items():
        if key.endswith("_per_type") and per_type:
            rows = [[label] + [f"{values[s] * 100:.2f}" for s in ("p", "r", "f")]
                    for label, values in sorted(per_type.items())]
            parts.append(key + "\n" + table(rows, header=["", "P", "R", "F"], aligns=("l", "r", "r", "r")))
    return "\n".join(parts)


def _require_file(path: Path, what: str) -> Optional[str]:
    if not path.exists():
        return f"{what} not found: {path}"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_mat.evaluate",
        description="Score a pipeline on a .spacy file, one gold sentence per example "
        "(keeps doc.spans, unlike spacy evaluate --gold-preproc); print the scores and "
        "optionally write them as JSON with spaCy's keys.")
    parser.add_argument("model", help="pipeline directory or installed package name")
    parser.add_argument("data", help=".spacy file with the gold annotations")
    parser.add_argument("--output", "-o", default=None, help="write the scores to this JSON file")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--displacy-path", "-dp", default=None,
                        help="folder for displaCy pages of the predictions (entities.html, spans-KEY.html)")
    parser.add_argument("--displacy-limit", "-dl", type=int, default=25,
                        help="number of sentences in the displaCy pages")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    data = Path(args.data)
    problem = _require_file(data, "evaluation data")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    import spacy

    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    try:
        nlp = spacy.load(args.model)
    except OSError as err:
        print(f"error: cannot load pipeline {args.model!r}: {err}", file=sys.stderr)
        return 1
    try:
        scores = evaluate(nlp, data, batch_size=args.batch_size)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.model} on {data}")
    print(format_scores(scores))
    if args.displacy_path:
        from .readers import SentenceCorpus
        from .visualize import write_displacy

        examples = SentenceCorpus(data)(nlp)
        for page in write_displacy(nlp, (eg.reference for eg in examples), args.displacy_path,
                                   args.displacy_limit):
            print(f"wrote {page}")
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf8")
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
