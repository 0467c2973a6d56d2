"""Plots of several runs in one PNG, with the plotted data as JSON beside it
(``fig.png`` -> ``fig.json``): learning curves from the JSON lines of
``spacy_mat.ConsoleLogger.v1``, confidence curves from those of
``spacy_mat.confidence_tracker.v1``, and the robustness drop per method from
``python -m spacy_mat robustness`` results. matplotlib's Agg canvas is used
directly (no pyplot, no display needed).
"""
import json
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .robustness import probe_name

PathLike = Union[str, Path]


def read_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """Rows of a JSON-lines file; a bad line raises ValueError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def run_labels(paths: Sequence[PathLike], labels: Optional[Sequence[str]]) -> List[str]:
    """The given labels (one per run), or the file names."""
    if labels is None:
        return [Path(p).stem for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} runs; give one label per run")
    return list(labels)


def _field(row: Dict[str, Any], name: str, where: str) -> float:
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{where}: no field {name!r} (fields: {sorted(row)})")
        value = value[part]
    if not isinstance(value, (int, float)):
        raise ValueError(f"{where}: field {name!r} is not a number: {value!r}")
    return float(value)


def _save(fig: Any, output: PathLike, data: Dict[str, Any]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"{output}: the output must be a .png file")
    output.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(output, dpi=120, bbox_inches="tight")
    output.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf8")
    return output


def _figure(width: float = 7.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _line_style(i: int) -> Dict[str, Any]:
    """Colour and dash of the i-th curve (matplotlib's default cycle repeats
    after ten): ``tab20``'s ten dark hues solid, then their light twins
    dashed, then the same again."""
    from matplotlib import colormaps

    k = i % 20
    return {"color": colormaps["tab20"](2 * k if k < 10 else 2 * (k - 10) + 1),
            "linestyle": "-" if k < 10 else "--"}


def _legend(ax: Any, n: int) -> None:
    """Inside the axes for a few curves; beside them (right) for more than six."""
    if n > 6:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend()


def plot_learning(runs: Sequence[PathLike], output: PathLike, labels: Optional[Sequence[str]] = None,
                  metric: str = "score", x: str = "step") -> Path:
    """Dev score (``score``, or a key of ``scores`` such as ``ents_f``) vs
    ``step`` (or ``seconds``/``epoch``) per run, in percent."""
    labels = run_labels(runs, labels)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    data: Dict[str, Any] = {"kind": "learning", "x": x, "metric": metric, "runs": []}
    for i, (path, label) in enumerate(zip(runs, labels)):
        xs, ys = [], []
        for number, row in enumerate(read_jsonl(path), start=1):
            where = f"{path}: row {number}"
            xs.append(_field(row, x, where))
            ys.append(100 * _field(row, metric if metric == "score" else f"scores.{metric}", where))
        ax.plot(xs, ys, marker="o", markersize=3, label=label, **_line_style(i))
        data["runs"].append({"label": label, "file": str(path), "x": xs, "y": ys})
    ax.set_xlabel(x)
    ax.set_ylabel(f"dev {metric} (%)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    _legend(ax, len(labels))
    return _save(fig, output, data)


def plot_confidence(runs: Sequence[PathLike], output: PathLike, labels: Optional[Sequence[str]] = None,
                    sentence: int = 0) -> Path:
    """Probability of the gold tag sequence of tracked sentence ``sentence``
    vs training step, per run."""
    labels = run_labels(runs, labels)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    data: Dict[str, Any] = {"kind": "confidence", "sentence": sentence, "runs": []}
    text = None
    for i, (path, label) in enumerate(zip(runs, labels)):
        rows = [r for r in read_jsonl(path) if r.get("sentence") == sentence]
        if not rows:
            raise ValueError(f"{path}: no records for sentence {sentence}")
        xs = [_field(r, "step", f"{path}") for r in rows]
        ys = [_field(r, "prob", f"{path}") for r in rows]
        text = text or " ".join(f"{w}/{t}" for w, t in zip(rows[0].get("words", []), rows[0].get("tags", [])))
        ax.plot(xs, ys, marker="o", markersize=3, label=label, **_line_style(i))
        data["runs"].append({"label": label, "file": str(path), "step": xs, "prob": ys,
                             "words": rows[0].get("words"), "tags": rows[0].get("tags")})
    ax.set_xlabel("step")
    ax.set_ylabel("P(gold tag sequence)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Confidence: {text}" if text else "Confidence", fontsize=9)
    ax.grid(alpha=0.3)
    _legend(ax, len(labels))
    return _save(fig, output, data)


def plot_robustness(results: Sequence[PathLike], output: PathLike,
                    labels: Optional[Sequence[str]] = None) -> Path:
    """Grouped bars: the F1 drop (points) of each probe, one bar per method."""
    labels = run_labels(results, labels)
    loaded = []
    for path in results:
        try:
            loaded.append(json.loads(Path(path).read_text(encoding="utf8")))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read robustness JSON ({err})") from None
        if "probes" not in loaded[-1]:
            raise ValueError(f"{path}: not a robustness result (no 'probes')")
    probes = [k for k in loaded[0]["probes"] if k != "original"]
    for path, result in zip(results, loaded):
        missing = [p for p in probes if p not in result["probes"]]
        if missing:
            raise ValueError(f"{path}: probes {missing} missing; run every method with the "
                             "same probes")
    fig = _figure(max(6.0, 1.6 * len(probes) * max(1, len(loaded)) ** 0.5), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(loaded)
    data: Dict[str, Any] = {"kind": "robustness", "probes": probes, "methods": []}
    for m, (label, result) in enumerate(zip(labels, loaded)):
        drops = [100 * float(result["probes"][p]["drop"]) for p in probes]
        xs = [i - 0.4 + width * (m + 0.5) for i in range(len(probes))]
        ax.bar(xs, drops, width=width, label=label)
        data["methods"].append({"label": label, "original_f": result["probes"]["original"]["scores"]["f"],
                                "drops": dict(zip(probes, drops))})
    ax.set_xticks(range(len(probes)))
    ax.set_xticklabels([textwrap.fill(probe_name(p), 20) for p in probes], fontsize=8)
    ax.set_ylabel("F1 drop (points)")
    ax.set_title("Robustness: F1 drop from the original test set")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, output, data)
