"""The project's step helpers: per-setting skipping (spacy_mat.step), keeping
the better of model-best and model-last (spacy_mat.final), the package's
training check and build label (spacy_mat.package), the data_dir check
(spacy_mat.datadir). Fast: no training."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from spacy_mat import datadir, final, package, step


# --- spacy_mat.step ------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPACY_MAT_STEP_FORCE", raising=False)
    return tmp_path


WRITE = ("import sys, pathlib; p = pathlib.Path(sys.argv[1]); "
         "p.write_text(p.read_text() + 'x' if p.exists() else 'x')")


def run_step(key, *extra, dep="in.txt", out="out.txt"):
    return step.main([key, "--deps", dep, "--outputs", out, *extra, "--",
                      "python", "-c", WRITE, out])


def test_step_runs_then_skips_per_key(in_tmp, capsys):
    Path("in.txt").write_text("a")
    assert run_step("train-ner") == 0
    assert Path("out.txt").read_text() == "x"
    assert run_step("train-ner") == 0
    assert "Skipping train-ner" in capsys.readouterr().out
    assert Path("out.txt").read_text() == "x"  # not run again
    # another setting (another key) has its own record: the first stays valid
    Path("in2.txt").write_text("b")
    assert run_step("train-chunk", dep="in2.txt", out="out2.txt") == 0
    assert run_step("train-ner") == 0
    assert Path("out.txt").read_text() == "x"


@pytest.mark.parametrize("change", ["dep", "output", "missing_output", "command", "force"])
def test_step_reruns_when_something_changed(in_tmp, change, monkeypatch):
    Path("in.txt").write_text("a")
    assert run_step("k") == 0
    extra = []
    if change == "dep":
        Path("in.txt").write_text("changed")
    elif change == "output":
        Path("out.txt").write_text("edited by hand")
    elif change == "missing_output":
        Path("out.txt").unlink()
    elif change == "force":
        monkeypatch.setenv("SPACY_MAT_STEP_FORCE", "1")
    before = Path("out.txt").read_text() if Path("out.txt").exists() else ""
    if change == "command":
        assert step.main(["k", "--deps", "in.txt", "--outputs", "out.txt", "--",
                          "python", "-c", WRITE + " # v2", "out.txt"]) == 0
    else:
        assert run_step("k", *extra) == 0
    assert Path("out.txt").read_text() == before + "x"


def test_step_chained_commands_and_failures(in_tmp):
    Path("in.txt").write_text("a")
    ok = ["python", "-c", WRITE, "out.txt"]
    assert step.main(["c", "--deps", "in.txt", "--outputs", "out.txt", "--", *ok, "&&", *ok]) == 0
    assert Path("out.txt").read_text() == "xx"
    fail = ["python", "-c", "raise SystemExit(3)"]
    assert step.main(["f", "--outputs", "out.txt", "--", *fail, "&&", *ok]) == 3
    assert Path("out.txt").read_text() == "xx"  # the second command did not run
    assert not Path(".steps/f.json").exists()  # no record of a failed step
    assert step.main(["m", "--deps", "nope.txt", "--", *ok]) == 1
    assert step.main(["../escape", "--", *ok]) == 2


def test_step_split_commands():
    assert step.split_commands(["python", "a", "&&", "ls", "-l"]) == [[sys.executable, "a"], ["ls", "-l"]]
    with pytest.raises(ValueError):
        step.split_commands(["a", "&&"])


# --- spacy_mat.final -------------------------------------------------------------------


def test_weighted_score():
    assert final.weighted_score({"ents_f": 0.5, "ents_p": 0.9}, {"ents_f": 1.0, "ents_p": 0.0, "x": None}) == 0.5
    assert final.weighted_score({"a": 0.4, "b": None}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.2)


def test_best_logged_step(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [(0, 0.1), (10, 0.3), (20, 0.3), (30, 0.2)]
    log.write_text("".join(json.dumps({"step": s, "score": v}) + "\n" for s, v in rows))
    # spaCy saves a checkpoint whenever the score equals the best so far: the last tie wins
    assert final.best_logged_step(log) == (20, [0, 10, 20, 30])


def fake_run(tmp_path, best_step_score):
    run = tmp_path / "run"
    for name in ("model-best", "model-last"):
        (run / name).mkdir(parents=True)
        (run / name / "meta.json").write_text(json.dumps({"name": name, "performance": {"ents_f": 0.0}}))
    rows = [{"step": 0, "score": best_step_score}, {"step": 5, "score": best_step_score / 2}]
    (run / final.LOG_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


class FakeNLP:
    def __init__(self, meta):
        self.meta = meta
        self.config = {"training": {"score_weights": {"ents_f": 1.0, "ents_p": None}}}


@pytest.mark.parametrize("best,last,kept,trained", [
    (0.2, 0.5, "model-last", True),   # the final steps were never evaluated: model-last wins
    (0.5, 0.5, "model-last", True),   # ties go to the more trained model
    (0.5, 0.1, "model-best", False),  # model-best is the step-0 model: recorded as untrained
])
def test_finalize_keeps_the_better_model(tmp_path, monkeypatch, best, last, kept, trained):
    run = fake_run(tmp_path, best)
    dev = tmp_path / "dev.spacy"

    def fake_score(model, data):
        meta = json.loads((model / "meta.json").read_text())
        value = best if meta["name"] == "model-best" else last
        return value, {"ents_f": value}, FakeNLP(meta)

    monkeypatch.setattr(final, "score", fake_score)
    record = final.finalize(run, dev)
    assert record["kept"] == kept and record["trained"] is trained
    assert record["model_best_step"] == 0 and record["evaluated_steps"] == [0, 5]
    meta = json.loads((run / "model-best" / "meta.json").read_text())
    assert meta["name"] == kept
    assert meta[final.META_KEY] == record
    if kept == "model-last":
        assert meta["performance"]["ents_f"] == last
    assert package.check_trained(meta, run / "model-best", False) is None if trained else True
    if not trained:
        with pytest.raises(package.PackageError, match="untrained step-0 model"):
            package.check_trained(meta, run / "model-best", allow_untrained=False)
        assert "packaging anyway" in package.check_trained(meta, run / "model-best", True)


def test_finalize_needs_both_models(tmp_path):
    (tmp_path / "model-best").mkdir()
    with pytest.raises(FileNotFoundError, match="spacy train --output"):
        final.finalize(tmp_path, tmp_path / "dev.spacy")


# --- spacy_mat.package -------------------------------------------------------------------


def test_package_warns_without_a_record(tmp_path):
    warning = package.check_trained({"name": "x"}, tmp_path, allow_untrained=False)
    assert "cannot verify" in warning and "spacy_mat.final" in warning


def test_build_label_follows_the_newest_file(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_text("b")
    os.utime(tmp_path / "a", (1_700_000_000, 1_700_000_000))
    os.utime(tmp_path / "sub" / "b", (1_800_000_000, 1_800_000_000))
    assert package.build_label(tmp_path) == "20270115080000"
    # a later build sorts higher as a version's local label
    from packaging.version import Version

    assert Version("0.1.0+20270115080000") > Version("0.1.0+20231114221320")


def test_package_refuses_untrained_model_cli(tmp_path, capsys):
    model = tmp_path / "model-best"
    model.mkdir()
    (model / "meta.json").write_text(json.dumps({final.META_KEY: {
        "trained": False, "dev_score": 0.05, "model_last_dev_score": 0.0}}))
    assert package.main([str(model), str(tmp_path / "packages"), "--name", "x", "--version", "0.1.0"]) == 1
    err = capsys.readouterr().err
    assert "untrained step-0 model" in err and "--untrained warn" in err
    assert not (tmp_path / "packages").exists()


# --- spacy_mat.datadir -------------------------------------------------------------------


def test_datadir_check(tmp_path):
    files = ["conll2003/train.txt", "conll2000/test.txt"]
    missing = datadir.problems(str(tmp_path / "nope"), files, tmp_path / "assets")
    assert len(missing) == 1 and "is not a folder" in missing[0] and "--vars.data_dir" in missing[0]
    (tmp_path / "d" / "conll2003").mkdir(parents=True)
    (tmp_path / "d" / "conll2003" / "train.txt").write_text("x")
    lacking = datadir.problems(str(tmp_path / "d"), files, tmp_path / "assets")
    assert "lacks conll2000/test.txt" in lacking[0]
    (tmp_path / "d" / "conll2000").mkdir()
    (tmp_path / "d" / "conll2000" / "test.txt").write_text("x")
    assert datadir.problems(str(tmp_path / "d"), files, tmp_path / "assets") == []
    assert datadir.problems("https://example.org/conll", files, tmp_path / "assets") == []
    # already fetched: a missing data_dir does not matter
    shutil.copytree(tmp_path / "d", tmp_path / "assets")
    assert datadir.problems(str(tmp_path / "nope"), files, tmp_path / "assets") == []
