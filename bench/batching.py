"""Training throughput with random batches (spacy.batch_by_sequence.v1, the
paper's setting) against length-bucketed batches (spacy_mat.batch_by_length.v1),
both 64 sentences per batch, on the same CoNLL-2003 training sentences.

    python bench/batching.py [--sentences 3200] [--threads 1] [--quick]

Each objective (baseline, MAT) trains one pass over the same sentences with
each batcher, alternating, from the same initial weights; reports sentences
per second, padded token slots per real token, and the speed-up. Writes
bench/results/batching.json. --quick: 256 sentences (checks the script runs;
its timings mean nothing).
"""
import argparse
import random
import sys
import time
from pathlib import Path

from common import REPO, device_name, load_examples, machine, setup_torch, write_json
from train_step import build

MODES = ["baseline", "mat_similarity"]  # bench/train_step.py's modes (GloVe configs)


def random_batches(examples, size, rng):
    order = list(examples)
    rng.shuffle(order)
    return [order[i: i + size] for i in range(0, len(order), size)]


def bucketed_batches(examples, size, rng):
    from spacy_mat.batching import bucket_by_length

    order = list(examples)
    rng.shuffle(order)
    return list(bucket_by_length(order, size, buffer=50, rng=rng))


def padding_ratio(batches) -> float:
    slots = sum(len(b) * max(len(eg.reference) for eg in b) for b in batches)
    tokens = sum(len(eg.reference) for b in batches for eg in b)
    return slots / tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=3200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--vectors", type=Path, default=REPO / "vectors" / "glove-6b-50d",
                        help="vectors directory (python -m spacy_mat vectors)")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.repeats = 256, 1

    import spacy
    torch = setup_torch(args.threads, args.gpu_id)
    examples = load_examples(spacy.blank("en"), args.train)[: args.sentences]
    batchers = {"random": random_batches, "bucketed": bucketed_batches}
    seconds = {(m, b): 0.0 for m in MODES for b in batchers}
    padding = {b: [] for b in batchers}
    for repeat in range(args.repeats):
        for mode in MODES:
            for name, make in batchers.items():
                # the pipeline's own examples (its vocab holds the vectors), the same sentences
                nlp, optimizer, own = build(mode, args.train, args.sentences, seed=0,
                                            vectors=args.vectors)
                batches = make(own, 64, random.Random(repeat))
                padding[name].append(padding_ratio(batches))
                start = time.perf_counter()
                for batch in batches:
                    nlp.update(batch, sgd=optimizer)
                if args.gpu_id >= 0 and torch.cuda.is_available():
                    torch.cuda.synchronize()
                seconds[(mode, name)] += time.perf_counter() - start
    n = len(examples) * args.repeats
    rows = {}
    print(f"{'objective':16} {'batcher':9} {'sentences/s':>12} {'slots/token':>12} {'speed-up':>9}")
    for mode in MODES:
        base = n / seconds[(mode, "random")]
        for name in batchers:
            rate = n / seconds[(mode, name)]
            pad = sum(padding[name]) / len(padding[name])
            rows[f"{mode}/{name}"] = {"sentences_per_s": round(rate, 1), "slots_per_token": round(pad, 2),
                                      "speedup_vs_random": round(rate / base, 3)}
            print(f"{mode:16} {name:9} {rate:12.1f} {pad:12.2f} {rate / base:9.2f}")
    write_json("batching", {"sentences": len(examples), "repeats": args.repeats, "batch_sentences": 64,
                            "threads": torch.get_num_threads(), "device": device_name(args.gpu_id),
                            "quick": args.quick, "rows": rows, "machine": machine()}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
