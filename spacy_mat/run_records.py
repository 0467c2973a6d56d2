"""Durable per-run records: a copy of every finished run's ``result.json``
(plus its best and last epoch) kept beside the summary, so a grid outlives its
run folders.

Run folders hold the models (hundreds of MB per task) and are not committed;
when the machine that trained them goes, a later summary would lose those
runs. :mod:`spacy_mat.experiments` therefore writes one small JSON per
finished run to ``<results>/runs/<task>_<row>/seed<k>.json`` and summarises
the union of the run folders and these records (a run folder wins over its
record). Commit ``<results>/runs/`` with the summary.

Runs finished before records existed can be imported from a committed
``summary.json`` (per-seed test F1 only; marked as such in every record)::

    python -m spacy_mat.run_records import results/budget_25ep/summary.json

"""
import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .experiments import Run, _write_json

RECORDS = "runs"
TRAINING_LOG = "training_log.jsonl"


def record_path(results_dir: Path, task: str, row: str, seed: int) -> Path:
    return results_dir / RECORDS / f"{task}_{row}" / f"seed{seed}.json"


def epochs(folder: Path) -> Dict[str, Optional[int]]:
    """The epoch of the best dev score and the last epoch logged in the run
    folder's ``training_log.jsonl`` (spaCy's numbering: the first epoch is 0)."""
    path = folder / TRAINING_LOG
    if not path.exists():
        return {"best_epoch": None, "last_epoch": None}
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not a JSON line ({err})") from None
    if not lines:
        return {"best_epoch": None, "last_epoch": None}
    best = max(lines, key=lambda entry: entry["score"])
    return {"best_epoch": best["epoch"], "last_epoch": lines[-1]["epoch"]}


def write_records(results_dir: Path, output: Path, results: Iterable[Dict[str, Any]]) -> List[Path]:
    """One record per finished run of ``output`` (``results`` as gathered
    from it): the result, its epochs and where it came from."""
    written = []
    for result in results:
        folder = Run(result["task"], result["row"], result["seed"]).folder(output)
        record = {**{k: v for k, v in result.items() if k != "record"}, **epochs(folder),
                  "record": {"from": str(folder / "result.json")}}
        path = record_path(results_dir, result["task"], result["row"], result["seed"])
        _write_json(path, record)
        written.append(path)
    return written


def read_records(results_dir: Path) -> List[Dict[str, Any]]:
    """Every record under ``<results_dir>/runs/``; a file that is not a
    record is an error naming it."""
    records = []
    for path in sorted((results_dir / RECORDS).glob("*/seed*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf8"))
        except ValueError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
        missing = [k for k in ("task", "row", "seed", "score_key", "test") if k not in record]
        if missing:
            raise ValueError(f"{path}: not a run record (no {', '.join(missing)})")
        records.append(record)
    return records


def merge(found: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The runs of ``found`` (run folders) and those of ``records`` whose run
    is not among them, each marked with ``"source"``."""
    have = {(r["task"], r["row"], r["seed"]) for r in found}
    out = [dict(r, source="run folder") for r in found]
    out += [dict(r, source="record") for r in records if (r["task"], r["row"], r["seed"]) not in have]
    return out


def imported(result: Optional[Dict[str, Any]]) -> bool:
    """Whether ``result`` is a record :func:`import_summary` wrote (test F1
    only, trained by an earlier revision) rather than one written from its
    run folder."""
    return result is not None and "imported" in (result.get("record") or {})


def import_summary(summary_path: Path, results_dir: Path, overwrite: bool = False) -> List[Path]:
    """Records for the runs of a committed ``summary.json`` (its per-seed test
    F1; dev F1, timing and epochs are not in a summary and stay empty). An
    existing record is kept unless ``overwrite``."""
    summary = json.loads(summary_path.read_text(encoding="utf8"))
    written = []
    for row in summary.get("rows", []):
        for task, stats in row.items():
            if not isinstance(stats, dict) or "test_f" not in stats:
                continue
            vectors = stats.get("vectors", ["unrecorded"])  # older summaries lack the field
            if len(stats["budgets"]) != 1 or len(vectors) != 1:
                raise ValueError(f"{summary_path}: {task} {row['row']} mixes budgets or vectors "
                                 f"({stats['budgets']}, {vectors}); cannot tell them apart")
            for seed, test in zip(stats["seeds"], stats["test_f"]):
                path = record_path(results_dir, task, row["row"], seed)
                if path.exists() and not overwrite:
                    continue
                _write_json(path, {
                    "task": task, "row": row["row"], "method": row.get("method", row["row"]),
                    "seed": seed, "score_key": stats["score_key"], "vectors": vectors[0],
                    "budget": None, "budget_text": stats["budgets"][0],
                    "dev": {}, "test": {stats["score_key"]: test}, "train_seconds": None,
                    "best_epoch": None, "last_epoch": None,
                    "record": {"from": f"{summary_path} (per-seed test F1 only: the run folder "
                                       "was lost before records existed)",
                               "imported": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
                })
                written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_mat.run_records",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="records from a committed summary.json")
    imp.add_argument("summary", type=Path)
    imp.add_argument("--results", type=Path, default=None,
                     help="where runs/ goes (default: the summary's folder)")
    imp.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if not args.summary.is_file():
        parser.error(f"no such file: {args.summary}")
    results_dir = args.results if args.results is not None else args.summary.parent
    try:
        written = import_summary(args.summary, results_dir, overwrite=args.overwrite)
    except (ValueError, KeyError) as err:
        parser.error(f"{args.summary}: cannot import ({err})")
    print(f"wrote {len(written)} records under {results_dir / RECORDS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
