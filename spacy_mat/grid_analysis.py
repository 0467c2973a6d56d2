"""Beyond test F1 for the experiment grid's finished runs: the paper's Table 3
(F1 on words unseen in training) and the robustness probes, per run, then
mean over seeds per row and task.

    python -m spacy_mat.grid_analysis [--output runs] [--data-dir corpus]
        [--results results] [--rows ...] [--tasks ...] [--threads 1] [--split dev]

For each run folder with a ``result.json`` (see :mod:`spacy_mat.experiments`)
it scores ``training/model-best`` on ``<data-dir>/<task>/test.spacy`` with
``python -m spacy_mat score ... --train`` (conlleval F1 and unseen-word F1)
and runs ``python -m spacy_mat robustness`` (entities replaced by unseen
dev-set entities, one non-entity / entity token per sentence made unknown,
everything lowercased, typos in 10% of the words), each written into the
run's ``analysis/`` folder; a rerun skips what exists. The aggregate goes to
``<results>/analysis.json`` and ``<results>/analysis.md``; the per-run entries
of an earlier ``analysis.json`` there whose run folders are not under
``--output`` are kept (``--fresh`` drops them), so the analysis, like the
summary, outlives the run folders. ``--rows`` / ``--tasks`` choose what is
analysed now; the earlier entries of the other rows and tasks stay in the file
as they were (as ``experiments --rows`` keeps the other rows in the summary).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .experiments import METHODS, TASKS, _write_json, gather

SCORE, ROBUSTNESS = "score.json", "robustness.json"
PROBES = ("replace_entities", "mask_non-entity", "mask_entity", "lowercase", "typos")


def _run(cmd: List[str], log: Path, threads: int) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with log.open("w", encoding="utf8") as out:
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = "\n".join(log.read_text(encoding="utf8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {code}); {log}:\n{tail}")


def analyse_run(folder: Path, task: str, data_dir: Path, threads: int = 1,
                split: str = "test") -> Dict[str, Any]:
    """Score and probe one finished run on ``split`` (skipping the parts
    already written). On the dev split (for choosing a configuration
    without touching the test set) the replaced entities come from dev's
    own other entities never annotated in training."""
    model = folder / "training" / "model-best"
    corpus = data_dir / task
    out = folder / "analysis"
    out.mkdir(exist_ok=True)
    test, train, dev = (str(corpus / f"{s}.spacy") for s in ("test", "train", "dev"))
    evaluated, pool = (test, ["--pool", dev]) if split == "test" else (dev, [])
    suffix = "" if split == "test" else f"_{split}"
    score_file, robust_file = (out / name.replace(".json", f"{suffix}.json") for name in (SCORE, ROBUSTNESS))
    if not score_file.exists():
        _run([sys.executable, "-m", "spacy_mat", "score", str(model), evaluated, "--train", train,
              "--json", str(score_file)], out / f"score{suffix}.log", threads)
    if not robust_file.exists():
        _run([sys.executable, "-m", "spacy_mat", "robustness", str(model), evaluated, "--train", train,
              *pool, "--mask-tokens", "non-entity", "entity",
              "--output", str(robust_file)], out / f"robustness{suffix}.log", threads)
    score = json.loads(score_file.read_text(encoding="utf8"))
    robust = json.loads(robust_file.read_text(encoding="utf8"))
    return {
        "f": score["conlleval"]["f"],  # F1 on the analysed split (the file's "split")
        "unseen_f": score["unseen"]["token"]["f"],
        "unseen_tokens": score["unseen"]["unseen_tokens"],
        "probes": {k: {"f": v["scores"]["f"], "drop": v["drop"]}
                   for k, v in robust["probes"].items() if k != "original"},
    }


def _mean(values: Sequence[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def aggregate(per_run: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Mean over seeds per (task, row), Table 1's row order."""
    order = {row: i for i, row in enumerate(METHODS)}
    keys = sorted({(r["task"], r["row"]) for r in per_run},
                  key=lambda k: (list(TASKS).index(k[0]), order.get(k[1], len(order)), k[1]))
    rows = []
    for task, row in keys:
        runs = [r for r in per_run if (r["task"], r["row"]) == (task, row)]
        rows.append({
            "task": task, "row": row, "method": METHODS.get(row, row),
            "seeds": sorted(r["seed"] for r in runs),
            "vectors": sorted({r["vectors"] for r in runs}),
            "f": _mean([r["f"] for r in runs]),
            "unseen_f": _mean([r["unseen_f"] for r in runs]),
            "probes": {p: {"f": _mean([r["probes"][p]["f"] for r in runs if p in r["probes"]]),
                           "drop": _mean([r["probes"][p]["drop"] for r in runs if p in r["probes"]])}
                       for p in PROBES},
        })
    return rows


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def markdown(rows: List[Dict[str, Any]], split: str = "test") -> str:
    where = "" if split == "test" else f" Scored on the {split} set (for choosing a configuration)."
    replaced_from = "dev-set entities" if split == "test" else f"other {split}-set entities"
    col = f"{split.capitalize()} F1"
    lines = ["Table 3: F1 on words unseen in training (token level, conlleval tags), mean over "
             "seeds." + where, "", f"| Task | Method | Seeds | Vectors | {col} | Unseen-word F1 |",
             "| --- | --- | :---: | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {TASKS[r['task']]} | {r['method']} | {len(r['seeds'])} | "
                     f"{', '.join(r['vectors'])} | {_pct(r['f'])} | {_pct(r['unseen_f'])} |")
    lines += ["", f"Robustness ({split} F1 and its drop from the original {split} set, mean over seeds): "
              f"entities replaced by {replaced_from} never annotated in training; one "
              "non-entity / entity token per sentence made an unknown word; all tokens "
              "lowercased; one-character typos in 10% of the words (3+ letters).", "",
              f"| Task | Method | {col} | Replaced F1 (drop) | Non-entity → unk (drop) | "
              "Entity → unk (drop) | Lowercased F1 (drop) | Typos F1 (drop) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cells = [f"{_pct(r['probes'][p]['f'])} ({_pct(r['probes'][p]['drop'])})" for p in PROBES]
        lines.append(f"| {TASKS[r['task']]} | {r['method']} | {_pct(r['f'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def selected(entry: Dict[str, Any], rows: Optional[Sequence[str]], tasks: Optional[Sequence[str]]) -> bool:
    """Whether a run (or per-run entry) is within ``rows`` / ``tasks`` (None: all)."""
    return (rows is None or entry["row"] in rows) and (tasks is None or entry["task"] in tasks)


def earlier_runs(path: Path, per_run: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The per-run entries of an earlier analysis file for runs not analysed
    now (their folders are gone, e.g. with the machine that trained them, or
    they are outside ``--rows`` / ``--tasks``), as they are in the file;
    :func:`main` marks those inside the selection ``"source": "earlier
    analysis"``."""
    if not path.exists():
        return []
    try:
        earlier = json.loads(path.read_text(encoding="utf8"))["runs"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path}: not an analysis file ({err})") from None
    have = {(r["task"], r["row"], r["seed"]) for r in per_run}
    return [r for r in earlier if (r["task"], r["row"], r["seed"]) not in have]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_mat.grid_analysis",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("runs"), help="the grid's run folders")
    parser.add_argument("--data-dir", type=Path, default=Path("corpus"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--rows", nargs="+", default=None)
    parser.add_argument("--tasks", nargs="+", default=None, choices=list(TASKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split", choices=["test", "dev"], default="test",
                        help="score and probe on this split; dev is for choosing a configuration "
                             "(writes analysis_dev.{json,md})")
    parser.add_argument("--fresh", action="store_true",
                        help="do not keep the earlier analysis' entries for runs whose folders "
                             "are not under --output (within --rows / --tasks; the other rows' "
                             "entries are always kept)")
    args = parser.parse_args(argv)
    results = [r for r in gather(args.output) if selected(r, args.rows, args.tasks)]
    per_run = []
    for i, result in enumerate(results, start=1):
        folder = args.output / f"{result['task']}_{result['row']}" / f"seed{result['seed']}"
        print(f"[{i}/{len(results)}] {folder}", flush=True)
        scores = analyse_run(folder, result["task"], args.data_dir, args.threads, args.split)
        per_run.append({"task": result["task"], "row": result["row"], "seed": result["seed"],
                        "vectors": result.get("vectors", "none"), **scores})
    name = "analysis" if args.split == "test" else f"analysis_{args.split}"
    everything = args.rows is None and args.tasks is None
    earlier = [] if args.fresh and everything else earlier_runs(args.results / f"{name}.json", per_run)
    gone = [] if args.fresh else [dict(r, source="earlier analysis") for r in earlier
                                  if selected(r, args.rows, args.tasks)]
    others = [r for r in earlier if not selected(r, args.rows, args.tasks)]
    if gone:
        print(f"kept {len(gone)} per-run entries of the earlier {args.results / f'{name}.json'} "
              "whose run folders are not here (--fresh drops them)", flush=True)
    if others:
        print(f"kept {len(others)} per-run entries of the earlier {args.results / f'{name}.json'} "
              "outside --rows / --tasks as they were (not analysed now)", flush=True)
    per_run += gone + others
    rows = aggregate(per_run)
    _write_json(args.results / f"{name}.json", {"split": args.split, "runs": per_run, "rows": rows})
    (args.results / f"{name}.md").write_text(markdown(rows, args.split), encoding="utf8")
    print(markdown(rows, args.split))
    print(f"-> {args.results / f'{name}.json'}, {args.results / f'{name}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
