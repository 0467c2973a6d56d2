"""`spacy train` end to end on 200-sentence slices of the real corpora."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from conftest import vectors_overrides
from spacy.tokens import Doc, DocBin

REPO = Path(__file__).parents[1]


def spacy_train(config: str, data: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``spacy train`` for 8 steps; configs that read static vectors get the
    260-row GloVe sample (conftest.sample_vectors_dir)."""
    cmd = [sys.executable, "-m", "spacy", "train", str(REPO / "configs" / config),
           "--output", str(out), "--paths.train", str(data / "train.spacy"),
           "--paths.dev", str(data / "dev.spacy"), "--training.max_steps", "8",
           "--training.eval_frequency", "4", *vectors_overrides(REPO / "configs" / config),
           *overrides]
    # one thread: on 2 cores, torch's default threads oversubscribe badly
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)


ROWS = ["baseline", "masking_random", "masking_similarity", "at", "mat_random", "mat_similarity",
        "at_noadv"]
TASKS = {"ner": ("ner_slice", "ents_f"), "chunk": ("chunk_slice", "spans_chunks_f")}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("row", ROWS)
def test_spacy_train_few_steps(task, row, request, tmp_path):
    slice_name, score_key = TASKS[task]
    data = request.getfixturevalue(slice_name)
    result = spacy_train(f"{task}_{row}.cfg", data, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    header = next(line for line in result.stdout.splitlines() if line.startswith("E "))
    assert ("LOSS MAT_TAGGER_ADV" in header) == (row != "baseline")
    if row in ("masking_similarity", "mat_similarity"):  # MAT's sampler is shown at initialise
        assert "MAT substitutes for" in result.stdout + result.stderr
    assert ("ENTS_F" in header) == (task == "ner")  # chunking is scored on spans_chunks_f only
    nlp = spacy.load(tmp_path / "model-best")
    meta = json.loads((tmp_path / "model-best" / "meta.json").read_text())
    assert score_key in meta["performance"]
    docs = list(DocBin().from_disk(data / "dev.spacy").get_docs(nlp.vocab))
    predicted = list(nlp.pipe(doc_copy(nlp, d) for d in docs))
    assert [len(d) for d in predicted] == [len(d) for d in docs]


def doc_copy(nlp, doc):
    return Doc(nlp.vocab, words=[t.text for t in doc])


def test_configs_are_generated_and_valid():
    check = subprocess.run([sys.executable, "configs/make_configs.py", "--check"], cwd=REPO,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    for cfg in sorted((REPO / "configs").glob("*_*.cfg")):
        res = subprocess.run([sys.executable, "-m", "spacy", "debug", "config", str(cfg)],
                             cwd=REPO, capture_output=True, text=True)
        assert res.returncode == 0, f"{cfg.name}: {res.stdout[-2000:]}"
