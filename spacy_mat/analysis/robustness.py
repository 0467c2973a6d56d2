"""The robustness evaluation: conlleval F1 of a pipeline on the original test
sentences, on the same sentences with their entities replaced by entities
unseen in training (:mod:`.rewrite`), and with one token per sentence made
unknown (:mod:`.masking`); the drop is original F1 minus probe F1.

All scores are fractions in [0, 1]; the table prints percentages.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from . import conlleval
from .masking import mask_tokens, unknown_word
from .surface import lowercase_docs, typo_docs
from .rewrite import ReplacementPool, all_surfaces, replace_entities, span_surfaces
from .tagging import predict_docs, tag_sentences, target_spans, training_words

N_EXAMPLES = 20  # replacements listed in the result, for a look at the rewritten data


def score_docs(nlp: Language, gold_docs: Sequence[Doc], target: str,
               batch_size: int = 256) -> Tuple[conlleval.ConllevalResult, List[Doc]]:
    """conlleval scores of the pipeline on ``gold_docs``, and its predicted docs."""
    pred_docs = predict_docs(nlp, gold_docs, batch_size)
    sentences = tag_sentences(gold_docs, pred_docs, target)
    return conlleval.evaluate((s.gold, s.pred) for s in sentences), pred_docs


def _save(save_dir: Optional[Path], probe: str, docs: Sequence[Doc]) -> None:
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        DocBin(docs=docs).to_disk(save_dir / f"{probe}.spacy")


def run_robustness(nlp: Language, test_docs: Sequence[Doc], train_docs: Sequence[Doc],
                   target: str, pool: ReplacementPool, *, share: float = 1.0, seed: int = 0,
                   mask_modes: Sequence[str] = ("non-entity",), batch_size: int = 256,
                   mask_word: Optional[str] = None, typo_share: float = 0.1,
                   save_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Run every probe; returns the JSON-ready result (see ``format_robustness``).
    With ``save_dir``, each rewritten test set is saved there as
    ``<probe>.spacy``."""
    forbidden = all_surfaces(span_surfaces(train_docs, target))
    pool = pool.excluding(forbidden)
    if not pool.by_label:
        raise ValueError(f"no replacement candidates left: every span of the pool ({pool.source}) "
                         "is a training entity; take the pool from other data (e.g. --pool "
                         "dev.spacy) or give a list (--replacements FILE)")
    original, _ = score_docs(nlp, test_docs, target, batch_size)
    base_f = original.f1
    probes: Dict[str, Dict[str, Any]] = {
        "original": {"changed": 0, "scores": original.to_dict(), "drop": 0.0},
    }

    rewrite = replace_entities(test_docs, target, pool, share=share, seed=seed)
    _save(save_dir, "replace_entities", rewrite.docs)
    replaced, pred_docs = score_docs(nlp, rewrite.docs, target, batch_size)
    predicted = [set(target_spans(doc, target)) for doc in pred_docs]
    found = sum((r.start, r.end, r.label) in predicted[r.doc] for r in rewrite.replacements)
    probes["replace_entities"] = {
        "changed": len(rewrite.replacements), "chosen": rewrite.chosen,
        "skipped": rewrite.skipped, "share": share,
        "replaced_recall": found / len(rewrite.replacements) if rewrite.replacements else 0.0,
        "scores": replaced.to_dict(), "drop": base_f - replaced.f1,
    }

    word = mask_word or unknown_word(training_words(train_docs))
    for mode in mask_modes:
        masked_docs, positions = mask_tokens(test_docs, target, mode=mode, seed=seed, word=word)
        _save(save_dir, f"mask_{mode}", masked_docs)
        masked, _ = score_docs(nlp, masked_docs, target, batch_size)
        probes[f"mask_{mode}"] = {
            "changed": sum(p is not None for p in positions), "word": word,
            "scores": masked.to_dict(), "drop": base_f - masked.f1,
        }
    lowered, n_lowered = lowercase_docs(test_docs, target)
    typed, n_typos = typo_docs(test_docs, target, share=typo_share, seed=seed)
    for key, docs, changed, extra in (("lowercase", lowered, n_lowered, {}),
                                      ("typos", typed, n_typos, {"share": typo_share})):
        _save(save_dir, key, docs)
        scores, _ = score_docs(nlp, docs, target, batch_size)
        probes[key] = {"changed": changed, **extra, "scores": scores.to_dict(),
                       "drop": base_f - scores.f1}
    return {
        "target": target, "seed": seed, "sentences": len(test_docs),
        "pool": {"source": pool.source, "sizes": pool.sizes(),
                 "excluded_training_surfaces": len(forbidden)},
        "probes": probes,
        "examples": [r.to_dict() for r in rewrite.replacements[:N_EXAMPLES]],
    }


PROBE_NAMES = {
    "original": "original",
    "replace_entities": "entities replaced by unseen ones",
    "mask_non-entity": "1 non-entity token/sentence -> unk",
    "mask_entity": "1 entity token/sentence -> unk",
    "mask_any": "1 token/sentence -> unk",
    "lowercase": "all tokens lowercased",
    "typos": "typos (1 edit in a share of words)",
}


def probe_name(key: str) -> str:
    return PROBE_NAMES.get(key, key)


def format_robustness(result: Dict[str, Any]) -> str:
    """A table: one row per probe with the changes made, P/R/F1 and the F1 drop."""
    header = ["probe", "changed", "P", "R", "F1", "drop"]
    rows = [header]
    for key, probe in result["probes"].items():
        s = probe["scores"]
        rows.append([probe_name(key), f"{probe['changed']:,}", f"{100 * s['p']:.2f}",
                     f"{100 * s['r']:.2f}", f"{100 * s['f']:.2f}",
                     "" if key == "original" else f"{100 * probe['drop']:+.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
             for r in rows]
    rep = result["probes"].get("replace_entities")
    if rep is not None:
        lines.append(f"replaced {rep['changed']:,} of {rep['chosen']:,} chosen spans "
                     f"(share {rep['share']:g}; {rep['skipped']:,} without an unseen candidate "
                     f"of their type); recall on the replaced spans: "
                     f"{100 * rep['replaced_recall']:.2f}%")
    sizes = result["pool"]["sizes"]
    lines.append(f"replacement pool ({result['pool']['source']}): "
                 + ", ".join(f"{label} {n:,}" for label, n in sizes.items())
                 + f"; training surfaces excluded: {result['pool']['excluded_training_surfaces']:,}")
    lines.append("drop = original F1 - probe F1 (F1 points)")
    return "\n".join(lines)
