"""Training callbacks for the confidence curve (the paper's Figure 2).

``spacy_mat.confidence_tracker.v1`` records, every N steps, the model's
probability of the gold tag sequence of a few fixed sentences (``exp`` of the
CRF's ``sequence_log_prob``) and the per-token CRF marginals, with the
network in eval mode (no dropout) and without gradients, as JSON lines. It
does not draw random numbers, so training runs the same with or without it.

spaCy takes a single ``[training.before_update]`` callback; the configs
already use it for ``spacy_mat.adversarial_schedule.v1``. Two ways to have
both::

    [training.before_update]
    @callbacks = "spacy_mat.confidence_tracker.v1"
    every_n_steps = 100
    output_file = "training/ner_mat/confidence.jsonl"

    [training.before_update.chain]
    @callbacks = "spacy_mat.adversarial_schedule.v1"
    warmup_steps = 0
    ramp_steps = 0

or ``spacy_mat.chain_callbacks.v1``, which calls any number of callbacks in
the order their blocks appear in the config::

    [training.before_update]
    @callbacks = "spacy_mat.chain_callbacks.v1"

    [training.before_update.*.schedule]
    @callbacks = "spacy_mat.adversarial_schedule.v1"

    [training.before_update.*.confidence]
    @callbacks = "spacy_mat.confidence_tracker.v1"
    output_file = "confidence.jsonl"
"""
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from spacy.util import registry

from ..architectures import get_network, predict_emissions
from ..tags import TagError, iob1_to_iob2

Callback = Callable[[Any, Dict[str, Any]], None]

DEFAULT_SENTENCES = [
    {"words": ["Radio", "Romania", "news", "headlines", ":"],
     "tags": ["B-ORG", "I-ORG", "O", "O", "O"]},
]


def _check_sentences(sentences: Sequence[Dict[str, List[str]]]) -> List[Dict[str, List[str]]]:
    """Validated sentences with IOB2 tags."""
    checked = []
    for i, sent in enumerate(sentences):
        words, tags = list(sent.get("words", [])), list(sent.get("tags", []))
        if not words or len(words) != len(tags):
            raise ValueError(f"confidence_tracker: sentence {i} needs non-empty 'words' and "
                             f"as many 'tags' (got {len(words)} words, {len(tags)} tags)")
        try:
            tags = iob1_to_iob2(tags)
        except TagError as err:
            raise ValueError(f"confidence_tracker: sentence {i}: {err}") from None
        checked.append({"words": words, "tags": tags})
    if not checked:
        raise ValueError("confidence_tracker: give at least one sentence")
    return checked


def tracked_pipe(nlp: Any, component: Optional[str] = None) -> Any:
    """The named pipe, or the first one with ``tag_names`` and a network."""
    if component is not None:
        return nlp.get_pipe(component)
    for _, pipe in nlp.pipeline:
        if hasattr(pipe, "tag_names") and "tables" in getattr(pipe.model, "attrs", {}):
            return pipe
    raise ValueError(f"confidence_tracker: no mat_tagger in the pipeline ({nlp.pipe_names})")


def sentence_confidence(pipe: Any, words: Sequence[str], tags: Sequence[str]) -> Dict[str, Any]:
    """The model's log-probability and probability of the gold path ``tags``
    (IOB2) for ``words``, the marginal of the gold tag at each token and the
    full marginals ``[token][tag]`` (tags in ``tag_names`` order)."""
    names = list(pipe.tag_names)
    index = {tag: i for i, tag in enumerate(names)}
    unknown = sorted({t for t in tags if t not in index})
    if unknown:
        raise ValueError(f"confidence_tracker: tags {unknown} are not in the model's tag set "
                         f"{names}; set `sentences` for this model's labels")
    emissions, mask = predict_emissions(pipe.model, [list(words)])
    crf = get_network(pipe.model).crfs[0]
    gold = torch.tensor([[index[t] for t in tags]], dtype=torch.long, device=mask.device)
    with torch.no_grad():
        log_prob = float(crf.sequence_log_prob(emissions[0], gold, mask)[0])
        marginals = crf.marginals(emissions[0], mask)[0].cpu()
    gold_ids = [index[t] for t in tags]
    return {
        "log_prob": log_prob,
        "prob": math.exp(log_prob),
        "gold_marginals": [float(marginals[i, j]) for i, j in enumerate(gold_ids)],
        "tag_names": names,
        "marginals": [[round(float(p), 6) for p in row] for row in marginals.tolist()],
    }


@registry.callbacks("spacy_mat.confidence_tracker.v1")
def confidence_tracker(every_n_steps: int = 100,
                       output_file: Optional[Union[str, Path]] = "confidence.jsonl",
                       sentences: Optional[List[Dict[str, List[str]]]] = None,
                       chain: Optional[Callback] = None,
                       component: Optional[str] = None) -> Callback:
    """A ``[training.before_update]`` callback: at every step divisible by
    ``every_n_steps`` (step 0, the initialised model, included) append one
    JSON line per sentence to ``output_file`` (truncated at its first write):
    ``step``, ``epoch``, ``sentence`` (index), ``words``, ``tags`` and the
    fields of :func:`sentence_confidence`. ``sentences`` is a list of
    ``{"words": [...], "tags": [...]}`` (IOB1 or IOB2); the default is "Radio
    Romania news headlines :" with Radio Romania as ORG. ``chain`` is another
    before_update callback, called first (e.g. the adversarial schedule);
    ``component`` names the tagger (default: the first mat_tagger).
    ``output_file = null`` switches tracking off (only ``chain`` is called):
    the generated configs ship it off, and ``spacy project run train`` and the
    experiment grid switch it on with ``--training.before_update.output_file``."""
    if every_n_steps < 1:
        raise ValueError(f"confidence_tracker: every_n_steps must be >= 1, got {every_n_steps}")
    checked = _check_sentences(DEFAULT_SENTENCES if sentences is None else sentences)
    path = None if output_file is None or str(output_file) == "" else Path(output_file)
    state = {"started": False}

    def before_update(nlp: Any, args: Dict[str, Any]) -> None:
        if chain is not None:
            chain(nlp, args)
        step = int(args["step"])
        if path is None or step % every_n_steps:
            return
        pipe = tracked_pipe(nlp, component)
        records = []
        for i, sent in enumerate(checked):
            record = {"step": step, "epoch": args.get("epoch"), "sentence": i,
                      "words": sent["words"], "tags": sent["tags"]}
            record.update(sentence_confidence(pipe, sent["words"], sent["tags"]))
            records.append(record)
        if not state["started"]:
            path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if state["started"] else "w", encoding="utf8") as out:
            for record in records:
                out.write(json.dumps(record) + "\n")
        state["started"] = True

    return before_update


@registry.callbacks("spacy_mat.chain_callbacks.v1")
def chain_callbacks(*callbacks: Callback) -> Callback:
    """One callback that calls each given callback in turn with the same
    arguments (for hooks that take a single callback, like
    ``[training.before_update]``)."""
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise ValueError(f"chain_callbacks: argument {i} is not a callback: {callback!r}")

    def chained(*args: Any, **kwargs: Any) -> None:
        for callback in callbacks:
            callback(*args, **kwargs)

    return chained
