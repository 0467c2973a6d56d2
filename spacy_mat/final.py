"""After ``spacy train``: score model-last on dev too and keep the better model
as model-best, recording which one it is.

    python -m spacy_mat.final TRAIN_DIR --dev DEV.spacy [--gpu-id 0]

spaCy evaluates only every ``eval_frequency`` steps, so the last steps of a
run are never evaluated: with ``max_epochs 1`` and ``eval_frequency`` = the
steps per epoch, the only evaluation is at step 0 and model-best is the
untrained model. This step scores ``TRAIN_DIR/model-best`` and
``TRAIN_DIR/model-last`` on the dev data (one gold sentence per example, the
weighted score of the config's ``[training.score_weights]``, as spaCy's loop
computes it), copies model-last over model-best when it scores at least as
well, and writes the outcome into ``model-best/meta.json`` under
``"spacy_mat_training"``: which model was kept, both dev scores, the step of
spaCy's model-best (from ``TRAIN_DIR/training_log.jsonl``, the
``spacy_mat.ConsoleLogger.v1`` output, when present) and ``trained``: False
when the kept model is the step-0 model. ``python -m spacy_mat.package``
refuses such a model.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

META_KEY = "spacy_mat_training"
LOG_NAME = "training_log.jsonl"


def weighted_score(scores: Dict[str, Any], weights: Dict[str, Optional[float]]) -> float:
    """spaCy's training score: ``sum(score[k] * weight[k])`` over the weighted keys."""
    return float(sum((scores.get(k) or 0.0) * w for k, w in weights.items() if w is not None))


def best_logged_step(log: Path) -> Tuple[Optional[int], List[int]]:
    """The step spaCy saved as model-best (the last evaluation with the top
    score, as spaCy's loop keeps it) and every evaluated step."""
    records = [json.loads(line) for line in log.read_text(encoding="utf8").splitlines() if line.strip()]
    if not records:
        return None, []
    top = max(r["score"] for r in records)
    return [r["step"] for r in records if r["score"] == top][-1], [r["step"] for r in records]


def score(model: Path, dev: Path) -> Tuple[float, Dict[str, Any], Any]:
    import spacy

    from .evaluate import evaluate

    nlp = spacy.load(model)
    scores = evaluate(nlp, dev)
    return weighted_score(scores, nlp.config["training"]["score_weights"]), scores, nlp


def finalize(train_dir: Path, dev: Path, log: Optional[Path] = None) -> Dict[str, Any]:
    """Keep the better of model-best and model-last as model-best; return the record."""
    best, last = train_dir / "model-best", train_dir / "model-last"
    for path in (best, last):
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"{path} not found: run spacy train --output {train_dir} first")
    log = log if log is not None else train_dir / LOG_NAME
    best_step, steps = best_logged_step(log) if log.is_file() else (None, [])
    best_score, _, _ = score(best, dev)
    last_score, last_scores, last_nlp = score(last, dev)
    keep_last = last_score >= best_score
    if keep_last:
        weights = last_nlp.config["training"]["score_weights"]
        performance = dict(last_nlp.meta.get("performance", {}))
        performance.update({k: last_scores.get(k) for k in weights if weights[k] is not None})
        shutil.rmtree(best)
        shutil.copytree(last, best)
        meta = json.loads((best / "meta.json").read_text(encoding="utf8"))
        meta["performance"] = performance
    else:
        meta = json.loads((best / "meta.json").read_text(encoding="utf8"))
    if keep_last:
        trained: Optional[bool] = True
    else:
        trained = None if best_step is None else best_step > 0
    record = {
        "kept": "model-last" if keep_last else "model-best",
        "dev_score": max(best_score, last_score),
        "model_best_dev_score": best_score,
        "model_last_dev_score": last_score,
        "model_best_step": best_step,
        "evaluated_steps": steps,
        "trained": trained,
    }
    meta[META_KEY] = record
    (best / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf8")
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_mat.final",
        description="Score TRAIN_DIR/model-best and TRAIN_DIR/model-last on dev data and keep the "
        "better as model-best (spaCy evaluates only every eval_frequency steps, so model-last "
        "may never have been evaluated); record the choice in model-best/meta.json.")
    parser.add_argument("train_dir", help="spacy train's --output folder")
    parser.add_argument("--dev", required=True, help="dev data (.spacy), as in training")
    parser.add_argument("--log", default=None,
                        help=f"spacy_mat.ConsoleLogger.v1 output_file (default TRAIN_DIR/{LOG_NAME})")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.dev).is_file():
        print(f"error: dev data not found: {args.dev}", file=sys.stderr)
        return 1
    if args.gpu_id >= 0:
        import spacy

        spacy.require_gpu(args.gpu_id)
    try:
        record = finalize(Path(args.train_dir), Path(args.dev), Path(args.log) if args.log else None)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"dev score: model-best {record['model_best_dev_score']:.4f} "
          f"(step {record['model_best_step'] if record['model_best_step'] is not None else '?'}), "
          f"model-last {record['model_last_dev_score']:.4f}; kept {record['kept']} as "
          f"{Path(args.train_dir) / 'model-best'}")
    if record["trained"] is False:
        print("warning: the kept model is the untrained step-0 model (model-last scored lower); "
              "train longer (more steps or epochs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
