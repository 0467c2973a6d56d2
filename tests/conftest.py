"""Shared fixtures: paths to ../shared/data and tiny converted slices of it."""
import subprocess
from pathlib import Path
from typing import Optional

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


SAMPLE_VECTORS_TXT = Path(__file__).parent / "data" / "glove_sample.txt"
_sample_vectors: list = []


def sample_vectors_dir() -> Path:
    """A spaCy vectors directory of tests/data/glove_sample.txt (260 real
    GloVe 6B 50-d rows), written once per test process: what the configs'
    ``[paths] vectors`` points at in the tests (the full 400k-row table is
    not loaded in CI)."""
    if not _sample_vectors:
        import tempfile

        from spacy_mat.vectors import read_text_vectors, write_vectors

        out = Path(tempfile.mkdtemp(prefix="spacy_mat_vectors_")) / "glove-sample"
        write_vectors(*read_text_vectors(SAMPLE_VECTORS_TXT), out)
        _sample_vectors.append(out)
    return _sample_vectors[0]


def vectors_overrides(config: Path) -> list:
    """``--paths.vectors <sample>`` for a config that reads static vectors."""
    text = Path(config).read_text(encoding="utf8")
    return ["--paths.vectors", str(sample_vectors_dir())] if "include_static_vectors = true" in text else []


def git_head(where: Path) -> Optional[str]:
    """The commit checked out at ``where`` (None outside a git checkout)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None
