"""Helpers shared by the bench scripts: machine info, evaluation, JSON output."""
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
# SPACY_MAT_BENCH_RESULTS redirects every script's output (the tests use a
# temporary folder)
RESULTS = Path(os.environ.get("SPACY_MAT_BENCH_RESULTS", REPO / "bench" / "results"))
SCORE_KEYS = {"ner": "ents_f", "chunk": "spans_chunks_f"}
CORPUS = {"ner": REPO / "corpus" / "ner", "chunk": REPO / "corpus" / "chunk"}


def machine() -> Dict[str, Any]:
    """Where and from what a benchmark ran: the CPU model, cores, Python,
    GPU, the code's git commit (``+dirty`` when ``spacy_mat/`` or
    ``configs/`` differ from it, as ``result.json`` records a grid run) and
    the date."""
    from spacy_mat.experiments import code_revision, cpu_model

    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "gpu": gpu,
            "commit": code_revision(REPO) or "unknown",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def load_examples(nlp, path: Path) -> List:
    from spacy_mat.readers import SentenceCorpus
    return list(SentenceCorpus(path)(nlp))


def evaluate(nlp, path: Path, score_key: str) -> Dict[str, Any]:
    """Scores of a pipeline on a .spacy file, one gold sentence per example."""
    scores = nlp.evaluate(load_examples(nlp, path), batch_size=1000)
    prefix = score_key[: -len("_f")]
    return {k: scores[k] for k in (f"{prefix}_p", f"{prefix}_r", score_key, f"{prefix}_per_type")}


def write_json(name: str, payload: Dict[str, Any], quick: bool = False) -> Path:
    """Write bench/results/NAME.json (NAME_quick.json for --quick runs, which
    git ignores) and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'_quick' if quick else ''}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf8")
    print(f"-> {path}")
    return path


def setup_torch(threads: int, gpu_id: int):
    """Set torch's thread count (0 = its default) and, for ``gpu_id >= 0``,
    make spaCy/thinc allocate on that GPU; returns the torch module."""
    import spacy
    import torch

    if threads:
        torch.set_num_threads(threads)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return torch


def device_name(gpu_id: int) -> str:
    return f"gpu {gpu_id}" if gpu_id >= 0 else "cpu"
