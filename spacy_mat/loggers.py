"""A console training logger that shows every loss a component reports.

spaCy's ConsoleLogger prints one loss column per trainable pipe; the
``mat_tagger`` reports its clean CRF loss and, in adversarial modes, its
adversarial loss separately (``loss_keys``), and this logger shows both, plus
the elapsed wall time.
"""
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple, Union

from spacy.util import registry
from wasabi import Printer


def _loss_columns(nlp: Any) -> List[str]:
    keys: List[str] = []
    for name, pipe in nlp.pipeline:
        if getattr(pipe, "is_trainable", False):
            keys.extend(getattr(pipe, "loss_keys", [name]))
    return keys


@registry.loggers("spacy_mat.ConsoleLogger.v1")
def console_logger(output_file: Optional[Union[str, Path]] = None) -> Callable:
    """Print a row per evaluation: epoch, step, each loss, each weighted score,
    the total score and seconds since training began; optionally also write
    the rows as JSON lines to ``output_file``."""

    def setup_printer(nlp: Any, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> Tuple[Callable, Callable]:
        msg = Printer(no_print=True)
        loss_cols = _loss_columns(nlp)
        weights = nlp.config["training"]["score_weights"]
        score_cols = [col for col, value in weights.items() if value is not None]
        header = ["E", "#"] + [f"Loss {c}" for c in loss_cols] + score_cols + ["Score", "Time"]
        widths = [3, 6] + [max(10, len(c) + 5) for c in loss_cols] + [max(6, len(c)) for c in score_cols] + [6, 7]
        write = lambda text: print(text, file=stdout, flush=True)
        write(msg.row([h.upper() for h in header], widths=widths))
        write(msg.row(["-" * w for w in widths], widths=widths))
        stream = None
        if output_file is not None:
            Path(output_file).parent.mkdir(parents=True, exist_ok=True)
            stream = open(output_file, "w", encoding="utf8")
        start = time.time()

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            if info is None:
                return
            elapsed = time.time() - start
            losses = {c: float(info["losses"].get(c, 0.0)) for c in loss_cols}
            scores = {c: float(info["other_scores"].get(c, 0.0) or 0.0) for c in score_cols}
            row = ([info["epoch"], info["step"]] + [f"{losses[c]:.2f}" for c in loss_cols]
                   + [f"{scores[c] * 100:.2f}" for c in score_cols]
                   + [f"{info['score']:.2f}", f"{elapsed:.0f}"])
            write(msg.row(row, widths=widths))
            if stream is not None:
                record = {"epoch": info["epoch"], "step": info["step"], "losses": losses,
                          "scores": scores, "score": info["score"], "seconds": round(elapsed, 2)}
                stream.write(json.dumps(record) + "\n")
                stream.flush()

        def finalize() -> None:
            if stream is not None:
                stream.close()

        return log_step, finalize

    return setup_printer
