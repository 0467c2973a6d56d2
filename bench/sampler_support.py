"""How spread out MAT's similarity sampler is on GloVe, for choices of μ and Ω.

The candidates are the CoNLL-2003 training words (case-sensitive, as in the
model's table), each with its GloVe 6B 50-d vector (exact → lowercase →
digits normalised; rows without one drawn at the vectors' scale), i.e. the
table at initialise. For a few query words it prints the effective support
(exp of the entropy) and the top probability of the substitute distribution,
with and without excluding the word's casing variants, plus sampled
substitutes; writes bench/results/sampler_support.json.

    python bench/sampler_support.py [--train corpus/ner/train.spacy] [--quick]
"""
import argparse
import sys
from pathlib import Path

from common import REPO, machine, write_json

QUERIES = ["Germany", "John", "Monday", "bank", "said", "Reuters", "goal", "7"]
# (label, mu_quantile, sigma_quantile): None = the paper's mu = 0 / sigma = std
SETTINGS = [("mu=0, sigma=std (default)", None, None), ("mu=q0.0005, sigma=std", 0.0005, None),
            ("mu=q0.002, sigma=std", 0.002, None), ("mu=q0.0005, sigma=q0.001-mu", 0.0005, 0.001),
            ("mu=q0.001, sigma=q0.003-mu", 0.001, 0.003)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="the 260-word test sample of GloVe")
    args = parser.parse_args()

    import numpy as np
    import spacy
    import torch
    from spacy.tokens import DocBin

    from spacy_mat.adversarial import effective_support, similarity_probs
    from spacy_mat.features import IndexTables
    from spacy_mat.vectors import find_row, read_glove_package, read_text_vectors

    if args.quick:
        words, vectors = read_text_vectors(REPO / "tests" / "data" / "glove_sample.txt")
        sequences = [[w.capitalize() if i % 3 == 0 else w for i, w in enumerate(words)]]
    else:
        words, vectors = read_glove_package()
        nlp = spacy.blank("en")
        sequences = [[t.text for t in d] for d in DocBin().from_disk(args.train).get_docs(nlp.vocab)]
    tables = IndexTables.from_sequences(sequences)
    index = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(0)
    bound = float(np.sqrt(3.0) * vectors.std())
    table = rng.uniform(-bound, bound, size=(len(tables.words), vectors.shape[1])).astype(np.float32)
    for i, word in enumerate(tables.words[3:], start=3):
        row = find_row(index, word)
        if row is not None:
            table[i] = vectors[row]
    vecs = torch.tensor(table)
    queries = [q for q in QUERIES if q in tables.words] or tables.words[3:8]
    ids = torch.tensor([tables.words.index(q) for q in queries])
    groups = torch.as_tensor(tables.case_groups())
    generator = torch.Generator().manual_seed(0)
    rows = []
    for label, mu_q, sigma_q in SETTINGS:
        for exclude in (False, True):
            probs = similarity_probs(vecs, ids, 3, mu_quantile=mu_q, sigma_quantile=sigma_q,
                                     groups=groups if exclude else None,
                                     query_groups=groups[ids] if exclude else None)
            support = effective_support(probs).tolist()
            per_word = {}
            for q, p, s in zip(queries, probs, support):
                draws = torch.multinomial(p, args.samples, replacement=True, generator=generator)
                per_word[q] = {"support": round(s, 1), "top_p": round(float(p.max()), 3),
                               "samples": [tables.words[j] for j in draws.tolist()]}
            rows.append({"setting": label, "exclude_case_variants": exclude, "words": per_word,
                         "median_support": float(np.median(support))})
    print(f"{'setting':32} {'excl. case':>10} {'median support':>15}  support per word")
    for row in rows:
        print(f"{row['setting']:32} {str(row['exclude_case_variants']):>10} "
              f"{row['median_support']:15.1f}  "
              + ", ".join(f"{q} {w['support']}" for q, w in row["words"].items()))
    for row in rows:
        if row["exclude_case_variants"] and row["setting"].endswith("(default)"):
            for q, w in row["words"].items():
                print(f"  {q} -> {', '.join(w['samples'])}")
    write_json("sampler_support", {"candidates": len(tables.words) - 3, "queries": queries,
                                   "rows": rows, "machine": machine()}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
