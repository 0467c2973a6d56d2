"""Inference speed (words/second) of trained pipelines over the CoNLL-2003
test sentences, at several nlp.pipe batch sizes, each model in its own
process (so that its peak memory is its own), measured in the same run.

    python bench/inference.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] \
        [--batch-sizes 1 32 1000] [--repeats 3] [--threads 1] [--quick]

Input: the test sentences as pre-tokenized Docs without annotation (the
tokenizer is not timed). Reports the best of --repeats passes per batch size
and the peak resident memory of the worker process; ratios are to the first
model. Writes bench/results/inference.json (inference_quick.json with --quick).
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


def worker(model: str, batch_sizes, repeats: int, limit: int, test: Path) -> dict:
    import spacy
    from spacy.tokens import Doc

    from common import load_examples

    nlp = spacy.load(model)
    sents = [eg.reference for eg in load_examples(nlp, test)]
    if limit:
        sents = sents[:limit]
    words = [[t.text for t in s] for s in sents]
    n_words = sum(len(w) for w in words)
    out = {"sentences": len(sents), "words": n_words, "words_per_s": {}}
    for bs in batch_sizes:
        best = float("inf")
        for _ in range(repeats):
            docs = [Doc(nlp.vocab, words=w) for w in words]
            start = time.perf_counter()
            for _doc in nlp.pipe(docs, batch_size=bs):
                pass
            best = min(best, time.perf_counter() - start)
        out["words_per_s"][str(bs)] = round(n_words / best, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--quick", action="store_true", help="200 sentences, 1 repeat")
    parser.add_argument("--test", type=Path, default=CORPUS["ner"] / "test.spacy",
                        help="the sentences to tag (.spacy)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = 200 if args.quick else 0
    repeats = 1 if args.quick else args.repeats
    if args.worker:
        setup_torch(args.threads, args.gpu_id)
        print(json.dumps(worker(args.worker, args.batch_sizes, repeats, limit, args.test)))
        return 0

    results = {}
    for spec in args.models:
        name, _, path = spec.partition("=")
        cmd = [sys.executable, __file__, "x", "--worker", str(Path(path).resolve()), "--threads", str(args.threads),
               "--repeats", str(repeats), "--gpu-id", str(args.gpu_id), "--test", str(args.test.resolve()),
               "--batch-sizes", *map(str, args.batch_sizes)] + (["--quick"] if args.quick else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        results[name] = {"model": path, **json.loads(proc.stdout.strip().splitlines()[-1])}
    first = next(iter(results))
    print(f"{'model':24} " + " ".join(f"{'bs ' + str(b):>12}" for b in args.batch_sizes) + f" {'peak MB':>9}")
    for name, r in results.items():
        cells = []
        for b in args.batch_sizes:
            wps = r["words_per_s"][str(b)]
            ratio = wps / results[first]["words_per_s"][str(b)]
            cells.append(f"{wps:>7.0f} {ratio:3.1f}x")
        print(f"{name:24} " + " ".join(f"{c:>12}" for c in cells) + f" {r['peak_rss_mb']:>9.0f}")
    payload = {"test": str(args.test), "threads": args.threads, "batch_sizes": args.batch_sizes, "repeats": repeats,
               "device": device_name(args.gpu_id), "results": results, "machine": machine()}
    write_json("inference", payload, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
