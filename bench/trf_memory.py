"""Memory of a saved pipeline with frozen-transformer features
(spacy_mat.TransformerFeatures.v1) while it serves many sentences: resident
memory after 1k, 2k, 5k, 10k, 20k sentences, with the default feature cache
setting and with ``cache_inference = true`` (the behaviour before issue #15:
every tagged sentence stayed in the cache), each in a fresh process, and of
spaCy's tokenizer alone on the same texts (spaCy's vocabulary and string
store grow with every new word form, in any pipeline: the control).

    python bench/trf_memory.py [--sentences 20000] [--hidden 128] [--model DIR] [--quick]

The encoder is a randomly initialised 2-layer BERT built locally (hidden
--hidden, WordPiece vocabulary from the training words, like
tests/test_contextual.py), or --model (a Hugging Face model folder, e.g.
MiniLM). A mat_tagger pipeline with it is initialised on 300 CoNLL-2003
training sentences (no training: memory does not depend on the weights) and
saved; the worker loads it and tags the CoNLL-2003 train, dev and test
sentences (repeated when --sentences asks for more) as raw strings through
``nlp.pipe(texts, batch_size=32)``, one torch thread. RSS is read from
/proc/self/statm after returning freed heap to the OS. Writes
bench/results/trf_memory.json (trf_memory_quick.json with --quick: 600
sentences).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CORPUS, machine, setup_torch, write_json

CHECKPOINTS = (1000, 2000, 5000, 10000, 20000)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def sentences(corpus: Path, n: int):
    import spacy

    from common import load_examples
    nlp = spacy.blank("en")
    out = []
    for split in ("train", "dev", "test"):
        path = corpus / f"{split}.spacy"
        if path.exists():
            out.extend(" ".join(t.text for t in eg.reference) for eg in load_examples(nlp, path)
                       if len(eg.reference))
    return [out[i % len(out)] for i in range(n)]


def make_bert(path: Path, words, hidden: int) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters,
                                *("##" + c for c in letters)]))
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_pipeline(out: Path, corpus: Path, model: str, hidden: int) -> Path:
    import spacy
    from collections import Counter

    import spacy_mat  # noqa: F401  (registers the factory)
    from common import load_examples
    from spacy_mat.readers import SentenceCorpus

    nlp = spacy.blank("en")
    examples = list(SentenceCorpus(corpus / "train.spacy")(nlp))[:300]
    if model is None:
        counts = Counter(t.text.lower() for eg in load_examples(nlp, corpus / "train.spacy")
                         for t in eg.reference)
        model = str(make_bert(out / "bert", [w for w, _ in counts.most_common(5000)], hidden))
    nlp.add_pipe("mat_tagger", config={"model": {
        "word_width": 50, "hidden_width": 100,
        "context": {"@layers": "spacy_mat.TransformerFeatures.v1", "name": model}}})
    nlp.initialize(lambda: examples)
    nlp.to_disk(out / "pipeline")
    return out / "pipeline"


def worker(pipeline: str, texts_file: str, mode: str) -> dict:
    """``mode``: "default", "cache_inference" (the pipeline with its feature
    cache on at inference) or "tokenizer" (spaCy's tokenizer alone on the
    same texts: the growth of spaCy's own vocabulary and string store, which
    every pipeline shares)."""
    import spacy

    from spacy_mat.memory import release_freed_memory

    encoder = None
    if mode == "tokenizer":
        nlp = spacy.blank("en")
    else:
        from spacy_mat.architectures import get_context
        from spacy_mat.contextual import get_encoder

        overrides = ({"components.mat_tagger.model.context.cache_inference": True}
                     if mode == "cache_inference" else {})
        nlp = spacy.load(pipeline, config=overrides)
        encoder = get_encoder(get_context(nlp.get_pipe("mat_tagger").model))
    texts = json.loads(Path(texts_file).read_text(encoding="utf8"))
    checkpoints = [c for c in CHECKPOINTS if c <= len(texts)] or [len(texts)]

    def row(i: int, seconds: float) -> dict:
        return {"sentences": i, "rss_mb": round(rss_mb(), 1),
                "cached": len(encoder.cache) if encoder is not None else 0,
                "lexemes": len(nlp.vocab), "strings": len(nlp.vocab.strings), "s": round(seconds, 1)}

    release_freed_memory()
    rows = [row(0, 0.0)]
    start = time.perf_counter()
    for i, _doc in enumerate(nlp.pipe(texts, batch_size=32), start=1):
        if i in checkpoints:
            release_freed_memory()
            rows.append(row(i, time.perf_counter() - start))
    return {"mode": mode, "cache_inference": mode == "cache_inference", "rows": rows,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cache_stats": encoder.stats.to_dict() if encoder is not None else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the random BERT")
    parser.add_argument("--model", default=None, help="a HF model folder instead of the random BERT")
    parser.add_argument("--corpus", type=Path, default=CORPUS["ner"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        setup_torch(args.threads, -1)
        pipeline, texts_file, mode = args.worker
        print(json.dumps(worker(pipeline, texts_file, mode)))
        return 0
    n = 600 if args.quick else args.sentences
    setup_torch(args.threads, -1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(Path(tmp), args.corpus.resolve(), args.model, args.hidden)
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(sentences(args.corpus.resolve(), n)), encoding="utf8")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        for label in ("default", "cache_inference", "tokenizer"):
            cmd = [sys.executable, __file__, "--threads", str(args.threads),
                   "--worker", str(pipeline), str(texts_file), label]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parent)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'setting':16} " + " ".join(f"{r['sentences']:>8}" for r in results["default"]["rows"])
          + "   (RSS MB after N sentences; cached sentences; spaCy lexemes)")
    for label, r in results.items():
        print(f"{label:16} " + " ".join(f"{row['rss_mb']:8.0f}" for row in r["rows"]))
        print(f"{'  cached':16} " + " ".join(f"{row['cached']:8d}" for row in r["rows"]))
        print(f"{'  lexemes':16} " + " ".join(f"{row['lexemes']:8d}" for row in r["rows"]))

    def growth(label: str) -> float:
        rows = results[label]["rows"]
        return round(rows[-1]["rss_mb"] - rows[1]["rss_mb"], 1) if len(rows) > 2 else 0.0

    rows = results["default"]["rows"]
    beyond = round(growth("default") - growth("tokenizer"), 1)
    print(f"default: RSS {rows[1]['rss_mb']:.0f} MB after {rows[1]['sentences']} sentences, "
          f"{rows[-1]['rss_mb']:.0f} MB after {rows[-1]['sentences']} ({growth('default'):+.0f} MB; "
          f"spaCy's tokenizer alone on the same texts {growth('tokenizer'):+.0f} MB, "
          f"so {beyond:+.0f} MB beyond spaCy's vocabulary)")
    payload = {"sentences": n, "encoder": args.model or f"random BERT, 2 layers, hidden {args.hidden}",
               "threads": args.threads, "results": results,
               "default_growth_mb_after_first_checkpoint": growth("default"),
               "tokenizer_growth_mb_after_first_checkpoint": growth("tokenizer"),
               "default_growth_beyond_tokenizer_mb": beyond, "machine": machine()}
    write_json("trf_memory", payload, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
