"""Median wall time of one training step (a batch of 64 CoNLL-2003 sentences)
for the baseline, AT and MAT objectives, on the same batches, interleaved so
that machine noise hits every mode alike; ratios to the baseline.

    python bench/train_step.py [--steps 25] [--threads 0] [--quick]
        [--modes baseline at mat_similarity ...] [--vectors vectors/glove-6b-50d]

The modes train the GloVe configs (their word table: training words + the
400k GloVe words, pretrained-only rows fixed) unless named otherwise:
``*_novec`` without vectors, ``baseline_trainonly`` with a table of the
training words only, ``baseline_dense`` with every GloVe row trained (dense
gradient and Adam over 20M parameters). Writes
bench/results/train_step.json (``train_step_vectors.json`` when --modes is
given). --quick: 3 steps on 200 sentences (checks the script runs; its
timings mean nothing).
"""
import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from common import REPO, device_name, machine, setup_torch, write_json

MODEL = "components.mat_tagger.model"
# mode -> (config, overrides)
MODES = {
    "baseline": ("ner_baseline", {}),
    "at": ("ner_at", {}),
    "mat_similarity": ("ner_mat_similarity", {}),
    "mat_random": ("ner_mat_random", {}),
    "baseline_novec": ("ner_baseline_novec", {}),
    "mat_similarity_novec": ("ner_mat_similarity_novec", {}),
    "baseline_trainonly": ("ner_baseline", {f"{MODEL}.pretrained_rows": "train"}),
    "baseline_dense": ("ner_baseline", {f"{MODEL}.train_pretrained_rows": True}),
}
DEFAULT_MODES = ["baseline", "at", "mat_similarity", "mat_random"]


def build(mode: str, train: Path, limit: int, seed: int, vectors: Path):
    """The pipeline of ``mode``, initialised, with its optimizer and its own
    training examples (made with its vocab, which holds the vectors)."""
    import spacy_mat  # noqa: F401  (registrations)
    from spacy.util import fix_random_seed, load_model_from_config
    from thinc.api import Config

    config_name, overrides = MODES[mode]
    overrides = {**overrides, "paths.vectors": str(vectors)} if "novec" not in mode else overrides
    config = Config().from_disk(REPO / "configs" / f"{config_name}.cfg", overrides=overrides)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    if config["paths"]["vectors"]:  # what `spacy train` does through [initialize] vectors
        from spacy.training.initialize import load_vectors_into_model

        load_vectors_into_model(nlp, config["paths"]["vectors"])
    from common import load_examples

    examples = load_examples(nlp, train)[: limit or None]
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    return nlp, optimizer, examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=None)
    parser.add_argument("--vectors", type=Path, default=REPO / "vectors" / "glove-6b-50d",
                        help="vectors directory (python -m spacy_mat vectors)")
    args = parser.parse_args()
    modes = args.modes or DEFAULT_MODES
    if args.quick:
        args.steps, args.warmup = 3, 1

    torch = setup_torch(args.threads, args.gpu_id)
    limit = 200 if args.quick else 0
    pipelines = {mode: build(mode, args.train, limit, seed=0, vectors=args.vectors)
                 for mode in modes}
    n_examples = len(next(iter(pipelines.values()))[2])
    rng = random.Random(0)
    batches = [rng.sample(range(n_examples), 64) for _ in range(args.steps + args.warmup)]
    times = {mode: [] for mode in modes}
    for i, batch in enumerate(batches):
        for mode, (nlp, optimizer, examples) in pipelines.items():
            start = time.perf_counter()
            nlp.update([examples[j] for j in batch], sgd=optimizer)
            if torch.cuda.is_available() and args.gpu_id >= 0:
                torch.cuda.synchronize()
            if i >= args.warmup:
                times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(ts) for mode, ts in times.items()}
    base = medians[modes[0]]
    rows = {mode: {"median_s": round(m, 4), "ratio_to_baseline": round(m / base, 3),
                   "steps": len(times[mode])} for mode, m in medians.items()}
    print(f"{'mode':20} {'median s/step':>14} {'x ' + modes[0]:>11}")
    for mode, row in rows.items():
        print(f"{mode:20} {row['median_s']:14.4f} {row['ratio_to_baseline']:11.3f}")
    result = {"batch_sentences": 64, "ratio_to": modes[0], "vectors": str(args.vectors), "threads": torch.get_num_threads(), "quick": args.quick,
              "device": device_name(args.gpu_id), "modes": rows, "machine": machine()}
    write_json("train_step" if args.modes is None else "train_step_vectors", result,
               quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
