"""displaCy pages of a pipeline's predictions, as ``spacy evaluate
--displacy-path`` writes them for ``ner`` (spaCy's own command keys on the
factory name and writes nothing for mat_tagger)."""
from pathlib import Path
from typing import Any, Iterable, List, Union


def write_displacy(nlp: Any, texts_or_docs: Iterable[Any], path: Union[str, Path],
                   limit: int = 25) -> List[Path]:
    """Run ``nlp`` on the first ``limit`` docs and write ``entities.html``
    (targets writing ``doc.ents``) and ``spans-KEY.html`` (``spans:KEY``
    targets) into the folder ``path``. Returns the files written."""
    from spacy import displacy
    from spacy.tokens import Doc

    from .component import MatTagger
    from .scoring import ENTS

    inputs = []
    for item in texts_or_docs:
        if len(inputs) >= limit:
            break
        if isinstance(item, Doc):  # a fresh copy: predictions only, no gold annotation
            item = Doc(nlp.vocab, words=[t.text for t in item],
                       spaces=[bool(t.whitespace_) for t in item],
                       sent_starts=[bool(t.is_sent_start) for t in item]
                       if item.has_annotation("SENT_START") else None)
        inputs.append(item)
    docs = list(nlp.pipe(inputs))
    kinds = {target for _, pipe in nlp.pipeline if isinstance(pipe, MatTagger)
             for target in pipe.parsed_targets}
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, key in sorted(kinds):
        if kind == ENTS:
            html = displacy.render(docs, style="ent", page=True)
            target = out / "entities.html"
        else:
            html = displacy.render(docs, style="span", page=True, options={"spans_key": key})
            target = out / f"spans-{key}.html"
        target.write_text(html, encoding="utf8")
        written.append(target)
    return written
