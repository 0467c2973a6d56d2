"""Per run, the same task / row / seed under two budgets: dev and test F1 of
each, the test difference, the best and the last epoch of the longer run and
its training minutes.

    python -m spacy_mat.budget_compare --short runs --long runs_25ep \
        [--results results/budget_25ep]

Reads the ``result.json`` and ``training_log.jsonl`` that
:mod:`spacy_mat.experiments` writes in every run folder. A run of ``--long``
without its twin in ``--short`` is listed with empty short-budget cells, so
every long run is counted. Writes ``<results>/budget_compare.{json,md}``.
"""
import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .experiments import METHODS, TASKS, _write_json, gather

LOG = "training_log.jsonl"


def epochs(folder: Path) -> Dict[str, Optional[int]]:
    """The epoch of the best dev score and the last epoch logged (spaCy's
    numbering: the first epoch is 0)."""
    path = folder / LOG
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


def _scores(result: Optional[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    if result is None:
        return {"dev": None, "test": None}
    key = result["score_key"]
    return {"dev": result["dev"].get(key), "test": result["test"].get(key)}


def compare(short: Path, long: Path) -> List[Dict[str, Any]]:
    """One entry per finished run under ``long``, in task, row, seed order."""
    shorter = {(r["task"], r["row"], r["seed"]): r for r in gather(short)}
    task_order = {task: i for i, task in enumerate(TASKS)}
    row_order = {row: i for i, row in enumerate(METHODS)}
    runs = sorted(gather(long), key=lambda r: (task_order.get(r["task"], len(TASKS)), r["task"],
                                               row_order.get(r["row"], len(METHODS)), r["row"], r["seed"]))
    entries = []
    for result in runs:
        folder = long / f"{result['task']}_{result['row']}" / f"seed{result['seed']}"
        before = _scores(shorter.get((result["task"], result["row"], result["seed"])))
        after = _scores(result)
        delta = None if before["test"] is None else after["test"] - before["test"]
        entries.append({
            "task": result["task"], "row": result["row"], "seed": result["seed"],
            "short": before, "long": after, "test_delta": delta,
            **epochs(folder), "train_minutes": result.get("train_seconds", 0.0) / 60,
        })
    return entries


def deltas(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per task and row: the mean test difference and how many runs gained."""
    groups: Dict[tuple, List[float]] = {}
    for entry in entries:
        if entry["test_delta"] is not None:
            groups.setdefault((entry["task"], entry["row"]), []).append(entry["test_delta"])
    return [{"task": task, "row": row, "runs": len(values), "mean_test_delta": statistics.mean(values),
             "gained": sum(value > 0 for value in values)} for (task, row), values in groups.items()]


def _pct(value: Optional[float], sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:+.2f}" if sign else f"{value * 100:.2f}"


def markdown(entries: Sequence[Dict[str, Any]], short_label: str, long_label: str) -> str:
    head = (f"| task | seed | row | dev {short_label} | test {short_label} | dev {long_label} "
            f"| test {long_label} | test Δ | best epoch | last epoch | train min |")
    lines = [head, "| --- | :-: | --- | ---: | ---: | ---: | ---: | ---: | :-: | :-: | ---: |"]
    for e in entries:
        lines.append(
            f"| {e['task']} | {e['seed']} | {e['row']} | {_pct(e['short']['dev'])} | {_pct(e['short']['test'])} "
            f"| {_pct(e['long']['dev'])} | {_pct(e['long']['test'])} | {_pct(e['test_delta'], sign=True)} "
            f"| {e['best_epoch'] if e['best_epoch'] is not None else '–'} "
            f"| {e['last_epoch'] if e['last_epoch'] is not None else '–'} | {e['train_minutes']:.0f} |")
    lines += ["", "| task | row | runs | mean test Δ | runs that gained |", "| --- | --- | :-: | ---: | :-: |"]
    for d in deltas(entries):
        lines.append(f"| {d['task']} | {d['row']} | {d['runs']} | {_pct(d['mean_test_delta'], sign=True)} "
                     f"| {d['gained']}/{d['runs']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=Path, default=Path("runs"), help="run folders of the shorter budget")
    parser.add_argument("--long", type=Path, required=True, help="run folders of the longer budget")
    parser.add_argument("--results", type=Path, default=None,
                        help="where budget_compare.{json,md} go (default: print only)")
    parser.add_argument("--labels", nargs=2, default=("short", "long"), metavar=("SHORT", "LONG"),
                        help="column labels, e.g. '10 ep' '25 ep'")
    args = parser.parse_args(argv)
    for folder in (args.short, args.long):
        if not folder.is_dir():
            parser.error(f"no such folder: {folder}")
    entries = compare(args.short, args.long)
    if not entries:
        parser.error(f"no finished run (result.json) under {args.long}")
    text = markdown(entries, *args.labels)
    print(text, end="")
    if args.results is not None:
        _write_json(args.results / "budget_compare.json",
                    {"short": str(args.short), "long": str(args.long), "runs": entries,
                     "per_row": deltas(entries)})
        (args.results / "budget_compare.md").write_text(text, encoding="utf8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
