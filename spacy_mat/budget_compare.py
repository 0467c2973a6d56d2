"""Per run, the same task / row / seed under two budgets: dev and test F1 of
each, the test difference, the best and the last epoch of the longer run and
its training minutes.

    python -m spacy_mat.budget_compare --short runs results --long runs_25ep results/budget_25ep \
        [--results results/budget_25ep]

Reads the ``result.json`` and ``training_log.jsonl`` that
:mod:`spacy_mat.experiments` writes in every run folder, and the run records
it keeps beside each summary (``<results>/runs/``, :mod:`spacy_mat.run_records`)
for runs whose folders are gone. A run of ``--long``
without its twin in ``--short`` is listed with empty short-budget cells, so
every long run is counted. A short run whose record was imported from a
summary (:func:`spacy_mat.run_records.imported`: its folder is gone and
an earlier revision trained it) is marked: its twin need not retrace it, so
its test difference mixes the budget with code drift. Writes
``<results>/budget_compare.{json,md}``.
"""
import argparse
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .experiments import METHODS, TASKS, Run, _write_json, gather
from .run_records import epochs, imported, merge, read_records


def _scores(result: Optional[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    if result is None:
        return {"dev": None, "test": None}
    key = result["score_key"]
    return {"dev": result["dev"].get(key), "test": result["test"].get(key)}


def load(paths: Sequence[Path], with_epochs: bool = True) -> Dict[tuple, Dict[str, Any]]:
    """The finished runs of ``paths`` by (task, row, seed): each path is a
    folder of run folders (``<task>_<row>/seed<k>/result.json``) or a results
    folder with records (``runs/<task>_<row>/seed<k>.json``), or both; a run
    folder wins over a record, the first path over later ones. With
    ``with_epochs``, each run carries its best and last epoch (from the run
    folder's log, or the record's)."""
    runs: Dict[tuple, Dict[str, Any]] = {}
    for path in paths:
        found = [{**r, **epochs(Run(r["task"], r["row"], r["seed"]).folder(path))} if with_epochs else r
                 for r in gather(path)]
        for result in merge(found, read_records(path)):
            runs.setdefault((result["task"], result["row"], result["seed"]), result)
    return runs


def compare(short: Sequence[Path], long: Sequence[Path]) -> List[Dict[str, Any]]:
    """One entry per finished run of ``long``, in task, row, seed order."""
    shorter = load(short, with_epochs=False)  # only the long runs' epochs are reported
    task_order = {task: i for i, task in enumerate(TASKS)}
    row_order = {row: i for i, row in enumerate(METHODS)}
    runs = sorted(load(long).values(),
                  key=lambda r: (task_order.get(r["task"], len(TASKS)), r["task"],
                                 row_order.get(r["row"], len(METHODS)), r["row"], r["seed"]))
    entries = []
    for result in runs:
        twin = shorter.get((result["task"], result["row"], result["seed"]))
        before = _scores(twin)
        after = _scores(result)
        delta = None if before["test"] is None else after["test"] - before["test"]
        seconds = result.get("train_seconds")
        entries.append({
            "task": result["task"], "row": result["row"], "seed": result["seed"],
            "short": before, "long": after, "test_delta": delta, "short_imported": imported(twin),
            "best_epoch": result.get("best_epoch"), "last_epoch": result.get("last_epoch"),
            "train_minutes": None if seconds is None else seconds / 60,
        })
    return entries


def deltas(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per task and row: the mean test difference and how many runs gained."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for entry in entries:
        if entry["test_delta"] is not None:
            groups.setdefault((entry["task"], entry["row"]), []).append(entry)
    return [{"task": task, "row": row, "runs": len(group),
             "mean_test_delta": statistics.mean(e["test_delta"] for e in group),
             "gained": sum(e["test_delta"] > 0 for e in group),
             "short_imported": sum(bool(e.get("short_imported")) for e in group)}
            for (task, row), group in groups.items()]


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
            f"| {e['task']} | {e['seed']} | {e['row']} | {_pct(e['short']['dev'])} "
            f"| {_pct(e['short']['test'])}{'*' if e.get('short_imported') else ''} "
            f"| {_pct(e['long']['dev'])} | {_pct(e['long']['test'])} | {_pct(e['test_delta'], sign=True)} "
            f"| {e['best_epoch'] if e['best_epoch'] is not None else '–'} "
            f"| {e['last_epoch'] if e['last_epoch'] is not None else '–'} "
            f"| {'–' if e['train_minutes'] is None else format(e['train_minutes'], '.0f')} |")
    if any(e.get("short_imported") for e in entries):
        lines += ["", f"\\* {short_label} record imported from a summary (its run folder is gone; an earlier "
                  "revision trained it): the two runs need not share a trajectory, so its test Δ mixes the "
                  "budget with code drift."]
    lines += ["", "| task | row | runs | mean test Δ | runs that gained | short record imported |",
              "| --- | --- | :-: | ---: | :-: | :-: |"]
    for d in deltas(entries):
        lines.append(f"| {d['task']} | {d['row']} | {d['runs']} | {_pct(d['mean_test_delta'], sign=True)} "
                     f"| {d['gained']}/{d['runs']} | {d['short_imported']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=Path, nargs="+", default=[Path("runs")],
                        help="the shorter budget: run folders and/or results folders with records "
                             "(runs/<task>_<row>/seed<k>.json)")
    parser.add_argument("--long", type=Path, nargs="+", required=True,
                        help="the longer budget, the same way")
    parser.add_argument("--results", type=Path, default=None,
                        help="where budget_compare.{json,md} go (default: print only)")
    parser.add_argument("--labels", nargs=2, default=("short", "long"), metavar=("SHORT", "LONG"),
                        help="column labels, e.g. '10 ep' '25 ep'")
    args = parser.parse_args(argv)
    for folder in [*args.short, *args.long]:
        if not folder.is_dir():
            parser.error(f"no such folder: {folder}")
    entries = compare(args.short, args.long)
    if not entries:
        parser.error("no finished run (result.json or record) under "
                     + ", ".join(str(p) for p in args.long))
    text = markdown(entries, *args.labels)
    print(text, end="")
    if args.results is not None:
        _write_json(args.results / "budget_compare.json",
                    {"short": [str(p) for p in args.short], "long": [str(p) for p in args.long],
                     "runs": entries,
                     "per_row": deltas(entries)})
        (args.results / "budget_compare.md").write_text(text, encoding="utf8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
