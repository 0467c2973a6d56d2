"""Train one config under a fixed epoch budget and record time and scores.

    python bench/train_budget.py configs/ner_baseline.cfg --task ner --epochs 15 \
        --name ner_baseline [--threads 1] [-- --extra.spacy.overrides value]

Trains with `spacy train` into training/bench/NAME (no early stopping inside
the budget: every epoch runs, model-best is the best dev checkpoint), then
evaluates model-best on the task's dev and test sets and writes
bench/results/train_NAME.json. Prints a progress line per evaluation.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import CORPUS, REPO, SCORE_KEYS, device_name, evaluate, load_examples, machine, setup_torch, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--task", choices=sorted(SCORE_KEYS), required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch/BLAS threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None,
                        help="folder with {train,dev,test}.spacy (default: corpus/<task>)")
    parser.add_argument("--output", type=Path, default=None,
                        help="training output (default: training/bench/<name>)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU for training and evaluation")
    parser.add_argument("--quick", action="store_true",
                        help="train_<name>_quick.json (checks the script runs on a small corpus)")
    parser.add_argument("overrides", nargs="*", help="extra `spacy train` overrides")
    # spacy train overrides (--section.key value) after the script's own options,
    # with or without a "--" in between
    args, unknown = parser.parse_known_args()
    args.overrides = [a for a in args.overrides + unknown if a != "--"]

    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    out = args.output or REPO / "training" / "bench" / args.name
    corpus = args.corpus or CORPUS[args.task]
    cmd = [sys.executable, "-u", "-m", "spacy", "train", args.config, "--output", str(out),
           "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
           "--training.max_epochs", str(args.epochs), "--training.max_steps", "0",
           "--training.patience", "0", "--system.seed", str(args.seed), "--gpu-id", str(args.gpu_id),
           *args.overrides]
    print(" ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print(f"[{args.name} {time.time() - start:7.0f}s] {line}", end="", flush=True)
    if proc.wait() != 0:
        print(f"spacy train failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    wall = time.time() - start

    import spacy
    setup_torch(0, args.gpu_id)  # threads: set through the environment above
    nlp = spacy.load(out / "model-best")
    n_train = len(load_examples(nlp, corpus / "train.spacy"))
    key = SCORE_KEYS[args.task]
    result = {
        "name": args.name, "config": args.config, "task": args.task, "seed": args.seed,
        "budget": {"epochs": args.epochs, "threads": args.threads or "default"},
        "device": device_name(args.gpu_id),
        "overrides": args.overrides, "train_wall_s": round(wall, 1),
        "train_sentences_per_s": round(args.epochs * n_train / wall, 1),
        "dev": evaluate(nlp, corpus / "dev.spacy", key),
        "test": evaluate(nlp, corpus / "test.spacy", key),
        "machine": machine(),
    }
    write_json(f"train_{args.name}", result, quick=args.quick)
    print(f"{args.name}: dev {key} {result['dev'][key]:.4f}  test {key} {result['test'][key]:.4f}  "
          f"wall {wall / 60:.1f} min  ({result['train_sentences_per_s']} sent/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
