"""Per run, the same task / row / seed under two budgets: dev and test F1 of
each, the test difference, the best and the last epoch of the longer run and
its training minutes.

    python -m spacy_mat.budget_compare --short runs results --long runs_25ep results/budget_25ep \
        [--results results/budget_25ep] [--tasks ner chunk]

Reads the ``result.json`` and ``training_log.jsonl`` that
:mod:`spacy_mat.experiments` writes in every run folder, and the run records
it keeps beside each summary (``<results>/runs/``, :mod:`spacy_mat.run_records`)
for runs whose folders are gone. A run of ``--long``
without its twin in ``--short`` is listed with empty short-budget cells, so
every long run is counted. A short run whose record was imported from a
summary (:func:`spacy_mat.run_records.imported`: its folder is gone and
an earlier revision trained it) is marked: its twin need not retrace it, so
its test difference mixes the budget with code drift. A long run whose
best epoch lies within the short run's epoch cap would, retracing its twin,
end with the same model; when its scores differ it is marked diverged
(:func:`diverged`): the two took different trajectories (another code
revision, thread count or CPU), so its test difference is run-to-run
variation, not the budget. Writes ``<results>/budget_compare.{json,md}``.
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


def diverged(short: Optional[Dict[str, Any]], long: Dict[str, Any]) -> Optional[bool]:
    """Whether the longer run ``long``, whose model-best comes from within the
    epochs of the shorter run ``short`` (best epoch below its ``max_epochs``),
    scores differently from it: a retrace would end with the same model.
    None when that cannot be told (no twin, no best epoch, no epoch cap) or
    the best epoch lies beyond the cap (the budget can explain a change)."""
    if short is None or long.get("best_epoch") is None:
        return None
    cap = (short.get("budget") or {}).get("max_epochs")
    if not cap or long["best_epoch"] >= cap:
        return None
    before, after = _scores(short), _scores(long)
    pairs = [(before[k], after[k]) for k in ("dev", "test")
             if before[k] is not None and after[k] is not None]
    return any(abs(a - b) > 1e-9 for a, b in pairs) if pairs else None


def compare(short: Sequence[Path], long: Sequence[Path],
            tasks: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """One entry per finished run of ``long`` (of ``tasks``, default all), in
    task, row, seed order."""
    shorter = load(short, with_epochs=False)  # only the long runs' epochs are reported
    task_order = {task: i for i, task in enumerate(TASKS)}
    row_order = {row: i for i, row in enumerate(METHODS)}
    runs = sorted((r for r in load(long).values() if tasks is None or r["task"] in tasks),
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
            "diverged": diverged(twin, result),
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
             "short_imported": sum(bool(e.get("short_imported")) for e in group),
             "diverged": sum(bool(e.get("diverged")) for e in group)}
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
            f"| {_pct(e['long']['dev'])} | {_pct(e['long']['test'])} "
            f"| {_pct(e['test_delta'], sign=True)}{'†' if e.get('diverged') else ''} "
            f"| {e['best_epoch'] if e['best_epoch'] is not None else '–'} "
            f"| {e['last_epoch'] if e['last_epoch'] is not None else '–'} "
            f"| {'–' if e['train_minutes'] is None else format(e['train_minutes'], '.0f')} |")
    if any(e.get("short_imported") for e in entries):
        lines += ["", f"\\* {short_label} record imported from a summary (its run folder is gone; an earlier "
                  "revision trained it): the two runs need not share a trajectory, so its test Δ mixes the "
                  "budget with code drift."]
    if any(e.get("diverged") for e in entries):
        lines += ["", f"† diverged: the {long_label} run's best epoch lies within the {short_label} cap, so "
                  "retracing its twin it would end with the same model, yet its scores differ (another code "
                  "revision, thread count or CPU): this test Δ is run-to-run variation, not the budget."]
    lines += ["", "| task | row | runs | mean test Δ | runs that gained | short record imported "
              "| diverged |", "| --- | --- | :-: | ---: | :-: | :-: | :-: |"]
    for d in deltas(entries):
        lines.append(f"| {d['task']} | {d['row']} | {d['runs']} | {_pct(d['mean_test_delta'], sign=True)} "
                     f"| {d['gained']}/{d['runs']} | {d['short_imported']} | {d['diverged']} |")
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
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(TASKS),
                        help="only these tasks' runs (default: every task found)")
    args = parser.parse_args(argv)
    for folder in [*args.short, *args.long]:
        if not folder.is_dir():
            parser.error(f"no such folder: {folder}")
    entries = compare(args.short, args.long, args.tasks)
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
