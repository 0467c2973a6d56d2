"""Inference speed (words/second) of trained pipelines over the CoNLL-2003
test sentences, at several nlp.pipe batch sizes, each model in its own
process (so that its peak memory is its own), measured in the same run.

    python bench/inference.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] \
        [--batch-sizes 1 32 1000] [--repeats 3] [--threads 1] [--quick]

Two inputs: the test sentences as pre-tokenized Docs without annotation
(``words_per_s``: the tokenizer is not timed), and the same sentences as raw
strings, their tokens joined by spaces (``text_words_per_s``: ``nlp.pipe(texts)``,
tokenizer included, words counted as the tokens it produces). For a
``mat_tagger`` pipeline the pre-tokenized pass is also timed with confidence
scores off (``words_per_s_no_scores``: ``scores_key = None``), since the
default computes them. The rounds are interleaved (round r runs every model
once, in a fresh process) and the best round counts, so that load changes
on a shared machine hit all models alike; ratios are to the first model.
Peak resident memory (``peak_rss_mb``) is the worker process's maximum.
Writes bench/results/inference.json (inference_quick.json with --quick).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import CORPUS, device_name, machine, setup_torch, write_json


def _best_rate(run, n_words: int) -> float:
    start = time.perf_counter()
    run()
    return round(n_words / (time.perf_counter() - start), 1)


def worker(model: str, batch_sizes, limit: int, test: Path) -> dict:
    import spacy
    from spacy.tokens import Doc

    from common import load_examples

    nlp = spacy.load(model)
    sents = [eg.reference for eg in load_examples(nlp, test)]
    if limit:
        sents = sents[:limit]
    words = [[t.text for t in s] for s in sents]
    texts = [" ".join(w) for w in words]
    n_words = sum(len(w) for w in words)
    n_text_words = sum(len(d) for d in nlp.tokenizer.pipe(texts))
    taggers = [pipe for _, pipe in nlp.pipeline if hasattr(pipe, "scores_key")]
    out = {"sentences": len(sents), "words": n_words, "text_words": n_text_words,
           "words_per_s": {}, "text_words_per_s": {}}
    if taggers:
        out["scores_key"] = taggers[0].scores_key
        out["words_per_s_no_scores"] = {}

    def pipe_docs(bs):
        docs = [Doc(nlp.vocab, words=w) for w in words]
        return lambda: [None for _ in nlp.pipe(docs, batch_size=bs)]

    for bs in batch_sizes:
        pipe_docs(bs)()  # warm-up (first-call allocations, lazy imports)
        out["words_per_s"][str(bs)] = _best_rate(pipe_docs(bs), n_words)
        out["text_words_per_s"][str(bs)] = _best_rate(
            lambda: [None for _ in nlp.pipe(texts, batch_size=bs)], n_text_words)
        if taggers:
            keys = [t.scores_key for t in taggers]
            for t in taggers:
                t.scores_key = None
            out["words_per_s_no_scores"][str(bs)] = _best_rate(pipe_docs(bs), n_words)
            for t, key in zip(taggers, keys):
                t.scores_key = key
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _merge(best: dict, new: dict) -> dict:
    """Keep the best rate per measure over rounds and the largest peak RSS."""
    if not best:
        return new
    for key, value in new.items():
        if isinstance(value, dict):
            for bs, rate in value.items():
                best[key][bs] = max(best[key][bs], rate)
    best["peak_rss_mb"] = max(best["peak_rss_mb"], new["peak_rss_mb"])
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 1000])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--quick", action="store_true", help="200 sentences, 1 round")
    parser.add_argument("--sentences", type=int, default=0, help="the first N test sentences (0 = all)")
    parser.add_argument("--test", type=Path, default=CORPUS["ner"] / "test.spacy",
                        help="the sentences to tag (.spacy)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = 200 if args.quick else args.sentences
    repeats = 1 if args.quick else args.repeats
    if args.worker:
        setup_torch(args.threads, args.gpu_id)
        print(json.dumps(worker(args.worker, args.batch_sizes, limit, args.test)))
        return 0

    specs = [spec.partition("=")[::2] for spec in args.models]
    results = {name: {} for name, _ in specs}
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for _ in range(repeats):
        for name, path in specs:
            cmd = [sys.executable, __file__, "x", "--worker", str(Path(path).resolve()),
                   "--threads", str(args.threads), "--gpu-id", str(args.gpu_id),
                   "--test", str(args.test.resolve()), "--batch-sizes", *map(str, args.batch_sizes)]
            cmd += ["--quick"] if args.quick else ["--sentences", str(args.sentences)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results[name] = _merge(results[name], json.loads(proc.stdout.strip().splitlines()[-1]))
    for name, path in specs:
        results[name] = {"model": path, **results[name]}
    first = specs[0][0]
    measures = [("words_per_s", "docs"), ("words_per_s_no_scores", "docs, no scores"),
                ("text_words_per_s", "raw text")]
    print(f"{'model':24} {'input':16} " + " ".join(f"{'bs ' + str(b):>13}" for b in args.batch_sizes)
          + f" {'peak MB':>9}")
    for name, r in results.items():
        for key, label in measures:
            if key not in r:
                continue
            cells = []
            for b in args.batch_sizes:
                wps = r[key][str(b)]
                ref_key = "text_words_per_s" if key == "text_words_per_s" else "words_per_s"
                ref = results[first][ref_key][str(b)]
                cells.append(f"{wps:>7.0f} {wps / ref:4.2f}x")
            print(f"{name:24} {label:16} " + " ".join(f"{c:>13}" for c in cells)
                  + f" {r['peak_rss_mb']:>9.0f}")
    payload = {"test": str(args.test), "sentences_limit": limit, "threads": args.threads, "batch_sizes": args.batch_sizes,
               "rounds": repeats, "device": device_name(args.gpu_id), "results": results,
               "machine": machine()}
    write_json("inference", payload, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
