"""Shared fixtures: paths to ../shared/data and tiny converted slices of it."""
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"


def require_data(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: tests read the corpora from ../shared/data")
    return path


@pytest.fixture(scope="session")
def ner_slice(tmp_path_factory) -> Path:
    """First 200 sentences of CoNLL-2003 train (as train) and dev (as dev)."""
    from spacy_mat.corpus import convert_conll

    out = tmp_path_factory.mktemp("ner_slice")
    convert_conll(require_data("conll2003/train.txt"), out, "conll2003", n_sents=200)
    convert_conll(require_data("conll2003/dev.txt"), out, "conll2003", n_sents=60)
    return out


@pytest.fixture(scope="session")
def chunk_slice(tmp_path_factory) -> Path:
    """First 200 sentences of CoNLL-2000 train, the last 40 of them as dev."""
    from spacy_mat.corpus import convert_conll

    out = tmp_path_factory.mktemp("chunk_slice")
    convert_conll(require_data("conll2000/train.txt"), out, "conll2000", n_sents=200, dev_size=40)
    return out
