"""The experiment grid: Table 1 of the paper, rows × tasks × seeds.

    python -m spacy_mat.experiments [--rows baseline at mat_similarity ...]
        [--tasks ner chunk] [--seeds 0 1 2 3 4] [--data-dir corpus]
        [--output runs] [--results results] [--max-epochs N] [--max-steps N]
        [--patience N] [--shard I/N] [--gpu-id G] [--threads T]
        [--ray [ADDRESS] [--cpus-per-run C] [--gpus-per-run G] [--max-retries N]
         [--keep-models] [--ray-cpus N]]
        [--list | --summary-only] [-- extra `spacy train` overrides]

Every run trains ``configs/<task>_<row>.cfg`` with one seed as its own
``python -m spacy train`` subprocess into ``<output>/<task>_<row>/seed<k>/``
(``training/`` with model-best and model-last, ``train.log``), evaluates
model-best on ``<data-dir>/<task>/test.spacy`` with
``python -m spacy_mat.evaluate`` (``test.json``, ``eval.log``) and last writes
``result.json``, which marks the run as finished: a rerun skips it. A run
without ``result.json`` (interrupted, failed) starts again from scratch.

The budget (``--max-epochs``, ``--max-steps``, ``--patience``; unset = the
config's own: at most 20,000 steps with early stopping on the dev score) is
recorded in each result; a finished run with another budget (or other extra
overrides) is an error rather than being mixed into the table (use another
``--output``).

``--shard I/N`` keeps every N-th run of the list, starting at the I-th
(1-based), so N machines given the same arguments and shards 1/N ... N/N
share the grid without overlap. Copy their ``<output>`` folders together
(they do not overlap) and run ``--summary-only`` to tabulate everything.
``--ray [ADDRESS]`` instead runs every unfinished run as a Ray task on a local
Ray instance or a cluster, with retries, and brings the run folders back here
(``spacy_mat/ray_runner.py``, docs/scaling.md).

After the runs (or with ``--summary-only``), every ``result.json`` under
``<output>`` is copied to a small record, ``<results>/runs/<task>_<row>/seed<k>.json``
(commit it: it outlives the run folder; :mod:`spacy_mat.run_records`), and
the union of the run folders and the records is gathered into
``<results>/summary.json`` and a markdown table
``<results>/summary.md`` in the paper's form: method, NER test F1 mean ± std,
chunking test F1 mean ± std (sample standard deviation over seeds), number of
seeds, budget.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# Table 1's rows in the paper's order, with their names there.
METHODS: Dict[str, str] = {
    "baseline": "Baseline",
    "masking_random": "Masking (random)",
    "masking_similarity": "Masking (similarity)",
    "at": "AT",
    "mat_random": "MAT (random)",
    "mat_similarity": "MAT (similarity)",
    "at_noadv": "AT, δ = 0 (control)",
    # extensions beyond the paper (configs/<task>_mat_<x>.cfg)
    "mat_entity": "MAT+ entity-aware selection (ext.)",
    "mat_rho15": "MAT+ ρ = 0.15 (ext.)",
    "mat_rho30": "MAT+ ρ = 0.3 (ext.)",
    "mat_case": "MAT+ case augmentation (ext.)",
    "mat_unk": "MAT+ <UNK> masking (ext.)",
    "mat_caseunk": "MAT+ case aug. + <UNK> masking (ext.)",
    "mat_caseunkent": "MAT+ case aug. + <UNK> + entity-aware (ext.)",
    "mat_spanunk": "MAT+ case aug. + <UNK> span masking, ρ = 0.3 (ext.)",
}
TASKS: Dict[str, str] = {"ner": "NER", "chunk": "Chunking"}
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
RESULT = "result.json"
BUDGET_KEYS = ("max_epochs", "max_steps", "patience")
DEFAULT_VECTORS = "vectors/glove-6b-50d"


def vectors_name(config: Path, vectors: Optional[str]) -> str:
    """What a run's word table starts from: the vectors folder's name (e.g.
    ``glove-6b-50d``), or ``none`` for a config without static vectors."""
    from thinc.api import Config

    model = Config().from_disk(config, interpolate=False)["components"]["mat_tagger"]["model"]
    if not model.get("include_static_vectors") or not vectors:
        return "none"
    return Path(vectors).name


def vectors_overrides(config: Path, vectors: Optional[str]) -> List[str]:
    """``--paths.vectors`` for configs that read static vectors."""
    return ["--paths.vectors", str(vectors)] if vectors_name(config, vectors) != "none" else []


@dataclass(frozen=True, order=True)
class Run:
    task: str
    row: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}_{self.row}/seed{self.seed}"

    def folder(self, output: Path) -> Path:
        return output / f"{self.task}_{self.row}" / f"seed{self.seed}"

    def config(self, configs_dir: Path) -> Path:
        return configs_dir / f"{self.task}_{self.row}.cfg"


def plan(tasks: Sequence[str], rows: Sequence[str], seeds: Sequence[int]) -> List[Run]:
    """All runs, seed-major (then task, row) so that any shard of the list gets
    a mix of rows, tasks and seeds and finishes whole seeds early."""
    return [Run(task, row, seed) for seed in seeds for task in tasks for row in rows]


def parse_shard(text: str) -> Tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``1 <= I <= N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N (e.g. 2/4), got {text!r}")
    if count < 1 or not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 1 <= I <= N")
    return index, count


def shard(runs: Sequence[Run], index: int, count: int) -> List[Run]:
    """Every ``count``-th run starting at the ``index``-th (1-based)."""
    return list(runs[index - 1::count])


def budget_overrides(budget: Dict[str, Optional[int]]) -> List[str]:
    """``spacy train`` overrides for the budget keys that are set."""
    out: List[str] = []
    for key in BUDGET_KEYS:
        if budget.get(key) is not None:
            out += [f"--training.{key}", str(budget[key])]
    return out


TRAINING_LOG = "training_log.jsonl"
CONFIDENCE_LOG = "confidence.jsonl"


def log_overrides(config_path: Path, folder: Path) -> List[str]:
    """``spacy train`` overrides that make a run write its learning curve
    (``spacy_mat.ConsoleLogger.v1``'s ``output_file``) and its confidence
    curve (``spacy_mat.confidence_tracker.v1``'s) into its folder, when the
    config uses those blocks."""
    from thinc.api import Config

    training = Config().from_disk(config_path, interpolate=False)["training"]
    out: List[str] = []
    if training.get("logger", {}).get("@loggers") == "spacy_mat.ConsoleLogger.v1":
        out += ["--training.logger.output_file", str(folder / TRAINING_LOG)]
    if training.get("before_update", {}).get("@callbacks") == "spacy_mat.confidence_tracker.v1":
        out += ["--training.before_update.output_file", str(folder / CONFIDENCE_LOG)]
    return out


def budget_label(budget: Dict[str, Optional[int]]) -> str:
    """A short human description: "20 epochs", "20 epochs, ≤ 3000 steps", ..."""
    parts = []
    if budget.get("max_epochs"):
        parts.append(f"{budget['max_epochs']} epochs")
    if budget.get("max_steps"):
        parts.append(f"≤ {budget['max_steps']} steps")
    if budget.get("patience") is not None:
        parts.append(f"patience {budget['patience']}" if budget["patience"] else "no early stop")
    return ", ".join(parts) if parts else "config (≤ 20000 steps, early stopping)"


def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf8")
    os.replace(tmp, path)


def read_result(folder: Path) -> Optional[Dict[str, Any]]:
    """The run's ``result.json``, or None when the run has not finished."""
    path = folder / RESULT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except ValueError:
        return None


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("spacy", "thinc", "torch", "spacy_mat"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def code_revision(where: Path) -> Optional[str]:
    """The git commit of the checkout that holds ``where`` (``+dirty`` when
    tracked files under ``spacy_mat/`` or ``configs/`` differ from it);
    None outside a git checkout."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    # ":(top)" pathspecs name the folders from the checkout's root, wherever ``where`` is
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)spacy_mat",
                ":(top)configs")
    return commit + ("+dirty" if dirty else "")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf8", errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _call(cmd: List[str], log: Path, env: Dict[str, str]) -> Tuple[int, float]:
    """Run ``cmd`` with its output in ``log`` (first line: the command)."""
    start = time.time()
    with log.open("w", encoding="utf8") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    return code, time.time() - start


@dataclass
class Settings:
    data_dir: Path
    configs_dir: Path
    output: Path
    budget: Dict[str, Optional[int]]
    gpu_id: int = -1
    threads: int = 0
    mkl_cbwr: Optional[str] = None  # MKL_CBWR for the runs; None: the environment's
    extra: Tuple[str, ...] = ()
    vectors: Optional[str] = DEFAULT_VECTORS


def run_one(run: Run, settings: Settings) -> Dict[str, Any]:
    """Train, evaluate and record one run (not checking whether it is done)."""
    folder = run.folder(settings.output)
    if folder.exists():  # an interrupted or failed attempt: start afresh
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    corpus = settings.data_dir / run.task
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if settings.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(settings.threads)
    if settings.mkl_cbwr:
        env["MKL_CBWR"] = settings.mkl_cbwr
    revision = code_revision(Path(__file__).parent)  # the code the run starts with, not ends with
    train_cmd = [sys.executable, "-m", "spacy", "train", str(run.config(settings.configs_dir)),
                 "--output", str(folder / "training"),
                 "--paths.train", str(corpus / "train.spacy"),
                 "--paths.dev", str(corpus / "dev.spacy"),
                 "--system.seed", str(run.seed), "--gpu-id", str(settings.gpu_id),
                 *budget_overrides(settings.budget),
                 *vectors_overrides(run.config(settings.configs_dir), settings.vectors),
                 *log_overrides(run.config(settings.configs_dir), folder), *settings.extra]
    code, train_s = _call(train_cmd, folder / "train.log", env)
    model = folder / "training" / "model-best"
    if code != 0 or not model.exists():
        raise RuntimeError(f"{run.name}: spacy train failed (exit code {code}); "
                           f"{folder / 'train.log'} ends with:\n{_tail(folder / 'train.log')}")
    eval_cmd = [sys.executable, "-m", "spacy_mat.evaluate", str(model),
                str(corpus / "test.spacy"), "--output", str(folder / "test.json"),
                "--gpu-id", str(settings.gpu_id)]
    code, eval_s = _call(eval_cmd, folder / "eval.log", env)
    if code != 0:
        raise RuntimeError(f"{run.name}: evaluation failed (exit code {code}); "
                           f"{folder / 'eval.log'} ends with:\n{_tail(folder / 'eval.log')}")
    meta = json.loads((model / "meta.json").read_text(encoding="utf8"))
    test = json.loads((folder / "test.json").read_text(encoding="utf8"))
    score_key = primary_score_key(model / "config.cfg")
    result = {
        "task": run.task, "row": run.row, "method": METHODS.get(run.row, run.row),
        "seed": run.seed, "config": str(run.config(settings.configs_dir)),
        "vectors": vectors_name(run.config(settings.configs_dir), settings.vectors),
        "budget": settings.budget, "extra_overrides": list(settings.extra),
        "train_command": " ".join(train_cmd),
        "score_key": score_key,
        "dev": {score_key: meta.get("performance", {}).get(score_key)},
        "test": test,
        "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
        "gpu_id": settings.gpu_id, "host": platform.node(),
        # what float arithmetic depends on: a run retraces another bit for bit
        # only with the same code, thread count and CPU (0 = library default)
        # (MKL_CBWR pins MKL's code path, one of the things the CPU decides;
        # null = MKL's own choice for this CPU)
        "threads": settings.threads, "cpu": cpu_model(), "mkl_cbwr": env.get("MKL_CBWR"),
        "code": revision,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "versions": _versions(),
    }
    _write_json(folder / RESULT, result)
    return result


def primary_score_key(config_path: Path) -> str:
    """The score the run's model-best was selected on: the largest weight of
    ``[training.score_weights]`` (``ents_f``, ``spans_chunks_f``)."""
    from thinc.api import Config

    weights = Config().from_disk(config_path, interpolate=False)["training"]["score_weights"]
    weights = {k: v for k, v in weights.items() if v}
    if not weights:
        raise RuntimeError(f"{config_path}: [training.score_weights] has no non-zero weight")
    return max(weights, key=weights.get)


def _mean_std(values: List[float]) -> Tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def gather(output: Path) -> List[Dict[str, Any]]:
    """Every finished run's result under ``output``."""
    results = []
    for path in sorted(output.glob(f"*/seed*/{RESULT}")):
        result = read_result(path.parent)
        if result is not None:
            results.append(result)
    return results


def summarize(results: Iterable[Dict[str, Any]], expected: Sequence[Run] = (),
              output: Optional[Path] = None) -> Dict[str, Any]:
    """Group the results by row and task: test and dev F1 per seed, their mean
    and sample standard deviation (fractions, as spaCy reports them)."""
    results = list(results)
    done = {(r["task"], r["row"], r["seed"]) for r in results}
    rows_seen = {r["row"] for r in results} | {run.row for run in expected}
    order = [row for row in METHODS if row in rows_seen] + sorted(rows_seen - set(METHODS))
    rows = []
    for row in order:
        entry: Dict[str, Any] = {"row": row, "method": METHODS.get(row, row)}
        for task in TASKS:
            runs = sorted((r for r in results if r["row"] == row and r["task"] == task),
                          key=lambda r: r["seed"])
            if not runs:
                entry[task] = None
                continue
            key = runs[0]["score_key"]
            test = [r["test"][key] for r in runs]
            dev_runs = [r for r in runs if r["dev"].get(key) is not None]
            mean, std = _mean_std(test)
            dev_mean, dev_std = _mean_std([r["dev"][key] for r in dev_runs])
            timed = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
            entry[task] = {
                "score_key": key, "n_seeds": len(runs), "seeds": [r["seed"] for r in runs],
                "test_f": test, "test_f_mean": mean, "test_f_std": std,
                # records imported from an older summary carry test F1 only
                "dev_f_mean": dev_mean, "dev_f_std": dev_std,
                "dev_seeds": [r["seed"] for r in dev_runs],
                "budgets": sorted({r.get("budget_text") or budget_label(r["budget"]) for r in runs}),
                "vectors": sorted({r.get("vectors", "none") for r in runs}),
                "train_seconds_mean": statistics.fmean(timed) if timed else None,
                "from_records": [r["seed"] for r in runs if r.get("source") == "record"],
            }
        rows.append(entry)
    return {
        "runs_dir": str(output) if output is not None else None,
        "n_runs": len(results),
        "n_from_records": sum(1 for r in results if r.get("source") == "record"),
        "paired": paired_comparisons(results),
        "missing": [run.name for run in expected if (run.task, run.row, run.seed) not in done],
        "rows": rows,
        "note": "F scores are fractions (spaCy's); std is the sample standard deviation "
                "over seeds (null with one seed).",
    }


# (row, minus row): the paired per-seed differences the summary reports
# (the last two: the shipped MAT+ extension against the baseline and MAT)
PAIRS = [("at", "baseline"), ("mat_similarity", "at"), ("mat_similarity", "baseline"),
         ("mat_random", "at"), ("at_noadv", "baseline"), ("at", "at_noadv"),
         ("mat_caseunk", "baseline"), ("mat_caseunk", "mat_similarity")]


def paired_comparisons(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per task and pair of rows in :data:`PAIRS`, over the seeds both have:
    the test F1 differences, their mean, and how many seeds agree in sign
    with the mean (a difference of exactly 0 agrees with neither sign)."""
    by_key = {(r["task"], r["row"], r["seed"]): r["test"][r["score_key"]] for r in results}
    out = []
    for task in TASKS:
        for row, other in PAIRS:
            seeds = sorted(seed for (t, r, seed) in by_key
                           if t == task and r == row and (task, other, seed) in by_key)
            if not seeds:
                continue
            diffs = [by_key[(task, row, s)] - by_key[(task, other, s)] for s in seeds]
            mean = statistics.fmean(diffs)
            sign = (mean > 0) - (mean < 0)
            out.append({"task": task, "row": row, "minus": other, "seeds": seeds,
                        "diffs": diffs, "mean_diff": mean,
                        "seeds_agreeing": sum(1 for d in diffs if sign and (d > 0) - (d < 0) == sign)})
    return out


def _cell(stats: Optional[Dict[str, Any]]) -> str:
    if not stats:
        return "–"
    std = stats["test_f_std"]
    mean = f"{stats['test_f_mean'] * 100:.2f}"
    return f"{mean} ± {std * 100:.2f}" if std is not None else f"{mean} ± –"


def markdown(summary: Dict[str, Any]) -> str:
    """The paper's table: method, NER and chunking test F1 (mean ± std, in %),
    seeds per task and the budget."""
    lines = [
        "| Method | NER test F1 | Chunking test F1 | Seeds (NER / chunking) | Budget |",
        "| --- | ---: | ---: | :---: | --- |",
    ]
    for row in summary["rows"]:
        ner, chunk = row.get("ner"), row.get("chunk")
        seeds = " / ".join(str(s["n_seeds"]) if s else "0" for s in (ner, chunk))
        budgets = sorted({b for s in (ner, chunk) if s for b in s["budgets"]})
        lines.append(f"| {row['method']} | {_cell(ner)} | {_cell(chunk)} | {seeds} | "
                     f"{'; '.join(budgets) or '–'} |")
    lines.append("")
    lines.append("Test F1 in %, mean ± sample standard deviation over seeds "
                 "(conlleval-style span F1, model-best on dev).")
    vectors = sorted({v for row in summary["rows"] for task in TASKS if row.get(task)
                      for v in row[task].get("vectors", [])})
    if vectors:
        lines.append(f"Word vectors: {', '.join(vectors)}.")
    if summary.get("paired"):
        lines += ["", "Paired by seed (test F1 difference in points; seeds agreeing in sign "
                  "with the mean / seeds compared):", "",
                  "| Task | Comparison | Mean difference | Seeds agreeing | Per seed |",
                  "| --- | --- | ---: | :---: | --- |"]
        for pair in summary["paired"]:
            name = f"{METHODS.get(pair['row'], pair['row'])} − {METHODS.get(pair['minus'], pair['minus'])}"
            per_seed = ", ".join(f"{d * 100:+.2f}" for d in pair["diffs"])
            lines.append(f"| {TASKS[pair['task']]} | {name} | {pair['mean_diff'] * 100:+.2f} | "
                         f"{pair['seeds_agreeing']}/{len(pair['seeds'])} | {per_seed} |")
    if summary.get("n_from_records"):
        lines.append(f"{summary['n_from_records']} of the {summary['n_runs']} runs come from the "
                     "records in `runs/` beside this summary (their run folders are gone; records "
                     "imported from an older summary carry test F1 only).")
    if summary["missing"]:
        lines.append(f"Missing runs ({len(summary['missing'])}): "
                     + ", ".join(summary["missing"]) + ".")
    return "\n".join(lines) + "\n"


def write_summary(summary: Dict[str, Any], results_dir: Path) -> Tuple[Path, Path]:
    json_path, md_path = results_dir / "summary.json", results_dir / "summary.md"
    _write_json(json_path, summary)
    tmp = md_path.with_name(f".{md_path.name}.{os.getpid()}.tmp")
    tmp.write_text(markdown(summary), encoding="utf8")
    os.replace(tmp, md_path)
    return json_path, md_path


def rows_without_logs(plot_data: Path, task: str, logs: Dict[str, Path]) -> List[str]:
    """The rows drawn in an earlier plot (its JSON ``plot_data``, each curve's
    ``file`` a ``<task>_<row>/seed<k>/<log>`` path) that ``logs`` lacks."""
    if not plot_data.exists():
        return []
    try:
        files = [Path(run["file"]) for run in json.loads(plot_data.read_text(encoding="utf8"))["runs"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{plot_data}: not a plot's data file ({err})") from None
    prefix = f"{task}_"
    rows = [f.parent.parent.name[len(prefix):] for f in files if f.parent.parent.name.startswith(prefix)]
    return sorted(set(rows) - set(logs))


def write_curves(results: Sequence[Dict[str, Any]], output: Path, results_dir: Path) -> List[Path]:
    """Learning curves (dev score vs step) and confidence curves (probability
    of the watched sentence's gold tags vs step) of every row of the finished
    ``results``, one PNG (+ its data as JSON) per task and kind:
    ``results/{learning,confidence}_<task>.png``. Each row is drawn from its
    lowest seed that has the log; rows in Table 1's order. A plot that
    already draws rows whose logs are gone (their run folders lost) is kept
    as it is, with a note, rather than redrawn without them."""
    try:
        from .analysis.plots import plot_confidence, plot_learning
    except ImportError as err:  # matplotlib is an optional dependency
        print(f"curves not drawn ({err}); pip install matplotlib", file=sys.stderr)
        return []
    order = list(METHODS)
    runs = sorted((Run(r["task"], r["row"], r["seed"]) for r in results),
                  key=lambda run: (order.index(run.row) if run.row in order else len(order),
                                   run.row, run.seed))
    written = []
    for task in TASKS:
        for log_name, plot, kind in ((TRAINING_LOG, plot_learning, "learning"),
                                     (CONFIDENCE_LOG, plot_confidence, "confidence")):
            logs: Dict[str, Path] = {}  # row -> log of its lowest seed (dicts keep order)
            for run in runs:
                log = run.folder(output) / log_name
                if run.task == task and run.row not in logs and log.exists() and log.stat().st_size:
                    logs[run.row] = log
            gone = rows_without_logs(results_dir / f"{kind}_{task}.json", task, logs)
            if gone:
                print(f"{kind}_{task}.png kept as it was: the logs of its rows {gone} are not "
                      f"under {output} (redrawing would drop their curves)", file=sys.stderr)
                continue
            if logs:
                labels = [f"{METHODS.get(row, row)} ({log.parent.name})" for row, log in logs.items()]
                written.append(plot(list(logs.values()), results_dir / f"{kind}_{task}.png",
                                    labels=labels))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_mat.experiments",
        description="Train configs × tasks × seeds as isolated `spacy train` runs (finished "
        "runs are skipped), evaluate each on its test set and tabulate mean ± std.",
        epilog="Arguments after `--` are passed to every `spacy train` call.")
    parser.add_argument("--rows", "--configs", nargs="+", default=list(METHODS), metavar="ROW",
                        help="config rows: configs/<task>_<ROW>.cfg (default: all six of Table 1)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--data-dir", type=Path, default=Path("corpus"),
                        help="converted corpora: DATA_DIR/<task>/{train,dev,test}.spacy")
    parser.add_argument("--configs-dir", type=Path, default=Path("configs"))
    parser.add_argument("--output", type=Path, default=Path("runs"), help="one folder per run")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="where summary.json and summary.md go")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="budget: epochs per run (default: the config's, i.e. none)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="budget: steps per run (default: the config's, 20000)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience in steps, 0 = off (default: the config's)")
    parser.add_argument("--shard", type=parse_shard, default=(1, 1), metavar="I/N",
                        help="run only every N-th run starting at the I-th (1-based)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU for training and evaluation")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per run (OMP/MKL; 0 = library default)")
    parser.add_argument("--mkl-cbwr", default=None, metavar="BRANCH",
                        help="MKL code path for every run (sets MKL_CBWR, e.g. AVX2; MKL documents "
                        "the same results on the Intel CPUs that support it, at a fixed thread "
                        "count) (default: the environment's MKL_CBWR, else MKL picks per CPU)")
    parser.add_argument("--vectors", default=DEFAULT_VECTORS,
                        help="vectors folder for the configs that use static vectors "
                        "(python -m spacy_mat vectors; default %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list this shard's runs and exit")
    mode.add_argument("--summary-only", action="store_true",
                      help="train nothing; tabulate the finished runs under --output")
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    from .ray_runner import add_arguments as add_ray_arguments  # --ray and its options

    add_ray_arguments(parser)
    return parser


def _check_inputs(runs: Sequence[Run], settings: Settings) -> List[str]:
    problems = []
    for config in sorted({run.config(settings.configs_dir) for run in runs}):
        if not config.exists():
            problems.append(f"config not found: {config}")
    for task in sorted({run.task for run in runs}):
        for split in ("train", "dev", "test"):
            path = settings.data_dir / task / f"{split}.spacy"
            if not path.exists():
                problems.append(f"corpus file not found: {path} (convert the data first: "
                                "`spacy project run convert` or `python -m spacy_mat convert`)")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .ray_runner import check_arguments as check_ray_arguments

    check_ray_arguments(parser, args)  # --ray: Ray installed, resources valid (else exit 2)
    budget = {"max_epochs": args.max_epochs, "max_steps": args.max_steps,
              "patience": args.patience}
    settings = Settings(data_dir=args.data_dir, configs_dir=args.configs_dir, output=args.output,
                        budget=budget, gpu_id=args.gpu_id, threads=args.threads,
                        mkl_cbwr=args.mkl_cbwr, extra=tuple(args.extra), vectors=args.vectors)
    everything = plan(args.tasks, args.rows, args.seeds)
    mine = shard(everything, *args.shard)
    shard_text = f"shard {args.shard[0]}/{args.shard[1]}: " if args.shard[1] > 1 else ""

    if args.list:
        for run in mine:
            status = "done" if read_result(run.folder(args.output)) else "todo"
            print(f"{status}  {run.name}")
        return 0
    failed: List[str] = []
    if not args.summary_only:
        problems = _check_inputs(mine, settings)
        for run in mine:
            result = read_result(run.folder(args.output))
            if result is None:
                continue
            if result.get("budget") != budget:
                problems.append(f"{run.folder(args.output)} finished with budget "
                                f"{budget_label(result.get('budget', {}))}, not "
                                f"{budget_label(budget)}: use another --output or delete it")
            elif result.get("extra_overrides", []) != list(args.extra):
                problems.append(f"{run.folder(args.output)} finished with the overrides "
                                f"{result.get('extra_overrides')}, not {list(args.extra)}: "
                                "use another --output or delete it")
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            return 2
        todo = [run for run in mine if read_result(run.folder(args.output)) is None]
        print(f"{shard_text}{len(mine)} runs, {len(mine) - len(todo)} already finished "
              f"(skipped), {len(todo)} to train; budget: {budget_label(budget)}", flush=True)
        if args.ray is not None:  # the runs as Ray tasks (spacy_mat/ray_runner.py)
            from .ray_runner import run_from_args as run_on_ray

            failed, todo = run_on_ray(todo, settings, args), []
        for i, run in enumerate(todo, 1):
            folder = run.folder(args.output)
            print(f"[{i}/{len(todo)}] {run.name}: training -> {folder} "
                  f"(log: {folder / 'train.log'})", flush=True)
            try:
                result = run_one(run, settings)
            except RuntimeError as err:
                print(f"error: {err}", file=sys.stderr, flush=True)
                failed.append(run.name)
                continue
            key = result["score_key"]
            dev = result["dev"][key]
            print(f"[{i}/{len(todo)}] {run.name}: dev {key} "
                  f"{'-' if dev is None else f'{dev:.4f}'}, test {key} "
                  f"{result['test'][key]:.4f} ({result['train_seconds']:.0f} s)", flush=True)
    from .run_records import merge, read_records, write_records

    finished = gather(args.output)
    write_records(args.results, args.output, finished)  # <results>/runs/: outlives run folders
    everything_done = merge(finished, read_records(args.results))
    summary = summarize(everything_done, expected=everything, output=args.output)
    json_path, md_path = write_summary(summary, args.results)
    for path in write_curves(finished, args.output, args.results):
        print(f"wrote {path}")
    print(markdown(summary))
    kept = len(everything_done) - len(finished)
    print(f"wrote {json_path} and {md_path} ({summary['n_runs']} finished runs: "
          f"{len(finished)} under {args.output}, {kept} from the records in "
          f"{args.results / 'runs'}; {len(summary['missing'])} of the grid missing)")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (rerun to retry them)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
