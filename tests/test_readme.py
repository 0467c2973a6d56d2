"""README.md's commands, run as written with a tiny budget, so that the
README cannot drift from what works (issue 14: every `spacy project run CMD
--vars...` line once exited 2, spaCy #8818).

From the README's ```bash blocks, on a copy of the project and a tiny slice
of the CoNLL data (`/path/to/conll` in the README stands for it):

* `make all DATA_DIR=/path/to/conll` runs with `PROJECT=<copy>` and
  `VARS=<TINY>` added;
* `spacy project run all|demo . --vars.data_dir /path/to/conll` run in the
  copy with the tiny budget appended (`TINY` / `TINY_DEMO`);
* `pip install --find-links packages/en_mat_ner/dist en_mat_ner` installs into
  a fresh venv, offline (`--no-index`), and the README's Python block runs
  there;
* `python -m pytest tests -q` is run with `--collect-only` (the suite cannot
  run itself), `make test` / `make install` dry (`make -n`).

The tiny budget: 1 epoch (a few steps) and `--vars.untrained warn`, since so
few steps need not beat the step-0 model.
"""
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from test_project import DATA, ENV, fresh_venv, project_copy

REPO = Path(__file__).parents[1]
README = REPO / "README.md"
PLACEHOLDER = "/path/to/conll"
TINY = ["--vars.max_epochs", "1", "--vars.untrained", "warn"]
TINY_DEMO = ["--vars.demo_sents", "120", "--vars.demo_eval_sents", "40", "--vars.demo_steps", "4",
             "--vars.demo_eval_frequency", "2", "--vars.untrained", "warn"]
# sentences kept per file (conll2000 train needs more than the 1,000 dev sentences)
SLICE = {"conll2003/train.txt": 150, "conll2003/dev.txt": 40, "conll2003/test.txt": 40,
         "conll2000/train.txt": 1050, "conll2000/test.txt": 40}


def bash_blocks(text: str) -> List[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def readme_lines() -> List[List[str]]:
    """Each shell line of the README's bash blocks, split (comments dropped)."""
    lines = []
    for block in bash_blocks(README.read_text(encoding="utf8")):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                lines.append(tokens)
    return lines


def find(*prefix: str, containing: str = "") -> List[str]:
    """The README line that starts with ``prefix`` (and holds ``containing``)."""
    found = [t for t in readme_lines() if t[:len(prefix)] == list(prefix) and containing in " ".join(t)]
    assert found, f"README.md has no `{' '.join(prefix)}` line{' with ' + containing if containing else ''}"
    return found[0]


def python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf8"), flags=re.S)
    assert len(blocks) == 1, "the README should have one Python example"
    return blocks[0]


def test_no_doc_puts_vars_before_the_project_dir():
    """`spacy project run CMD --vars.x` takes `--vars.x` as the project folder."""
    bad = re.compile(r"spacy project run [\w-]+ --")
    for path in [README, REPO / "project.yml", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), start=1):
            assert not bad.search(line), f"{path.relative_to(REPO)}:{number}: {line.strip()}"


def test_readme_lists_the_commands_it_documents():
    assert find("make", "all") == ["make", "all", f"DATA_DIR={PLACEHOLDER}"]
    assert find("spacy", "project", "run", "all") == ["spacy", "project", "run", "all", ".",
                                                      "--vars.data_dir", PLACEHOLDER]
    assert find("spacy", "project", "run", "demo")[4:7] == [".", "--vars.data_dir", PLACEHOLDER]
    for prefix in (["make", "test"], ["make", "install"], ["python", "-m", "pytest"]):
        find(*prefix)
    find("pip", "install", containing="--find-links")
    find("pip", "install", containing=".[glove]")


def tiny_data(root: Path) -> Path:
    """The first sentences of each CoNLL file, laid out like DATA."""
    for relative, n in SLICE.items():
        source = DATA / relative
        if not source.exists():
            pytest.skip(f"{source} not found: the README test reads ../shared/data")
        kept, sentences, previous = [], 0, ""
        for line in source.read_text(encoding="utf8").splitlines():
            kept.append(line)
            if not line.strip() and previous.strip() and not previous.startswith("-DOCSTART-"):
                sentences += 1
                if sentences == n:
                    break
            previous = line
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(kept) + "\n", encoding="utf8")
    return root


def substitute(tokens: List[str], data: Path) -> List[str]:
    return [t.replace(PLACEHOLDER, str(data)) for t in tokens]


def run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=ENV,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"{' '.join(command)} (in {cwd}) exited {result.returncode}:\n"
                                    + result.stdout[-4000:] + result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """README's `make all` on a project copy and the tiny data: (copy, data)."""
    root = tmp_path_factory.mktemp("readme")
    data = tiny_data(root / "conll")
    project = project_copy(root / "project")
    tokens = substitute(find("make", "all"), data)
    run(tokens + [f"PROJECT={project}", "VARS=" + " ".join(TINY)], cwd=REPO)
    return project, data


def test_make_all_runs_the_main_job(main_job):
    project, _ = main_job
    assert (project / "metrics" / "ner_mat_similarity.json").is_file()
    assert sorted(p.name.split("-")[0] for p in (project / "packages" / "en_mat_ner" / "dist").glob("*.whl")) == [
        "en_mat_ner", "spacy_mat"]


def test_spacy_project_lines_run_as_written(main_job):
    project, data = main_job
    spacy = [sys.executable, "-m", "spacy"]
    again = run(spacy + substitute(find("spacy", "project", "run", "all"), data)[1:] + TINY, cwd=project)
    assert "Skipping 'train': nothing changed" in again.stdout  # the same job: nothing reruns
    demo = run(spacy + substitute(find("spacy", "project", "run", "demo"), data)[1:] + TINY_DEMO,
               cwd=project)
    assert "package-demo" in demo.stdout
    assert (project / "metrics" / "demo" / "ner_mat_similarity.json").is_file()


def test_pip_line_and_python_example(main_job, tmp_path):
    project, _ = main_job
    python = fresh_venv(tmp_path)
    pip_line = find("pip", "install", containing="--find-links")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", *pip_line[2:]],
        cwd=project)
    script = tmp_path / "example.py"
    script.write_text(python_block(), encoding="utf8")
    run([str(python), str(script)], cwd=tmp_path)


def test_test_commands():
    pytest_line = find("python", "-m", "pytest")
    collected = run([sys.executable, *pytest_line[1:], "--collect-only"], cwd=REPO)  # README has -q
    assert re.search(r"\d+ tests collected", collected.stdout), collected.stdout[-1000:]
    for target in ("test", "install"):
        dry = run(["make", "-n", "-B", target], cwd=REPO)
        assert "pip install" in dry.stdout
    assert "pytest tests -q" in run(["make", "-n", "-B", "test"], cwd=REPO).stdout
