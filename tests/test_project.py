"""project.yml: the `demo` workflow end to end on a copy of the project (tiny
slices of ../shared/data), the built package installed and loaded by name,
reruns skipped, the `all` chain's commands, asset checksums and the README's
generated section."""
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import srsly

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"
PACKAGE = "en_mat_ner_demo"
CONFIG = "ner_mat_similarity"
DEMO_VARS = ["--vars.demo_sents", "200", "--vars.demo_eval_sents", "60",
             "--vars.demo_steps", "6", "--vars.demo_eval_frequency", "3"]
README_START = "<!-- WEASEL: AUTO-GENERATED DOCS START (do not remove) -->"
README_END = "<!-- WEASEL: AUTO-GENERATED DOCS END (do not remove) -->"


def project_copy(path: Path) -> Path:
    """project.yml and configs/ in ``path``, so that runs write nothing into the repo."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "project.yml", path / "project.yml")
    shutil.copytree(REPO / "configs", path / "configs")
    return path


# one thread per process: on a small shared machine, torch's default thread
# pool makes the tiny runs several times slower
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def spacy_project(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spacy", "project", *args], cwd=cwd,
                          capture_output=True, text=True, env=ENV)


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """`spacy project run demo` on a copy of the project, data from ../shared/data."""
    if not DATA.exists():
        pytest.skip(f"{DATA} not found: the demo reads the corpora from ../shared/data")
    project = project_copy(tmp_path_factory.mktemp("project") / "demo")
    result = spacy_project("run", "demo", ".", "--vars.data_dir", str(DATA), *DEMO_VARS, cwd=project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return project


def test_demo_writes_every_output(demo):
    for task in ("ner", "chunk"):
        for split in ("train", "dev", "test"):
            assert (demo / "corpus" / "demo" / task / f"{split}.spacy").exists()
    assert (demo / "training" / "demo" / CONFIG / "model-best" / "meta.json").exists()
    metrics = json.loads((demo / "metrics" / "demo" / f"{CONFIG}.json").read_text())
    assert {"ents_p", "ents_r", "ents_f", "ents_per_type", "token_acc", "speed"} <= set(metrics)
    wheel = demo / "packages" / f"{PACKAGE}-0.1.0" / "dist" / f"{PACKAGE}-0.1.0-py3-none-any.whl"
    assert wheel.exists()
    meta = json.loads((demo / "packages" / f"{PACKAGE}-0.1.0" / "meta.json").read_text())
    assert any(req.startswith("spacy_mat") for req in meta["requirements"]), meta["requirements"]


def test_demo_rerun_skips_everything(demo):
    result = spacy_project("run", "demo", ".", "--vars.data_dir", str(DATA), *DEMO_VARS, cwd=demo)
    assert result.returncode == 0, result.stdout[-3000:]
    for step in ("assets", "convert-demo", "train-demo", "evaluate-demo", "package-demo"):
        assert f"Skipping '{step}': nothing changed" in result.stdout


PREDICT = """
import hashlib, json, sys
import spacy
from spacy.tokens import DocBin
nlp = spacy.load(sys.argv[1])
docs = list(DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab))
pipe = nlp.get_pipe("mat_tagger")
paths = [[(o, [list(map(int, h)) for h in heads]) for o, heads in p] for p in pipe.predict(docs)]
ents = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(d.text for d in docs)]
print(json.dumps({"module": type(nlp).__module__, "path": str(nlp.path), "paths": paths,
                  "ents": ents, "weights": hashlib.sha256(pipe.to_bytes()).hexdigest()}))
"""


def predict(model: str, data: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", PREDICT, model, str(data)],
                            capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_package_installs_and_predicts_like_model_best(demo):
    wheel = demo / "packages" / f"{PACKAGE}-0.1.0" / "dist" / f"{PACKAGE}-0.1.0-py3-none-any.whl"
    pip("uninstall", "-y", PACKAGE)
    installed = pip("install", "--no-deps", "--no-index", str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        data = demo / "corpus" / "demo" / "ner" / "test.spacy"
        by_name = predict(PACKAGE, data)
        best = predict(str(demo / "training" / "demo" / CONFIG / "model-best"), data)
        assert PACKAGE in by_name["path"] and "site-packages" in by_name["path"]
        assert by_name["weights"] == best["weights"]
        assert by_name["paths"] == best["paths"]
        assert by_name["ents"] == best["ents"]
    finally:
        removed = pip("uninstall", "-y", PACKAGE)
    assert removed.returncode == 0, removed.stderr[-2000:]


def test_clean_removes_the_outputs_but_not_the_data(demo):
    result = spacy_project("run", "clean", ".", cwd=demo)
    assert result.returncode == 0, result.stderr[-2000:]
    for gone in ("training/demo", "metrics", "packages", "corpus/demo"):
        assert not (demo / gone).exists(), gone
    assert (demo / "assets" / "conll2003" / "train.txt").exists()


def test_experiments_command_parses(tmp_path):
    """The `experiments` command line, as weasel builds it, is valid (--list)."""
    project = project_copy(tmp_path / "p")
    dry = spacy_project("run", "experiments", ".", "--dry", "--vars.shard", "2/3", cwd=project)
    assert dry.returncode == 0, dry.stdout[-2000:]
    line = next(l for l in dry.stdout.splitlines() if l.startswith("Running command:"))
    cmd = shlex.split(line[len("Running command:"):]) + ["--list"]
    listed = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=ENV)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.split()[:2] == ["todo", "ner_masking_random/seed0"]
    assert len(listed.stdout.splitlines()) == 6 * 2 * 5 // 3


def test_all_workflow_chain(tmp_path):
    """The default chain, dry: what `spacy project run all` would run."""
    project = project_copy(tmp_path / "p")
    result = spacy_project("run", "all", ".", "--dry", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if line.startswith("Running command:")]
    assert len(commands) == 1 + 5 + 1 + 1 + 3  # assets, convert, train, evaluate, package
    text = "\n".join(commands)
    assert "spacy project assets . --vars.data_dir ../shared/data" in text
    assert "spacy_mat convert assets/conll2003/train.txt corpus/ner --format conll2003" in text
    assert "--dev-size 1000" in text
    assert ("spacy train configs/ner_mat_similarity.cfg --output training/ner_mat_similarity "
            "--paths.train corpus/ner/train.spacy --paths.dev corpus/ner/dev.spacy --gpu-id -1 "
            "--system.seed 0 --training.max_epochs 20") in text
    assert ("spacy_mat.evaluate training/ner_mat_similarity/model-best corpus/ner/test.spacy "
            "--output metrics/ner_mat_similarity.json") in text
    assert "spacy package training/ner_mat_similarity/model-best packages --name mat_ner" in text
    # the task variable switches the whole chain
    chunk = spacy_project("run", "all", ".", "--dry", "--vars.task", "chunk", "--vars.gpu_id", "0",
                          cwd=project)
    assert chunk.returncode == 0
    assert ("spacy train configs/chunk_mat_similarity.cfg --output training/chunk_mat_similarity "
            "--paths.train corpus/chunk/train.spacy --paths.dev corpus/chunk/dev.spacy "
            "--gpu-id 0") in chunk.stdout
    assert "--name mat_chunk" in chunk.stdout


def test_asset_checksums_match_shared_data():
    if not DATA.exists():
        pytest.skip(f"{DATA} not found")
    config = srsly.read_yaml(REPO / "project.yml")
    for asset in config["assets"]:
        relative = asset["url"].replace("${vars.data_dir}/", "")
        assert asset["dest"] == f"assets/{relative}"
        assert asset["checksum"] == hashlib.md5((DATA / relative).read_bytes()).hexdigest(), relative


def test_readme_section_is_up_to_date(tmp_path):
    """README.md ends with `spacy project document`'s section for project.yml
    (update: python -m spacy project document --output README.md)."""
    project = project_copy(tmp_path / "p")
    result = spacy_project("document", ".", cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    readme = (REPO / "README.md").read_text(encoding="utf8")
    assert README_START in readme and README_END in readme, "README.md has no generated section"
    section = readme[readme.index(README_START): readme.index(README_END) + len(README_END)]
    assert section.strip() == result.stdout.strip(), (
        "README.md's project section is stale: run python -m spacy project document --output README.md")
