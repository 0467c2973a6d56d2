"""Cost and calibration of mat_tagger's per-entity confidence scores.

    python bench/confidence_cost.py MODEL DEV.spacy [TEST.spacy ...] [--batch-size 1000]
        [--repeats 3] [--threads 1] [--limit 0] [--quick]

Cost: ``nlp.pipe`` over the gold sentences of the first data file (fresh
docs, no preset entities) at ``--batch-size``, with scores off
(``scores_key = null``), on (the default: CRF span marginals by
forward-backward) and on with per-token marginals; best of ``--repeats``.
Calibration: on every data file, each predicted entity's probability against
whether it is exactly a gold entity: expected calibration error (10 equal
bins) and a reliability plot. Writes bench/results/confidence_cost.json and
bench/results/confidence_reliability.png.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_examples, machine, setup_torch, write_json  # noqa: E402


def fresh_docs(nlp, examples):
    from spacy.tokens import Doc

    return [Doc(nlp.vocab, words=[t.text for t in eg.reference],
                spaces=[bool(t.whitespace_) for t in eg.reference]) for eg in examples]


def time_pipe(nlp, examples, batch_size, repeats):
    best = float("inf")
    for _ in range(repeats):
        docs = fresh_docs(nlp, examples)
        start = time.perf_counter()
        for _ in nlp.pipe(docs, batch_size=batch_size):
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("data", nargs="+", help=".spacy files: the first is timed, all are calibrated")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sentences of each file")
    parser.add_argument("--time-sentences", type=int, default=0,
                        help="time only the first N sentences of the first file (0: all)")
    parser.add_argument("--quick", action="store_true", help="write *_quick.json (git-ignored)")
    args = parser.parse_args(argv)

    setup_torch(args.threads, args.gpu_id)
    import spacy

    from spacy_mat.calibration import (entity_confidences, expected_calibration_error,
                                       plot_reliability, reliability_table)

    nlp = spacy.load(args.model)
    tagger = nlp.get_pipe("mat_tagger")
    key = tagger.scores_key or "mat_tagger_scores"
    data = {path: load_examples(nlp, Path(path)) for path in args.data}
    if args.limit:
        data = {p: egs[: args.limit] for p, egs in data.items()}

    timed = data[args.data[0]]
    if args.time_sentences:
        timed = timed[: args.time_sentences]
    time_pipe(nlp, timed[: args.batch_size], args.batch_size, 1)  # warm-up
    cost = {}
    for name, settings in (("no_scores", (None, False)), ("span_scores", (key, False)),
                           ("span_and_token_scores", (key, True))):
        tagger.scores_key, tagger.token_scores = settings
        cost[name] = time_pipe(nlp, timed, args.batch_size, args.repeats)
        print(f"{name:24s} {cost[name]:.2f} s for {len(timed)} sentences", flush=True)
    tagger.scores_key, tagger.token_scores = key, False
    ratio = {k: cost[k] / cost["no_scores"] for k in cost}

    calibration, tables = {}, {}
    for path, examples in data.items():
        docs = list(nlp.pipe(fresh_docs(nlp, examples), batch_size=args.batch_size))
        conf, correct = entity_confidences(docs, [eg.reference for eg in examples], key)
        table = reliability_table(conf, correct)
        name = Path(path).stem
        tables[name] = table
        calibration[name] = {"entities": len(conf), "precision": sum(correct) / max(len(conf), 1),
                             "mean_confidence": sum(conf) / max(len(conf), 1),
                             "ece": expected_calibration_error(conf, correct), "bins": table}
        print(f"{name}: {len(conf)} entities, precision {calibration[name]['precision']:.4f}, "
              f"mean confidence {calibration[name]['mean_confidence']:.4f}, "
              f"ECE {calibration[name]['ece']:.4f}", flush=True)
    suffix = "_quick" if args.quick else ""
    plot = plot_reliability(tables, RESULTS / f"confidence_reliability{suffix}.png")
    write_json("confidence_cost", {
        "machine": machine(), "model": args.model, "timed_data": args.data[0],
        "sentences": len(timed), "batch_size": args.batch_size, "threads": args.threads,
        "repeats": args.repeats, "seconds": cost, "ratio_to_no_scores": ratio,
        "calibration": calibration, "plot": str(plot)}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
