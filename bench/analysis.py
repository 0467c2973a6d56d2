"""The paper's analysis table for several trained NER models: test F1
(conlleval), unseen-word F1, F1 on the test set with every entity replaced by
one never annotated in training (pool: the dev set), one-token masking
probes, and the drops; plus a bar chart of the drops.

    python bench/analysis.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--seed 0]

Runs `python -m spacy_mat score` and `python -m spacy_mat robustness` per
model; writes bench/results/analysis.json, bench/results/analysis.md and
bench/results/robustness_drop.png (+ .json).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import CORPUS, RESULTS, machine, write_json

PROBES = [("replace_entities", "replaced entities"), ("mask_non-entity", "1 non-entity token → unk"),
          ("mask_entity", "1 entity token → unk")]


def run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "spacy_mat", *cmd], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=CORPUS["ner"],
                        help="folder with train.spacy, dev.spacy (replacement pool) and test.spacy")
    parser.add_argument("--quick", action="store_true",
                        help="write analysis_quick.* (checks the script runs on a small corpus)")
    args = parser.parse_args()
    data = args.corpus
    suffix = "_quick" if args.quick else ""
    tmp = RESULTS / "analysis"
    tmp.mkdir(parents=True, exist_ok=True)
    rows, rob_files = {}, []
    for spec in args.models:
        name, _, model = spec.partition("=")
        score_json, rob_json = tmp / f"{name}_score.json", tmp / f"{name}_robustness.json"
        run(["score", model, str(data / "test.spacy"), "--train", str(data / "train.spacy"),
             "--json", str(score_json)])
        run(["robustness", model, str(data / "test.spacy"), "--train", str(data / "train.spacy"),
             "--pool", str(data / "dev.spacy"), "--seed", str(args.seed), "--mask-tokens",
             "non-entity", "entity", "--name", name, "--output", str(rob_json)])
        score, rob = json.loads(score_json.read_text()), json.loads(rob_json.read_text())
        rows[name] = {
            "model": model, "test_f1": score["conlleval"]["f"],
            "unseen_token_f1": score["unseen"]["token"]["f"],
            "probes": {key: {"f1": rob["probes"][key]["scores"]["f"], "drop": rob["probes"][key]["drop"]}
                       for key, _ in PROBES if key in rob["probes"]},
        }
        rob_files.append((name, rob_json))
    head = "| model | test F1 | unseen-word F1 | " + " | ".join(f"{label} F1 (drop)" for _, label in PROBES) + " |"
    lines = [head, "|" + " --- |" * (3 + len(PROBES))]
    for name, r in rows.items():
        cells = [f"{r['probes'][k]['f1'] * 100:.2f} ({r['probes'][k]['drop'] * 100:+.2f})" for k, _ in PROBES]
        lines.append(f"| {name} | {r['test_f1'] * 100:.2f} | {r['unseen_token_f1'] * 100:.2f} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    (RESULTS / f"analysis{suffix}.md").write_text(table + "\n", encoding="utf8")
    run(["plot-robustness", *[str(p) for _, p in rob_files], "--labels", *[n for n, _ in rob_files],
         "--output", str(RESULTS / f"robustness_drop{suffix}.png")])
    write_json("analysis", {"seed": args.seed, "corpus": str(data), "rows": rows,
                            "machine": machine()}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
