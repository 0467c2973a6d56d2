"""The grid on Ray (spacy_mat/ray_runner.py): packing the inputs, unpacking a
run, `--ray` without Ray, retries on a local 2-CPU Ray instance (a worker that
dies, a task that raises, a run that keeps failing) and a real tiny grid end
to end: the same test scores as the plain runner, models brought back, a
rerun skipping the finished runs."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from spacy_mat import experiments
from spacy_mat.experiments import Run, Settings
from spacy_mat.ray_runner import INSTALL_HINT, RayOptions, pack_inputs, pack_run, receive

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"
ROW = "baseline_novec"  # no GloVe: the tests need no vectors/ folder

MINI_CONFIG = """[paths]
train = null
dev = null
vectors = {vectors}

[training]
max_steps = 1
"""


def fake_project(root: Path, vectors: str = "null") -> Settings:
    """corpus/<task>/{train,dev,test}.spacy and configs/<task>_<row>.cfg with
    placeholder contents (enough to pack, not to train)."""
    for task in ("ner", "chunk"):
        for split in ("train", "dev", "test"):
            path = root / "corpus" / task / f"{split}.spacy"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{task}/{split}".encode())
        for row in ("a", "b"):
            config = root / "configs" / f"{task}_{row}.cfg"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(MINI_CONFIG.format(vectors=vectors))
    return Settings(data_dir=Path("corpus"), configs_dir=Path("configs"), output=root / "runs",
                    budget={"max_epochs": None, "max_steps": 1, "patience": None})


def names(blob: bytes):
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def test_pack_inputs_ships_corpus_configs_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = fake_project(tmp_path, vectors='"vectors/glove"')
    (tmp_path / "vectors" / "glove" / "vocab").mkdir(parents=True)
    (tmp_path / "vectors" / "glove" / "vocab" / "strings.json").write_text("[]")
    (tmp_path / "vectors" / "glove" / "config.cfg").write_text("")
    (tmp_path / "lookups.bin").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}_elsewhere.bin"
    outside.write_bytes(b"y")
    runs = [Run("ner", "a", 0), Run("ner", "a", 1)]
    # an override path is shipped too; absolute paths and package names are not
    settings.extra = ("--paths.lookups", "lookups.bin", f"--paths.other={outside}",
                      "--paths.pkg", "en_core_web_sm", "--training.max_steps", "2")
    inputs, blob = pack_inputs(runs, settings)
    assert names(blob) == ["configs/ner_a.cfg", "corpus/ner/dev.spacy", "corpus/ner/test.spacy",
                           "corpus/ner/train.spacy", "lookups.bin", "vectors/glove/config.cfg",
                           "vectors/glove/vocab/strings.json"]
    assert (inputs.data_dir, inputs.configs_dir, inputs.n_files) == ("corpus", "configs", 7)
    # the digest names the contents: same inputs, same digest; a changed file, another
    assert pack_inputs(runs, settings)[0].digest == inputs.digest
    (tmp_path / "corpus" / "ner" / "dev.spacy").write_bytes(b"changed")
    assert pack_inputs(runs, settings)[0].digest != inputs.digest
    # absolute data and config folders outside the working directory: under _abs/
    monkeypatch.chdir(tmp_path / "vectors")
    absolute = Settings(data_dir=tmp_path / "corpus", configs_dir=tmp_path / "configs",
                        output=tmp_path / "runs", budget={})
    inputs, blob = pack_inputs([Run("chunk", "b", 0)], absolute)
    assert inputs.data_dir == "_abs" + (tmp_path / "corpus").as_posix()
    assert "_abs" + (tmp_path / "configs" / "chunk_b.cfg").as_posix() in names(blob)


def finished_folder(folder: Path, score: float) -> Path:
    """A run folder as run_one leaves it: logs, test.json, result.json, a model."""
    (folder / "training" / "model-best").mkdir(parents=True)
    (folder / "training" / "model-best" / "meta.json").write_text("{}")
    (folder / "training" / "model-last").mkdir()
    (folder / "train.log").write_text("log\n")
    (folder / "training_log.jsonl").write_text('{"step": 0}\n')
    result = {"task": "ner", "row": "a", "seed": 0, "score_key": "ents_f",
              "test": {"ents_f": score}, "dev": {"ents_f": score}, "config": "/worker/path"}
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_receive_unpacks_a_run_and_records_the_attempt(tmp_path):
    run = Run("ner", "a", 0)
    worker = finished_folder(tmp_path / "worker" / "seed0", 0.5)
    assert names(pack_run(worker, keep_models=False)) == ["result.json", "train.log",
                                                         "training_log.jsonl"]
    archive = pack_run(worker, keep_models=True)
    assert "training/model-best/meta.json" in names(archive)
    assert not any(name.startswith("training/model-last") for name in names(archive))
    output = tmp_path / "runs"
    stale = run.folder(output)  # an earlier failed attempt's logs are replaced
    stale.mkdir(parents=True)
    (stale / "old.log").write_text("old")
    payload = {"ok": True, "error": None, "archive": archive, "host": "node7", "gpu_ids": [],
               "seconds": 3.0}
    result = receive(run, payload, output, Path("configs/ner_a.cfg"), 2, ["WorkerCrashedError"])
    folder = run.folder(output)
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "train.log", "training",
                                                        "training_log.jsonl"]
    assert result["config"] == "configs/ner_a.cfg"
    assert result["ray"] == {"attempt": 2, "host": "node7", "gpu_ids": [], "seconds": 3.0,
                             "failed_attempts": ["WorkerCrashedError"]}
    assert experiments.read_result(folder) == result
    assert not list(folder.parent.glob(".*"))  # no half-unpacked folder left behind
    # a failed attempt brings its logs but never a result.json (the run stays unfinished)
    failed = {**payload, "ok": False, "error": "spacy train failed"}
    assert receive(run, failed, output, Path("configs/ner_a.cfg"), 3, []) is None
    assert experiments.read_result(folder) is None and (folder / "train.log").exists()


def test_scratch_of_dead_workers_is_swept(tmp_path, monkeypatch):
    import os
    import tempfile

    from spacy_mat.ray_runner import SCRATCH, sweep_scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = tmp_path / SCRATCH
    for name in (f"run-{dead.pid}-abc", f"run-{os.getpid()}-def", "inputs-123"):
        (base / name).mkdir(parents=True)
    assert sweep_scratch() == [base / f"run-{dead.pid}-abc"]
    assert sorted(p.name for p in base.iterdir()) == ["inputs-123", f"run-{os.getpid()}-def"]


def test_ray_without_ray_installed_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    settings = fake_project(tmp_path)
    common = ["--rows", "a", "--tasks", "ner", "--seeds", "0",
              "--data-dir", str(tmp_path / "corpus"), "--configs-dir", str(tmp_path / "configs"),
              "--output", str(settings.output), "--results", str(tmp_path / "results")]
    with pytest.raises(SystemExit) as exit_:
        experiments.main(common + ["--ray"])
    assert exit_.value.code == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert not settings.output.exists()
    # the plain runner (and --list, even with --ray) work without Ray
    assert experiments.main(common + ["--list", "--ray"]) == 0
    assert experiments.main(common + ["--list"]) == 0
    assert capsys.readouterr().out.split() == ["todo", "ner_a/seed0"] * 2
    # Ray-only options without --ray, and --gpu-id with --ray, are refused
    for bad, message in ((["--cpus-per-run", "2"], "--cpus-per-run only apply with --ray"),
                         (["--ray", "--gpu-id", "0"], "use --gpus-per-run instead of --gpu-id"),
                         (["--ray", "--gpus-per-run", "1.5"], "--gpus-per-run must be")):
        with pytest.raises(SystemExit):
            experiments.main(common + bad)
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_available():
    return pytest.importorskip("ray")


def test_failed_attempts_are_retried_then_reported(ray_available, tmp_path, monkeypatch):
    """On a local 2-CPU Ray instance: a run whose worker dies and one whose task
    raises are retried and finish; one that keeps failing is reported after
    --max-retries, with its logs, and never gets a result.json."""
    from spacy_mat.ray_runner import run_grid

    monkeypatch.chdir(tmp_path)
    settings = fake_project(tmp_path)
    attempts_dir = tmp_path / "attempts"
    attempts_dir.mkdir()

    def flaky(run, settings, inputs, holder, keep_models):
        # defined here so that Ray ships it by value: a stand-in for `execute`
        import os
        import tempfile
        from pathlib import Path

        from spacy_mat.ray_runner import materialize, pack_run

        workdir = materialize(inputs, holder)  # the inputs arrived
        assert (workdir / inputs.data_dir / run.task / "train.spacy").read_bytes() == b"ner/train"
        marker = attempts_dir / f"{run.row}{run.seed}"
        attempt = len(list(attempts_dir.glob(f"{run.row}{run.seed}.*"))) + 1
        Path(f"{marker}.{attempt}").touch()
        folder = Path(tempfile.mkdtemp()) / "run"
        folder.mkdir()
        (folder / "train.log").write_text(f"attempt {attempt}\n")
        if run.row == "a" and run.seed == 0 and attempt == 1:
            os._exit(1)  # the worker dies, as when its node goes away
        if run.row == "a" and run.seed == 1 and attempt == 1:
            raise ValueError("a bug on the worker")
        if run.row == "b":
            return {"ok": False, "error": "spacy train failed (exit code 1)\nMemoryError",
                    "archive": pack_run(folder, False), "host": "here", "gpu_ids": [],
                    "seconds": 0.0}
        result = {"task": run.task, "row": run.row, "seed": run.seed, "score_key": "ents_f",
                  "test": {"ents_f": 0.5 + run.seed / 10}, "dev": {"ents_f": 0.4},
                  "train_seconds": 1.0, "threads": settings.threads, "gpu_id": settings.gpu_id}
        (folder / "result.json").write_text(json.dumps(result))
        return {"ok": True, "error": None, "archive": pack_run(folder, False), "host": "here",
                "gpu_ids": [], "seconds": 0.0}

    todo = [Run("ner", "a", 0), Run("ner", "a", 1), Run("ner", "b", 0)]
    lines = []
    options = RayOptions(address="local", num_cpus=2, include_dashboard=False, max_retries=1)
    failed = run_grid(todo, settings, options, task=flaky, log=lines.append)
    assert failed == ["ner_b/seed0"]
    a0 = experiments.read_result(Run("ner", "a", 0).folder(settings.output))
    assert a0["ray"]["attempt"] == 2 and a0["test"]["ents_f"] == 0.5
    assert a0["ray"]["failed_attempts"][0].startswith("WorkerCrashedError")
    assert (a0["threads"], a0["gpu_id"]) == (1, -1)  # 1 CPU per run: one thread, no GPU
    a1 = experiments.read_result(Run("ner", "a", 1).folder(settings.output))
    assert a1["ray"]["attempt"] == 2 and "a bug on the worker" in a1["ray"]["failed_attempts"][0]
    b0 = Run("ner", "b", 0).folder(settings.output)
    assert experiments.read_result(b0) is None
    assert (b0 / "train.log").read_text() == "attempt 2\n"
    assert sorted(p.name for p in attempts_dir.iterdir()) == ["a0.1", "a0.2", "a1.1", "a1.2",
                                                              "b0.1", "b0.2"]
    retries = [line for line in lines if line.startswith("[retry]")]
    assert len(retries) == 3
    assert any("ner_b/seed0: attempt 1 failed (on here: spacy train failed (exit code 1) ... "
               "MemoryError); resubmitting (attempt 2 of 2)" in line for line in retries)
    assert sum(line.startswith("[") and "/3] " in line for line in lines) == 2
    # runs finish in any order: the failure is reported once, and the last line leaves 0
    assert sum(line.startswith("[failed] ner_b/seed0; ") for line in lines) == 1
    assert lines[-1].endswith("; 0 left")
    # nothing left to do: no Ray at all
    assert run_grid([], settings, options, task=flaky) == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """corpus/ner/{train,dev,test}.spacy: 200 / 60 / 60 sentences."""
    from spacy_mat.corpus import convert_conll

    if not DATA.exists():
        pytest.skip(f"{DATA} not found: the grid test reads the corpora from ../shared/data")
    out = tmp_path_factory.mktemp("raygrid") / "corpus"
    for split, n in (("train", 200), ("dev", 60), ("test", 60)):
        convert_conll(DATA / "conll2003" / f"{split}.txt", out / "ner", "conll2003", n_sents=n)
    return out


def grid(corpus: Path, output: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "spacy_mat.experiments", "--rows", ROW, "--tasks", "ner",
           "--data-dir", str(corpus), "--configs-dir", str(REPO / "configs"),
           "--output", str(corpus.parent / output), "--results", str(corpus.parent / f"{output}_r"),
           "--threads", "1", "--max-epochs", "0", "--max-steps", "4", *args,
           "--", "--training.eval_frequency", "2"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=corpus.parent)


def test_grid_on_local_ray_matches_the_plain_runner(ray_available, corpus):
    """Two real (tiny) runs as Ray tasks on a local 2-CPU instance: their
    folders come back (model-best with --keep-models), the summary and curves
    are written here, the test score equals the plain runner's for the same
    run, and a rerun skips both runs without starting Ray."""
    result = grid(corpus, "runs", "--seeds", "0", "1", "--ray", "local", "--ray-cpus", "2",
                  "--keep-models")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "2 runs, 0 already finished (skipped), 2 to train" in out
    assert "Ray dashboard: " in out
    assert "Ray: 2 runs on 2 CPUs, 0 GPUs (1 CPU, 0 GPU, 1 threads per run" in out
    assert out.count(f"/2] ner_{ROW}/seed") == 2 and "; 0 left" in out
    runs = corpus.parent / "runs"
    for seed in (0, 1):
        folder = runs / f"ner_{ROW}" / f"seed{seed}"
        res = json.loads((folder / "result.json").read_text())
        assert (res["seed"], res["ray"]["attempt"], res["ray"]["failed_attempts"]) == (seed, 1, [])
        assert res["config"] == str(REPO / "configs" / f"ner_{ROW}.cfg")
        assert res["extra_overrides"] == ["--training.eval_frequency", "2"]
        assert (folder / "training" / "model-best" / "meta.json").exists()
        assert not (folder / "training" / "model-last").exists()
        assert [json.loads(l)["step"] for l in (folder / "training_log.jsonl").open()] == [0, 2, 4]
    summary = json.loads((corpus.parent / "runs_r" / "summary.json").read_text())
    assert summary["n_runs"] == 2 and summary["missing"] == []
    assert (corpus.parent / "runs_r" / "learning_ner.png").stat().st_size > 1000
    # the plain runner, same run, same thread count: the same scores
    plain = grid(corpus, "plain", "--seeds", "1")
    assert plain.returncode == 0, plain.stderr[-3000:]
    ray_res = json.loads((runs / f"ner_{ROW}" / "seed1" / "result.json").read_text())
    plain_res = json.loads((corpus.parent / "plain" / f"ner_{ROW}" / "seed1" / "result.json")
                           .read_text())
    assert ray_res["test"]["ents_f"] == plain_res["test"]["ents_f"]
    assert ray_res["dev"] == plain_res["dev"]
    # rerun: both skipped, Ray not even started, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/seed*/result.json")}
    rerun = grid(corpus, "runs", "--seeds", "0", "1", "--ray", "local", "--ray-cpus", "2",
                 "--keep-models")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 runs, 2 already finished (skipped), 0 to train" in rerun.stdout
    assert "Ray dashboard" not in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/seed*/result.json")} == before


def test_project_pushes_and_pulls_the_grid_outputs(tmp_path):
    """project.yml: a `remotes` section, runs/ and results/ as outputs of
    `experiments`; `spacy project push` / `pull` carry them to another copy."""
    import shutil

    import srsly

    config = srsly.read_yaml(REPO / "project.yml")
    assert config["remotes"]["default"] == "../spacy_mat_remote"
    experiments_cmd = next(c for c in config["commands"] if c["name"] == "experiments")
    assert experiments_cmd["outputs"] == ["runs", "results"]
    remote = tmp_path / "remote"
    copies = []
    for name in ("here", "there"):
        project = tmp_path / name
        project.mkdir()
        shutil.copy(REPO / "project.yml", project / "project.yml")
        for task in ("ner", "chunk"):  # the command's deps: same data on both machines
            for split in ("train", "dev", "test"):
                (project / "corpus" / task).mkdir(parents=True, exist_ok=True)
                (project / "corpus" / task / f"{split}.spacy").write_bytes(b"same data")
        copies.append(project)
    here, there = copies
    (here / "runs" / "ner_at" / "seed0").mkdir(parents=True)
    (here / "runs" / "ner_at" / "seed0" / "result.json").write_text('{"seed": 0}')
    (here / "results").mkdir()
    (here / "results" / "summary.md").write_text("| Method |\n")

    def project_cmd(*args, cwd):
        return subprocess.run([sys.executable, "-m", "spacy", "project", *args, str(remote), "."],
                              cwd=cwd, capture_output=True, text=True)

    pushed = project_cmd("push", cwd=here)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "Pushed runs" in pushed.stdout and "Pushed results" in pushed.stdout
    pulled = project_cmd("pull", cwd=there)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (there / "runs" / "ner_at" / "seed0" / "result.json").read_text() == '{"seed": 0}'
    assert (there / "results" / "summary.md").read_text() == "| Method |\n"
