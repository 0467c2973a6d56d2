"""Median wall time of one training step (a batch of 64 CoNLL-2003 sentences)
for the baseline, AT and MAT objectives, on the same batches, interleaved so
that machine noise hits every mode alike; ratios to the baseline.

    python bench/train_step.py [--steps 25] [--threads 0] [--quick]

Writes bench/results/train_step.json. --quick: 3 steps on 200 sentences
(checks the script runs; its timings mean nothing).
"""
import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from common import REPO, device_name, machine, setup_torch, write_json

MODES = {"baseline": "ner_baseline", "at": "ner_at", "mat_similarity": "ner_mat_similarity",
         "mat_random": "ner_mat_random"}


def build(config_name: str, examples_fn, seed: int):
    import spacy_mat  # noqa: F401  (registrations)
    from spacy.util import fix_random_seed, load_model_from_config
    from thinc.api import Config

    config = Config().from_disk(REPO / "configs" / f"{config_name}.cfg")
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    fix_random_seed(seed)
    optimizer = nlp.initialize(examples_fn)
    return nlp, optimizer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gpu-id", type=int, default=-1)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup = 3, 1

    import spacy
    torch = setup_torch(args.threads, args.gpu_id)
    from common import load_examples

    examples = load_examples(spacy.blank("en"), args.train)
    if args.quick:
        examples = examples[:200]
    rng = random.Random(0)
    batches = [rng.sample(examples, 64) for _ in range(args.steps + args.warmup)]
    pipelines = {mode: build(cfg, lambda: examples, seed=0) for mode, cfg in MODES.items()}
    times = {mode: [] for mode in MODES}
    for i, batch in enumerate(batches):
        for mode, (nlp, optimizer) in pipelines.items():
            start = time.perf_counter()
            nlp.update(batch, sgd=optimizer)
            if torch.cuda.is_available() and args.gpu_id >= 0:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(ts) for mode, ts in times.items()}
    base = medians["baseline"]
    rows = {mode: {"median_s": round(m, 4), "ratio_to_baseline": round(m / base, 3),
                   "steps": len(times[mode])} for mode, m in medians.items()}
    print(f"{'mode':16} {'median s/step':>14} {'x baseline':>11}")
    for mode, row in rows.items():
        print(f"{mode:16} {row['median_s']:14.4f} {row['ratio_to_baseline']:11.3f}")
    result = {"batch_sentences": 64, "threads": torch.get_num_threads(), "quick": args.quick,
              "device": device_name(args.gpu_id), "modes": rows, "machine": machine()}
    write_json("train_step", result, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
