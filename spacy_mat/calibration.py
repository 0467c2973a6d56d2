"""Calibration of confidence scores: expected calibration error and the
reliability table (accuracy vs confidence per bin) of predicted entities.

Pure numpy; the plot imports matplotlib only when called (``.[plots]``)."""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np


def reliability_table(confidences: Sequence[float], correct: Sequence[bool],
                      n_bins: int = 10) -> List[Dict[str, float]]:
    """Equal-width bins over [0, 1] (the last one closed): per bin its
    bounds, the number of predictions, their mean confidence and accuracy
    (NaN for an empty bin)."""
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.shape != hits.shape:
        raise ValueError(f"{len(conf)} confidences but {len(hits)} correctness flags")
    if len(conf) and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = which == b
        n = int(sel.sum())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n,
                     "confidence": float(conf[sel].mean()) if n else float("nan"),
                     "accuracy": float(hits[sel].mean()) if n else float("nan")})
    return rows


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin share) * |accuracy - mean confidence|."""
    table = reliability_table(confidences, correct, n_bins)
    total = sum(r["count"] for r in table)
    if not total:
        return float("nan")
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"])
                     for r in table if r["count"]))


def entity_confidences(docs: Iterable[Any], golds: Iterable[Any],
                       scores_key: str = "mat_tagger_scores") -> Tuple[List[float], List[bool]]:
    """Each predicted entity's probability (``doc.spans[scores_key]``) and
    whether it is exactly a gold entity (same tokens and label)."""
    confidences, correct = [], []
    for doc, gold in zip(docs, golds):
        truth = {(e.start, e.end, e.label_) for e in gold.ents}
        group = doc.spans[scores_key]
        for span, p in zip(group, group.attrs["scores"]):
            confidences.append(float(p))
            correct.append((span.start, span.end, span.label_) in truth)
    return confidences, correct


def plot_reliability(tables: Dict[str, List[Dict[str, float]]], path: Union[str, Path],
                     title: str = "Reliability of entity confidence") -> Path:
    """One reliability curve per named table, with the diagonal, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, table in tables.items():
        rows = [r for r in table if r["count"]]
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=name)
    ax.set_xlabel("confidence (CRF span marginal)")
    ax.set_ylabel("accuracy (exact entity match)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
