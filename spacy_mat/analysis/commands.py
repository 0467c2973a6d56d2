"""What the analysis subcommands of ``python -m spacy_mat`` do; the argument
declarations live in :mod:`spacy_mat.cli`. Each ``run_*`` takes the parsed
arguments, prints its report and returns the exit code (1 with ``error:
...`` on stderr for bad input)."""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict

from . import conlleval

MATCH_TOLERANCE = 1e-9


def _guard(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    wrapped.__doc__ = run.__doc__
    return wrapped


def _write_json(path: Path, payload: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf8")


def _load_pipeline(path: str) -> Any:
    import spacy

    if not Path(path).is_dir():
        raise ValueError(f"{path}: not a pipeline directory (e.g. training/ner_mat/model-best)")
    return spacy.load(path)


@_guard
def run_score(args: argparse.Namespace) -> int:
    """``score MODEL DATA`` or ``score PREDICTIONS.txt``."""
    from .predictions import read_predictions, write_predictions
    from .unseen import unseen_word_scores

    payload: Dict[str, Any] = {}
    if len(args.inputs) == 1:
        if Path(args.inputs[0]).is_dir():
            raise ValueError(f"{args.inputs[0]} is a directory: give the pipeline and the data "
                             "(score MODEL DATA), or a prediction file alone")
        if args.output_conll:
            raise ValueError("--output-conll needs a pipeline and data (score MODEL DATA)")
        sentences = read_predictions(args.inputs[0])
        payload["predictions"] = args.inputs[0]
    elif len(args.inputs) == 2:
        sentences, info = _predict_for_score(args)
        payload.update(info)
    else:
        raise ValueError(f"expected MODEL DATA or PREDICTIONS, got {len(args.inputs)} arguments")
    result = conlleval.evaluate((s.gold, s.pred) for s in sentences)
    print(result.format())
    if "spacy" in payload:
        (key, spacy_f), = payload["spacy"].items()
        print(_spacy_check(key, spacy_f, result.f1))
    payload["conlleval"] = result.to_dict()
    if args.output_conll:
        write_predictions(args.output_conll, sentences)
        print(f"predictions (word gold pred): {args.output_conll}")
    if args.train:
        from spacy.vocab import Vocab

        from .tagging import read_sentence_docs, training_words

        words = training_words(read_sentence_docs(args.train, Vocab(), args.fmt))
        unseen = unseen_word_scores(sentences, words)
        print(unseen.format(Path(args.train).name))
        payload["unseen"] = unseen.to_dict()
        payload["train"] = args.train
    if args.json:
        _write_json(Path(args.json), payload)
        print(f"scores (JSON): {args.json}")
    return 0


def _predict_for_score(args: argparse.Namespace):
    """Run the pipeline on DATA: the sentences and the JSON fields of the run."""
    from .tagging import (check_gold, find_tagger, predict_docs, read_sentence_docs,
                          spacy_score, tag_sentences)

    model, data = args.inputs
    nlp = _load_pipeline(model)
    name, tagger = find_tagger(nlp, args.target)
    target = args.target or tagger.cfg["target"]
    gold = read_sentence_docs(data, nlp.vocab, args.fmt)
    check_gold(gold, target, data)
    pred = predict_docs(nlp, gold, args.batch_size)
    sentences = tag_sentences(gold, pred, target)
    key, spacy_f, _ = spacy_score(gold, pred, target)
    info = {"model": model, "data": data, "component": name, "target": target,
            "sentences": len(gold), "spacy": {key: spacy_f}}
    return sentences, info


def _spacy_check(key: str, spacy_f: Any, f1: float) -> str:
    """A line comparing spaCy's F-score with conlleval's FB1."""
    if spacy_f is None:
        return f"spaCy scorer {key}: none (no spans in gold or predictions)"
    if abs(spacy_f - f1) <= MATCH_TOLERANCE:
        return f"spaCy scorer {key}: {100 * spacy_f:.2f} (agrees with FB1)"
    return (f"spaCy scorer {key}: {100 * spacy_f:.2f} (DIFFERS from FB1: gold docs with "
            "missing annotation? spaCy ignores predictions over unannotated tokens)")


@_guard
def run_robustness_cmd(args: argparse.Namespace) -> int:
    """``robustness MODEL TEST --train TRAIN``."""
    from .rewrite import ReplacementPool
    from .robustness import format_robustness, run_robustness
    from .tagging import check_gold, find_tagger, read_sentence_docs

    nlp = _load_pipeline(args.model)
    name, tagger = find_tagger(nlp, args.target)
    target = args.target or tagger.cfg["target"]
    test = read_sentence_docs(args.test, nlp.vocab, args.fmt)
    check_gold(test, target, args.test)
    train = read_sentence_docs(args.train, nlp.vocab, args.fmt)
    check_gold(train, target, args.train)
    if args.replacements:
        pool = ReplacementPool.from_file(args.replacements)
    elif args.pool:
        docs = [d for path in args.pool for d in read_sentence_docs(path, nlp.vocab, args.fmt)]
        pool = ReplacementPool.from_docs(docs, target, source=", ".join(args.pool))
    else:
        pool = ReplacementPool.from_docs(test, target, source=f"{args.test}, other entities")
    result = run_robustness(nlp, test, train, target, pool, share=args.share, seed=args.seed,
                            mask_modes=args.mask_tokens, batch_size=args.batch_size,
                            typo_share=args.typo_share,
                            save_dir=Path(args.save_rewritten) if args.save_rewritten else None)
    result = {"name": args.name or Path(args.model).name, "model": args.model,
              "test": args.test, "train": args.train, "component": name, **result}
    print(format_robustness(result))
    _write_json(Path(args.output), result)
    print(f"results (JSON): {args.output}")
    if args.save_rewritten:
        print(f"rewritten test sets (.spacy): {args.save_rewritten}")
    return 0


@_guard
def run_plot_learning(args: argparse.Namespace) -> int:
    from .plots import plot_learning

    out = plot_learning(args.inputs, args.output, args.labels, metric=args.metric, x=args.x)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


@_guard
def run_plot_confidence(args: argparse.Namespace) -> int:
    from .plots import plot_confidence

    out = plot_confidence(args.inputs, args.output, args.labels, sentence=args.sentence)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


@_guard
def run_plot_robustness(args: argparse.Namespace) -> int:
    from .plots import plot_robustness

    out = plot_robustness(args.inputs, args.output, args.labels)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
