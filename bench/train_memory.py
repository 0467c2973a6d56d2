"""Peak memory (RSS) of training with each word-table choice: one subprocess
per mode builds the pipeline (GloVe 400k rows fixed / training words only /
all rows trained / no vectors), initialises it and trains a few steps;
its ru_maxrss and the saved model's size are reported.

    python bench/train_memory.py [--steps 5] [--modes ...] [--quick]

Writes bench/results/train_memory.json.
"""
import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine, write_json

MODES = ["baseline", "baseline_trainonly", "baseline_dense", "baseline_novec"]


def child(mode: str, steps: int, train: Path, vectors: Path, limit: int) -> None:
    """Run in the subprocess: build, train, save; print one JSON line."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from train_step import build

    nlp, optimizer, examples = build(mode, train, limit, seed=0, vectors=vectors)
    rng = random.Random(0)
    for _ in range(steps):
        nlp.update(rng.sample(examples, 64), sgd=optimizer)
    out = Path(tempfile.mkdtemp())
    nlp.to_disk(out / "model")
    size = sum(p.stat().st_size for p in (out / "model").rglob("*") if p.is_file())
    shutil.rmtree(out)
    print(json.dumps({"mode": mode, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "model_mb": size / 1e6}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--vectors", type=Path, default=REPO / "vectors" / "glove-6b-50d")
    parser.add_argument("--quick", action="store_true", help="1 step on 200 sentences")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    limit = 200 if args.quick else 0
    if args.quick:
        args.steps = 1
    if args.child:
        child(args.child, args.steps, args.train, args.vectors, limit)
        return 0
    rows = {}
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--child", mode, "--steps", str(args.steps),
               "--train", str(args.train), "--vectors", str(args.vectors)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        rows[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'mode':20} {'peak RSS MB':>12} {'saved model MB':>15}")
    for mode, row in rows.items():
        print(f"{mode:20} {row['peak_rss_mb']:12.0f} {row['model_mb']:15.1f}")
    write_json("train_memory", {"steps": args.steps, "vectors": str(args.vectors), "modes": rows,
                                "machine": machine()}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
