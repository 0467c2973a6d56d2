"""The experiment grid runner: 2 rows × 2 seeds of a few steps on a tiny NER
slice, the summary's shape, resuming, budget checks, shards and the table."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git_head, sample_vectors_dir

from spacy_mat.experiments import (Run, budget_label, markdown, parse_shard, plan, shard,
                                   summarize)

REPO = Path(__file__).parents[1]
DATA = REPO.parent / "shared" / "data"
ROWS = ["baseline", "mat_similarity"]
GIT_HEAD = git_head(REPO)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """corpus/ner/{train,dev,test}.spacy: 200 / 60 / 60 sentences."""
    from spacy_mat.corpus import convert_conll

    if not DATA.exists():
        pytest.skip(f"{DATA} not found: the grid test reads the corpora from ../shared/data")
    out = tmp_path_factory.mktemp("grid") / "corpus"
    for split, n in (("train", 200), ("dev", 60), ("test", 60)):
        convert_conll(DATA / "conll2003" / f"{split}.txt", out / "ner", "conll2003", n_sents=n)
    return out


def grid(corpus: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "spacy_mat.experiments", "--rows", *ROWS, "--tasks", "ner",
           "--seeds", "0", "1", "--data-dir", str(corpus), "--configs-dir", str(REPO / "configs"),
           "--output", str(corpus.parent / "runs"), "--results", str(corpus.parent / "results"),
           "--threads", "1", "--mkl-cbwr", "AVX2", "--vectors", str(sample_vectors_dir()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=corpus.parent)


BUDGET = ["--max-epochs", "0", "--max-steps", "4", "--", "--training.eval_frequency", "2"]


@pytest.fixture(scope="module")
def finished(corpus) -> Path:
    result = grid(corpus, *BUDGET)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 runs, 0 already finished (skipped), 4 to train" in result.stdout
    return corpus.parent


def test_grid_writes_runs_and_summary(finished):
    for row in ROWS:
        for seed in (0, 1):
            folder = finished / "runs" / f"ner_{row}" / f"seed{seed}"
            result = json.loads((folder / "result.json").read_text())
            assert (result["task"], result["row"], result["seed"]) == ("ner", row, seed)
            assert result["score_key"] == "ents_f"
            assert result["vectors"] == "glove-sample"
            assert result["budget"] == {"max_epochs": 0, "max_steps": 4, "patience": None}
            assert result["extra_overrides"] == ["--training.eval_frequency", "2"]
            # what a bit-for-bit retrace needs: thread count, CPU (or MKL code path),
            # code revision
            assert result["threads"] == 1 and result["cpu"] and result["mkl_cbwr"] == "AVX2"
            assert result["code"] is None or result["code"].split("+")[0] == GIT_HEAD
            assert 0.0 <= result["test"]["ents_f"] <= 1.0 and "ents_per_type" in result["test"]
            assert (folder / "training" / "model-best").exists() and (folder / "train.log").exists()
            assert "--system.seed " + str(seed) in (folder / "train.log").read_text()
    summary = json.loads((finished / "results" / "summary.json").read_text())
    assert summary["n_runs"] == 4 and summary["missing"] == []
    assert [row["row"] for row in summary["rows"]] == ROWS
    assert [row["method"] for row in summary["rows"]] == ["Baseline", "MAT (similarity)"]
    for row in summary["rows"]:
        assert row["chunk"] is None
        ner = row["ner"]
        assert ner["n_seeds"] == 2 and ner["seeds"] == [0, 1] and len(ner["test_f"]) == 2
        assert ner["test_f_mean"] == pytest.approx(sum(ner["test_f"]) / 2)
        assert ner["test_f_std"] is not None and ner["test_f_std"] >= 0
        assert ner["budgets"] == ["≤ 4 steps"]
    table = (finished / "results" / "summary.md").read_text()
    assert table.splitlines()[0] == ("| Method | NER test F1 | Chunking test F1 | "
                                     "Seeds (NER / chunking) | Budget |")
    assert "| Baseline | " in table and "| MAT (similarity) | " in table
    assert " | – | 2 / 0 | ≤ 4 steps |" in table


def test_runs_log_their_curves_and_the_grid_plots_them(finished):
    for row in ROWS:
        folder = finished / "runs" / f"ner_{row}" / "seed0"
        log = (folder / "train.log").read_text()
        assert f"--training.logger.output_file {folder / 'training_log.jsonl'}" in log
        assert f"--training.before_update.output_file {folder / 'confidence.jsonl'}" in log
        rows = [json.loads(line) for line in (folder / "training_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 2, 4]
        conf = [json.loads(line) for line in (folder / "confidence.jsonl").read_text().splitlines()]
        assert conf[0]["step"] == 0 and conf[0]["words"][:2] == ["Radio", "Romania"]
    for kind in ("learning", "confidence"):
        png = finished / "results" / f"{kind}_ner.png"
        assert png.stat().st_size > 1000
        data = json.loads(png.with_suffix(".json").read_text())
        assert [r["label"] for r in data["runs"]] == ["Baseline (seed0)", "MAT (similarity) (seed0)"]
    assert not (finished / "results" / "learning_chunk.png").exists()


def test_rerun_skips_finished_runs(finished, corpus):
    results = sorted((finished / "runs").glob("*/seed*/result.json"))
    before = {path: path.stat().st_mtime_ns for path in results}
    rerun = grid(corpus, *BUDGET)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "4 runs, 4 already finished (skipped), 0 to train" in rerun.stdout
    assert {path: path.stat().st_mtime_ns for path in results} == before
    listed = grid(corpus, "--list", "--shard", "2/2")
    assert listed.stdout.split() == ["done", "ner_mat_similarity/seed0",
                                     "done", "ner_mat_similarity/seed1"]


def test_other_budget_is_refused(finished, corpus):
    result = grid(corpus, "--max-steps", "5")
    assert result.returncode == 2
    assert "finished with budget ≤ 4 steps, not ≤ 5 steps" in result.stderr
    result = grid(corpus, "--max-epochs", "0", "--max-steps", "4")
    assert result.returncode == 2
    assert "finished with the overrides ['--training.eval_frequency', '2'], not []" in result.stderr


def test_summary_only_tabulates_without_training(finished, corpus):
    result = grid(corpus, "--summary-only", "--seeds", "0", "1", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((finished / "results" / "summary.json").read_text())
    assert summary["missing"] == ["ner_baseline/seed2", "ner_mat_similarity/seed2"]
    assert "Missing runs (2)" in (finished / "results" / "summary.md").read_text()


def test_missing_corpus_is_an_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "spacy_mat.experiments", "--data-dir",
                             str(tmp_path / "nowhere"), "--configs-dir", str(REPO / "configs"),
                             "--output", str(tmp_path / "runs"), "--results", str(tmp_path / "r")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert f"corpus file not found: {tmp_path / 'nowhere' / 'ner' / 'train.spacy'}" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_shards_partition_the_grid():
    runs = plan(["ner", "chunk"], ["baseline", "at", "mat_similarity"], [0, 1, 2, 3, 4])
    assert len(runs) == 30 and len(set(runs)) == 30
    parts = [shard(runs, i, 4) for i in range(1, 5)]
    assert sorted(r for part in parts for r in part) == sorted(runs)
    assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert {len(p) for p in parts} == {7, 8}
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(Exception):
            parse_shard(bad)


def fake(task, row, seed, f, dev=0.5):
    key = "ents_f" if task == "ner" else "spans_chunks_f"
    return {"task": task, "row": row, "seed": seed, "score_key": key, "test": {key: f},
            "dev": {key: dev}, "budget": {"max_epochs": 20, "max_steps": None, "patience": None},
            "train_seconds": 10.0}


def test_summary_mean_std_and_table():
    results = [fake("ner", "mat_similarity", 0, 0.92), fake("ner", "mat_similarity", 1, 0.90),
               fake("chunk", "mat_similarity", 0, 0.95), fake("ner", "baseline", 0, 0.91),
               fake("chunk", "my_row", 0, 0.5)]
    expected = plan(["ner", "chunk"], ["baseline", "mat_similarity"], [0, 1])
    summary = summarize(results, expected=expected)
    assert [r["row"] for r in summary["rows"]] == ["baseline", "mat_similarity", "my_row"]
    mat = summary["rows"][1]
    assert mat["ner"]["test_f_mean"] == pytest.approx(0.91)
    assert mat["ner"]["test_f_std"] == pytest.approx(0.0141421, abs=1e-6)  # sample std
    assert mat["chunk"]["n_seeds"] == 1 and mat["chunk"]["test_f_std"] is None
    assert sorted(summary["missing"]) == sorted(["ner_baseline/seed1", "chunk_baseline/seed0",
                                                 "chunk_baseline/seed1", "chunk_mat_similarity/seed1"])
    lines = markdown(summary).splitlines()
    assert lines[2] == "| Baseline | 91.00 ± – | – | 1 / 0 | 20 epochs |"
    assert lines[3] == "| MAT (similarity) | 91.00 ± 1.41 | 95.00 ± – | 2 / 1 | 20 epochs |"
    assert lines[4] == "| my_row | – | 50.00 ± – | 0 / 1 | 20 epochs |"


def test_budget_labels():
    assert budget_label({"max_epochs": None, "max_steps": None, "patience": None}) == \
        "config (≤ 20000 steps, early stopping)"
    assert budget_label({"max_epochs": 20, "max_steps": 3000, "patience": 0}) == \
        "20 epochs, ≤ 3000 steps, no early stop"
    assert Run("ner", "at", 3).name == "ner_at/seed3"


def test_paired_comparisons_by_seed():
    from spacy_mat.experiments import paired_comparisons

    results = [fake("ner", "baseline", 0, 0.90), fake("ner", "baseline", 1, 0.91),
               fake("ner", "baseline", 2, 0.92), fake("ner", "at", 0, 0.91),
               fake("ner", "at", 1, 0.90), fake("ner", "at", 2, 0.94),
               fake("ner", "mat_similarity", 1, 0.93)]  # seed 1 only
    pairs = {(p["row"], p["minus"]): p for p in paired_comparisons(results)}
    at = pairs[("at", "baseline")]
    assert at["seeds"] == [0, 1, 2]
    assert at["diffs"] == pytest.approx([0.01, -0.01, 0.02])
    assert at["mean_diff"] == pytest.approx(0.02 / 3)
    assert at["seeds_agreeing"] == 2
    mat = pairs[("mat_similarity", "at")]
    assert mat["seeds"] == [1] and mat["diffs"] == pytest.approx([0.03]) and mat["seeds_agreeing"] == 1
    assert ("at_noadv", "baseline") not in pairs
    plus = {(p["row"], p["minus"]): p for p in paired_comparisons(
        results + [fake("ner", "mat_caseunk", 0, 0.95), fake("ner", "mat_caseunk", 1, 0.89)])}
    assert plus[("mat_caseunk", "baseline")]["diffs"] == pytest.approx([0.05, -0.02])
    assert plus[("mat_caseunk", "mat_similarity")]["seeds"] == [1]
    summary = summarize(results)
    table = markdown(summary)
    assert "| NER | AT − Baseline | +0.67 | 2/3 | +1.00, -1.00, +2.00 |" in table


def test_grid_analysis_unseen_words_and_probes(finished, corpus):
    """Table 3 and the robustness table from the finished runs (baseline rows)."""
    cmd = [sys.executable, "-m", "spacy_mat.grid_analysis", "--output", str(finished / "runs"),
           "--data-dir", str(corpus), "--results", str(finished / "analysis"), "--rows", "baseline"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=finished)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads((finished / "analysis" / "analysis.json").read_text())
    assert sorted(r["seed"] for r in data["runs"]) == [0, 1]
    for run in data["runs"]:
        result = json.loads((finished / "runs" / "ner_baseline" / f"seed{run['seed']}" /
                             "result.json").read_text())
        assert run["f"] == pytest.approx(result["test"]["ents_f"], abs=1e-9)
        assert 0 <= run["unseen_f"] <= 1 and run["unseen_tokens"] > 0
        assert set(run["probes"]) == {"replace_entities", "mask_non-entity", "mask_entity",
                                      "lowercase", "typos"}
    (row,) = data["rows"]
    assert row["seeds"] == [0, 1] and row["vectors"] == ["glove-sample"]
    assert row["unseen_f"] == pytest.approx(sum(r["unseen_f"] for r in data["runs"]) / 2)
    table = (finished / "analysis" / "analysis.md").read_text()
    assert "| NER | Baseline | 2 | glove-sample |" in table
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=finished)  # resumes: all cached
    assert again.returncode == 0
    assert json.loads((finished / "analysis" / "analysis.json").read_text()) == data


def test_grid_analysis_on_dev_for_choosing(finished, corpus):
    """--split dev scores and probes the dev set (its F1 is the run's dev
    score), into analysis_dev.{json,md}, next to the test analysis files."""
    cmd = [sys.executable, "-m", "spacy_mat.grid_analysis", "--output", str(finished / "runs"),
           "--data-dir", str(corpus), "--results", str(finished / "analysis_dev_check"),
           "--rows", "baseline", "--split", "dev"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=finished)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads((finished / "analysis_dev_check" / "analysis_dev.json").read_text())
    assert data["split"] == "dev"
    for run in data["runs"]:
        folder = finished / "runs" / "ner_baseline" / f"seed{run['seed']}"
        result = json.loads((folder / "result.json").read_text())
        assert run["f"] == pytest.approx(result["dev"]["ents_f"], abs=1e-6)
        assert (folder / "analysis" / "robustness_dev.json").exists()
        assert "replace_entities" in run["probes"]
    assert "| Dev F1 |" in (finished / "analysis_dev_check" / "analysis_dev.md").read_text()


def test_records_outlive_the_run_folders(finished, tmp_path):
    """Every finished run leaves <results>/runs/<task>_<row>/seed<k>.json; a
    summary with the run folders gone still counts those runs."""
    import shutil

    for row in ROWS:
        for seed in (0, 1):
            record = json.loads((finished / "results" / "runs" / f"ner_{row}" /
                                 f"seed{seed}.json").read_text())
            result = json.loads((finished / "runs" / f"ner_{row}" / f"seed{seed}" /
                                 "result.json").read_text())
            assert record["test"] == result["test"] and record["dev"] == result["dev"]
            log = [json.loads(line) for line in (finished / "runs" / f"ner_{row}" / f"seed{seed}" /
                                                 "training_log.jsonl").read_text().splitlines()]
            assert record["last_epoch"] == log[-1]["epoch"] and record["best_epoch"] is not None
    shutil.copytree(finished / "results", tmp_path / "results")
    cmd = [sys.executable, "-m", "spacy_mat.experiments", "--rows", *ROWS, "--tasks", "ner",
           "--seeds", "0", "1", "--output", str(tmp_path / "gone"), "--results",
           str(tmp_path / "results"), "--summary-only"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "4 finished runs: 0 under" in res.stdout
    before = json.loads((finished / "results" / "summary.json").read_text())
    after = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert after["missing"] == [] and after["n_from_records"] == 4
    for old, new in zip(before["rows"], after["rows"]):
        assert new["ner"]["test_f"] == old["ner"]["test_f"]
        assert new["ner"]["dev_f_mean"] == pytest.approx(old["ner"]["dev_f_mean"])
    assert "4 of the 4 runs come from the records" in (tmp_path / "results" / "summary.md").read_text()


def test_grid_analysis_keeps_earlier_entries_of_gone_runs(finished, corpus, tmp_path):
    """The analysis of a run whose folder is gone stays in analysis.json (and
    in the row means); --fresh drops it. Entries outside --rows stay as they
    were, with or without --fresh."""
    import shutil

    shutil.copytree(finished / "runs" / "ner_baseline" / "seed0", tmp_path / "runs" / "ner_baseline" / "seed0")
    probes = {p: {"f": 0.5, "drop": 0.1} for p in ("replace_entities", "mask_non-entity", "mask_entity",
                                                    "lowercase", "typos")}
    gone = {"task": "ner", "row": "baseline", "seed": 7, "vectors": "glove-sample", "f": 0.5,
            "unseen_f": 0.25, "unseen_tokens": 10, "probes": probes}
    other_row = dict(gone, row="at")  # outside --rows: kept as it was
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "analysis.json").write_text(
        json.dumps({"split": "test", "runs": [gone, other_row], "rows": []}))
    cmd = [sys.executable, "-m", "spacy_mat.grid_analysis", "--output", str(tmp_path / "runs"),
           "--data-dir", str(corpus), "--results", str(tmp_path / "results"), "--rows", "baseline"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "kept 1 per-run entries of the earlier" in res.stdout
    assert res.stdout.count("kept 1 per-run entries of the earlier") == 2
    assert "outside --rows / --tasks as they were" in res.stdout  # the other row: said, not silent
    data = json.loads((tmp_path / "results" / "analysis.json").read_text())
    assert [(r["row"], r["seed"], r.get("source")) for r in data["runs"]] == [
        ("baseline", 0, None), ("baseline", 7, "earlier analysis"), ("at", 7, None)]
    rows = {r["row"]: r for r in data["rows"]}
    assert rows["baseline"]["seeds"] == [0, 7] and rows["at"]["seeds"] == [7]
    res = subprocess.run(cmd + ["--fresh"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = json.loads((tmp_path / "results" / "analysis.json").read_text())["runs"]
    assert [(r["row"], r["seed"]) for r in runs] == [("baseline", 0), ("at", 7)]
    # --fresh over every row starts afresh: an unreadable earlier file is not read
    (tmp_path / "results" / "analysis.json").write_text("not json")
    res = subprocess.run([c for c in cmd if c not in ("--rows", "baseline")] + ["--fresh"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = json.loads((tmp_path / "results" / "analysis.json").read_text())["runs"]
    assert [(r["row"], r["seed"]) for r in runs] == [("baseline", 0)]


def test_code_revision_marks_edited_sources(tmp_path):
    from spacy_mat.experiments import code_revision, cpu_model

    assert cpu_model()
    assert code_revision(tmp_path) is None  # not a git checkout
    git = lambda *a: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t",
                                     "-c", "commit.gpgsign=false", *a], cwd=tmp_path, check=True,
                                    capture_output=True)
    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "x")
    (tmp_path / "spacy_mat").mkdir()
    (tmp_path / "spacy_mat" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("n\n")
    git("add", ".")
    git("commit", "-q", "-m", "y")
    head = git_head(tmp_path)
    assert code_revision(tmp_path / "spacy_mat") == head
    (tmp_path / "notes.md").write_text("edited docs do not count\n")
    assert code_revision(tmp_path) == head
    (tmp_path / "spacy_mat" / "a.py").write_text("x = 2\n")
    assert code_revision(tmp_path) == head + "+dirty"
