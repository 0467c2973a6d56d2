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

With ``--long-means`` it also gives the grid's table at the longer budget
(:func:`at_long_budget`): per row, mean ± std over seeds and the paired
per-seed comparisons, taking each seed's longer run where there is one, and
otherwise its shorter run when that one stopped early (before its epoch cap,
with the same patience): a longer cap would not have changed it. A seed
whose shorter run hit its cap (or whose epochs are unknown) and that has no
longer run is left out and listed. Where the results folders hold the test
probes of :mod:`spacy_mat.grid_analysis` (``analysis.json``), the same runs'
probes are averaged too (Table 3 and the robustness table).
"""
import argparse
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .experiments import METHODS, TASKS, Run, _write_json, gather
from .experiments import markdown as summary_markdown
from .experiments import summarize
from .grid_analysis import aggregate, earlier_runs
from .grid_analysis import markdown as probes_markdown
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


def _evals_of_patience(config: Optional[str], patience: int) -> Optional[float]:
    """The patience in evaluations: ``patience`` steps over the config's
    ``[training] eval_frequency`` (None when the config cannot be read)."""
    if not config or not Path(config).is_file():
        return None
    from spacy.util import load_config

    frequency = load_config(Path(config), interpolate=False)["training"].get("eval_frequency")
    return patience / frequency if frequency else None


def _stopped_early(short: Dict[str, Any], long_budget: Dict[str, Any]) -> Optional[str]:
    """Why ``short`` cannot stand for a run under ``long_budget`` (None when
    it can: it stopped before its epoch cap, with the same patience and step
    limit). A run whose last evaluation lies in the cap's last epoch stopped
    early only if its patience ran out there too: the grid's configs evaluate
    once per epoch (``eval_frequency`` = steps per epoch), so that is when its
    best epoch lies ``patience / eval_frequency`` epochs before its last."""
    budget = short.get("budget")
    if not budget:
        return "budget not recorded"
    if budget.get("patience") != long_budget.get("patience") or \
            budget.get("max_steps") != long_budget.get("max_steps"):
        return "other patience or step limit"
    best, last, cap = short.get("best_epoch"), short.get("last_epoch"), budget.get("max_epochs")
    if best is None or last is None:
        return "epochs not recorded"
    if not cap or last + 1 < cap:
        return None
    patience = budget.get("patience")
    evals = _evals_of_patience(short.get("config"), patience) if patience else None
    if evals is None:
        return (f"last epoch in its cap of {cap} epochs, and its patience in epochs is unknown "
                f"(config {short.get('config')!r} not readable here)")
    if last - best >= evals:
        return None
    return f"reached its cap of {cap} epochs"


def at_long_budget(short: Sequence[Path], long: Sequence[Path],
                   tasks: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The runs that make up the grid at the longer budget, per task with a
    longer run: each (row, seed) of either budget gives its longer run, or
    its shorter run where that stopped early (``"carried"``), or is listed in
    ``"left_out"`` with the reason. A row with a seed left out is
    ``"incomplete"`` and none of its runs is in ``"runs"``: a mean over the
    seeds that stopped early would favour them. Returns ``{"runs",
    "carried", "left_out", "incomplete"}``."""
    longer = {key: r for key, r in load(long).items() if tasks is None or key[0] in tasks}
    shorter = load(short, with_epochs=False)
    budgets = {}
    for (task, _, _), result in sorted(longer.items()):
        if result.get("budget"):
            budgets.setdefault(task, result["budget"])
    runs = [{k: v for k, v in r.items() if k != "source"} for r in longer.values()]
    carried, left_out = [], []
    for key, result in sorted(shorter.items()):
        if key in longer or key[0] not in budgets:
            continue
        if result.get("source") == "run folder" and "last_epoch" not in result:
            for path in short:  # this run's folder: the first path that holds it
                folder = Run(*key).folder(path)
                if (folder / "result.json").exists():
                    result = {**result, **epochs(folder)}
                    break
        why = _stopped_early(result, budgets[key[0]])
        if why is None:
            runs.append({k: v for k, v in result.items() if k != "source"})
            carried.append(key)
        else:
            left_out.append({"task": key[0], "row": key[1], "seed": key[2], "why": why})
    gaps = {(e["task"], e["row"]) for e in left_out}
    incomplete = [{"task": task, "row": row,
                   "seeds": sorted(r["seed"] for r in runs if (r["task"], r["row"]) == (task, row)),
                   "seeds_left_out": [e["seed"] for e in left_out if (e["task"], e["row"]) == (task, row)]}
                  for task, row in sorted(gaps)]
    runs = [r for r in runs if (r["task"], r["row"]) not in gaps]
    carried = [key for key in carried if key[:2] not in gaps]
    return {"runs": runs, "carried": carried, "left_out": left_out, "incomplete": incomplete}


def probe_entries(paths: Sequence[Path]) -> Dict[tuple, Dict[str, Any]]:
    """The per-run test probes in ``<path>/analysis.json`` (what
    :mod:`spacy_mat.grid_analysis` writes for the test split) of each path
    that has one, by (task, row, seed); the first path wins."""
    entries: Dict[tuple, Dict[str, Any]] = {}
    for path in paths:
        for entry in earlier_runs(path / "analysis.json", ()):
            entries.setdefault((entry["task"], entry["row"], entry["seed"]), entry)
    return entries


def grid_probes(grid: Dict[str, Any], short: Sequence[Path], long: Sequence[Path]) -> Dict[str, Any]:
    """The probes of the grid's runs: a longer run's from the ``long``
    folders, a carried one's from the ``short`` ones. Returns ``{"rows"``
    (:func:`spacy_mat.grid_analysis.aggregate`), ``"missing"}``."""
    longer, shorter = probe_entries(long), probe_entries(short)
    carried = set(grid["carried"])
    found, missing = [], []
    for run in grid["runs"]:
        key = (run["task"], run["row"], run["seed"])
        entry = (shorter if key in carried else longer).get(key)
        if entry is None:
            missing.append(key)
        else:
            found.append(entry)
    return {"rows": aggregate(found), "missing": sorted(missing)}


def long_means_markdown(grid: Dict[str, Any], summary: Dict[str, Any], short_label: str,
                        long_label: str, probes: Optional[Dict[str, Any]] = None) -> str:
    """The grid's section: ``summary`` is :func:`spacy_mat.experiments.summarize`
    of ``grid["runs"]``."""
    lines = [f"## The grid at {long_label}", "",
             f"Each seed's {long_label} run, or its {short_label} run where that stopped early "
             f"(before its cap, same patience: a longer cap would not change it).", "",
             summary_markdown(summary).rstrip("\n"), ""]
    if grid["carried"]:
        lines.append(f"{len(grid['carried'])} of the {len(grid['runs'])} runs are {short_label} runs "
                     "that stopped early.")
    if grid["incomplete"]:
        lines.append(f"Rows left out ({len(grid['incomplete'])}), a seed without a {long_label} result "
                     f"(its {short_label} run did not stop early and it has no {long_label} run):")
        lines.append("")
        for gap in grid["incomplete"]:
            reasons = sorted({e["why"] for e in grid["left_out"]
                              if (e["task"], e["row"]) == (gap["task"], gap["row"])})
            total = len(gap["seeds"]) + len(gap["seeds_left_out"])
            have = f" ({', '.join(map(str, gap['seeds']))})" if gap["seeds"] else ""
            lines.append(f"- {gap['task']} {gap['row']}: {len(gap['seeds'])} of {total} seeds{have}; "
                         f"not seeds {', '.join(map(str, gap['seeds_left_out']))} ({'; '.join(reasons)})")
    if probes and probes["rows"]:
        lines += ["", probes_markdown(probes["rows"]).rstrip("\n")]
        if probes["missing"]:
            lines.append("")
            lines.append(f"No probes for {len(probes['missing'])} of these runs: "
                         + ", ".join(f"{t} {r} seed {s}" for t, r, s in probes["missing"]) + ".")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--long-means", action="store_true",
                        help="also the grid's table at the longer budget: per row mean ± std and the "
                             "paired comparisons, each seed's longer run or its shorter run where that "
                             "stopped early")
    args = parser.parse_args(argv)
    for folder in [*args.short, *args.long]:
        if not folder.is_dir():
            parser.error(f"no such folder: {folder}")
    entries = compare(args.short, args.long, args.tasks)
    if not entries:
        parser.error("no finished run (result.json or record) under "
                     + ", ".join(str(p) for p in args.long))
    text = markdown(entries, *args.labels)
    payload: Dict[str, Any] = {"short": [str(p) for p in args.short], "long": [str(p) for p in args.long],
                               "runs": entries, "per_row": deltas(entries)}
    if args.long_means:
        grid = at_long_budget(args.short, args.long, args.tasks)
        probes = grid_probes(grid, args.short, args.long)
        summary = summarize(grid["runs"])
        text += "\n" + long_means_markdown(grid, summary, *args.labels, probes=probes)
        payload["at_long"] = {"rows": summary["rows"], "paired": summary["paired"],
                              "probes": probes["rows"],
                              "probes_missing": [{"task": t, "row": r, "seed": s}
                                                 for t, r, s in probes["missing"]],
                              "carried": [{"task": t, "row": r, "seed": s} for t, r, s in grid["carried"]],
                              "left_out": grid["left_out"], "incomplete": grid["incomplete"]}
    print(text, end="")
    if args.results is not None:
        _write_json(args.results / "budget_compare.json", payload)
        (args.results / "budget_compare.md").write_text(text, encoding="utf8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
