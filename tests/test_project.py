"""project.yml: the `demo` workflow end to end on a copy of the project (tiny
slices of ../shared/data), the built wheels installed offline into a fresh
venv and the package loaded by name, reruns skipped (also after switching
task), the `all` chain's commands, the missing-data_dir error, the Makefile,
asset checksums and the README's generated section."""
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
# a tiny budget: 6 steps may not beat the step-0 model, so package it with a warning
DEMO_VARS = ["--vars.demo_sents", "200", "--vars.demo_eval_sents", "60",
             "--vars.demo_steps", "6", "--vars.demo_eval_frequency", "3", "--vars.untrained", "warn"]
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


def wheels(project: Path, package: str = PACKAGE):
    """The package's wheel and the spacy_mat wheel beside it."""
    dist = project / "packages" / package / "dist"
    model = sorted(dist.glob(f"{package}-0.1.0+*-py3-none-any.whl"))
    own = sorted(dist.glob("spacy_mat-*-py3-none-any.whl"))
    assert len(model) == 1 and len(own) == 1, sorted(p.name for p in dist.iterdir())
    return model[0], own[0]


def test_demo_writes_every_output(demo):
    for task in ("ner", "chunk"):
        for split in ("train", "dev", "test"):
            assert (demo / "corpus" / "demo" / task / f"{split}.spacy").exists()
    assert (demo / "vectors" / "glove-6b-50d" / "meta.json").exists()
    model_best = demo / "training" / "demo" / CONFIG / "model-best"
    metrics = json.loads((demo / "metrics" / "demo" / f"{CONFIG}.json").read_text())
    assert {"ents_p", "ents_r", "ents_f", "ents_per_type", "token_acc", "speed"} <= set(metrics)
    wheels(demo)
    meta = json.loads((demo / "packages" / PACKAGE / "meta.json").read_text())
    assert any(req.startswith("spacy_mat") for req in meta["requirements"]), meta["requirements"]
    assert meta["version"].startswith("0.1.0+")
    assert meta["author"] == "spacy_mat" and "mat_tagger" in meta["description"]
    # model-last was scored on dev too, and the better model kept (issue 14 item 3)
    record = json.loads((model_best / "meta.json").read_text())["spacy_mat_training"]
    assert record["kept"] in ("model-best", "model-last")
    assert record["evaluated_steps"] == [0, 3, 6]
    assert record["dev_score"] == max(record["model_best_dev_score"], record["model_last_dev_score"])


def test_demo_rerun_skips_everything(demo):
    result = spacy_project("run", "demo", ".", "--vars.data_dir", str(DATA), *DEMO_VARS, cwd=demo)
    assert result.returncode == 0, result.stdout[-3000:]
    for step in ("assets", "convert-demo", "train-demo", "evaluate-demo", "package-demo"):
        assert f"Skipping '{step}': nothing changed" in result.stdout


PREDICT = """
import hashlib, json, sys
import spacy, spacy_mat
from spacy.tokens import DocBin
nlp = spacy.load(sys.argv[1])
docs = list(DocBin().from_disk(sys.argv[2]).get_docs(nlp.vocab))
pipe = nlp.get_pipe("mat_tagger")
paths = [[(o, [list(map(int, h)) for h in heads]) for o, heads in p] for p in pipe.predict(docs)]
ents = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(d.text for d in docs)]
print(json.dumps({"module": type(nlp).__module__, "path": str(nlp.path), "paths": paths,
                  "spacy_mat": spacy_mat.__file__,
                  "ents": ents, "weights": hashlib.sha256(pipe.to_bytes()).hexdigest()}))
"""


def predict(model: str, data: Path, python=sys.executable, cwd=None) -> dict:
    result = subprocess.run([str(python), "-c", PREDICT, model, str(data)],
                            capture_output=True, text=True, env=ENV, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def fresh_venv(path: Path) -> Path:
    """A venv without pip that sees this venv's packages (spaCy, torch, ...)
    through a .pth file, except spacy_mat and en_mat_* packages: installing
    the wheels into it must bring spacy_mat from the wheel folder, offline."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path / "venv")], check=True)
    import spacy

    parent = Path(spacy.__file__).resolve().parents[1]
    overlay = path / "parent-site"
    overlay.mkdir()
    for entry in parent.iterdir():
        if entry.name.startswith(("spacy_mat", "__editable__", "en_mat_")) or entry.suffix == ".pth":
            continue
        (overlay / entry.name).symlink_to(entry)
    python = path / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "parent_site.pth").write_text(f"{overlay}\n")
    return python


def test_wheels_install_offline_into_a_fresh_venv(demo, tmp_path):
    """`pip install --no-index --find-links DIST en_mat_ner_demo` in a fresh venv
    installs the model and spacy_mat from the package's dist folder; the model
    loads by name there and predicts exactly like model-best."""
    dist = wheels(demo)[0].parent
    python = fresh_venv(tmp_path)
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--find-links", str(dist), PACKAGE], capture_output=True, text=True, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert "spacy_mat" in installed.stdout and PACKAGE in installed.stdout
    data = demo / "corpus" / "demo" / "ner" / "test.spacy"
    by_name = predict(PACKAGE, data, python=python, cwd=tmp_path)
    best = predict(str(demo / "training" / "demo" / CONFIG / "model-best"), data)
    assert PACKAGE in by_name["path"] and str(tmp_path / "venv") in by_name["path"]
    assert by_name["spacy_mat"].startswith(str(tmp_path / "venv")), by_name["spacy_mat"]
    assert by_name["weights"] == best["weights"]
    assert by_name["paths"] == best["paths"]
    assert by_name["ents"] == best["ents"]


def test_switching_task_keeps_each_tasks_steps(demo):
    """After a chunking run, the NER demo's train/evaluate/package steps are
    skipped: their own inputs did not change (weasel's lock alone would rerun
    them: it keeps one entry per command name)."""
    chunk = spacy_project("run", "train-demo", ".", "--vars.data_dir", str(DATA), *DEMO_VARS,
                          "--vars.task", "chunk", cwd=demo)
    assert chunk.returncode == 0, chunk.stdout[-3000:] + chunk.stderr[-3000:]
    assert (demo / "training" / "demo" / "chunk_mat_similarity" / "model-best").is_dir()
    ner = spacy_project("run", "demo", ".", "--vars.data_dir", str(DATA), *DEMO_VARS, cwd=demo)
    assert ner.returncode == 0, ner.stdout[-3000:] + ner.stderr[-3000:]
    # weasel's record for train-demo is chunking's now: our per-config record skips it
    assert f"Skipping train-demo-{CONFIG}: its inputs and outputs are unchanged" in ner.stdout, ner.stdout[-3000:]
    assert "Saving to output directory" not in ner.stdout
    for key in ("evaluate-demo", "package-demo"):  # their weasel records are still NER's
        assert f"Skipping '{key}': nothing changed" in ner.stdout


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
    assert len(commands) == 2 + 1 + 5 + 1 + 1 + 1  # assets, vectors, convert, train, evaluate, package
    text = "\n".join(commands)
    assert "spacy_mat.datadir ../shared/data --files conll2003/train.txt" in text
    assert "spacy project assets . --vars.data_dir ../shared/data" in text
    assert ("spacy_mat.step vectors-glove-6b-50d --outputs vectors/glove-6b-50d -- python -m "
            "spacy_mat vectors vectors/glove-6b-50d --source glove-6b-50d") in text
    assert "spacy_mat convert assets/conll2003/train.txt corpus/ner --format conll2003" in text
    assert "--dev-size 1000" in text
    assert ("spacy train configs/ner_mat_similarity.cfg --output training/ner_mat_similarity "
            "--paths.train corpus/ner/train.spacy --paths.dev corpus/ner/dev.spacy "
            "--paths.vectors vectors/glove-6b-50d --gpu-id -1 "
            "--system.seed 0 --training.max_epochs 20") in text
    assert "python -m spacy_mat.final training/ner_mat_similarity --dev corpus/ner/dev.spacy" in text
    assert ("spacy_mat.evaluate training/ner_mat_similarity/model-best corpus/ner/test.spacy "
            "--output metrics/ner_mat_similarity.json") in text
    assert ("spacy_mat.package training/ner_mat_similarity/model-best packages --name mat_ner "
            "--version 0.1.0") in text
    assert "--untrained refuse" in text
    # the task variable switches the whole chain
    chunk = spacy_project("run", "all", ".", "--dry", "--vars.task", "chunk", "--vars.gpu_id", "0",
                          cwd=project)
    assert chunk.returncode == 0
    assert ("spacy train configs/chunk_mat_similarity.cfg --output training/chunk_mat_similarity "
            "--paths.train corpus/chunk/train.spacy --paths.dev corpus/chunk/dev.spacy "
            "--paths.vectors vectors/glove-6b-50d --gpu-id 0") in chunk.stdout
    assert "--name mat_chunk" in chunk.stdout
    # other vectors: a name for vectors/<name>/ and a source file
    own = spacy_project("run", "all", ".", "--dry", "--vars.vectors", "myvec", "--vars.vectors_source",
                        "/data/vec.txt.gz", cwd=project)
    assert own.returncode == 0
    assert "spacy_mat vectors vectors/myvec --source /data/vec.txt.gz" in own.stdout
    assert "--paths.vectors vectors/myvec" in own.stdout


def test_missing_data_dir_is_one_line(tmp_path):
    project = project_copy(tmp_path / "p")
    result = spacy_project("run", "all", ".", "--vars.data_dir", str(tmp_path / "nowhere"), cwd=project)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert "is not a folder" in errors[0] and "--vars.data_dir" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def make(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")
def test_makefile_two_commands():
    dry = make("-n", "all", "DATA_DIR=/data/conll", "VARS=--vars.task chunk")
    assert dry.returncode == 0, dry.stderr
    assert 'python -m spacy project run all . --vars.data_dir "/data/conll" --vars.task chunk' in dry.stdout
    gpu = make("-n", "-B", "install", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126")
    assert '"torch==2.13.0" --index-url "https://download.pytorch.org/whl/cu126"' in gpu.stdout
    assert 'pip install -q -e ".[test,glove,ray]"' in gpu.stdout
    assert "python -m pytest tests -q" in make("-n", "test").stdout
    # no DATA_DIR: one line saying what to set, before installing anything
    missing = make("all", "DATA_DIR=")
    assert missing.returncode != 0
    assert "error: set DATA_DIR" in missing.stderr and "pip" not in missing.stdout
    assert "make test" in (REPO / ".ci" / "run").read_text()


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
