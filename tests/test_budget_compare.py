"""Two budgets of the same runs compared per run: twins matched by task, row
and seed, best / last epoch read from the training log, bad logs named."""
import json
from pathlib import Path

import pytest

from spacy_mat.budget_compare import compare, deltas, epochs, main, markdown


def write_run(root: Path, task: str, row: str, seed: int, dev: float, test: float,
              scores=(0.1, 0.5, 0.4), minutes: float = 2.0) -> Path:
    key = "ents_f" if task == "ner" else "spans_chunks_f"
    folder = root / f"{task}_{row}" / f"seed{seed}"
    folder.mkdir(parents=True)
    result = {"task": task, "row": row, "seed": seed, "score_key": key, "dev": {key: dev},
              "test": {key: test}, "train_seconds": minutes * 60}
    (folder / "result.json").write_text(json.dumps(result))
    log = [{"epoch": i, "step": i * 10, "score": s} for i, s in enumerate(scores)]
    (folder / "training_log.jsonl").write_text("\n".join(json.dumps(entry) for entry in log) + "\n")
    return folder


def test_twins_are_matched_and_every_long_run_is_counted(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    write_run(short, "ner", "baseline", 0, 0.90, 0.88)
    write_run(short, "ner", "at", 0, 0.91, 0.89)
    write_run(short, "ner", "baseline", 1, 0.90, 0.87)  # no long twin: not listed
    write_run(long, "ner", "baseline", 0, 0.92, 0.87, scores=(0.2, 0.9, 0.8, 0.7), minutes=6)
    write_run(long, "ner", "at", 0, 0.93, 0.90, scores=(0.2, 0.5, 0.6))
    write_run(long, "chunk", "baseline", 0, 0.93, 0.92)  # no short twin: listed, Δ empty
    entries = compare([short], [long])
    assert [(e["task"], e["row"], e["seed"]) for e in entries] == [
        ("ner", "baseline", 0), ("ner", "at", 0), ("chunk", "baseline", 0)]
    base, at, chunk = entries
    assert base["test_delta"] == pytest.approx(-0.01)
    assert at["test_delta"] == pytest.approx(0.01)
    assert chunk["short"] == {"dev": None, "test": None} and chunk["test_delta"] is None
    assert (base["best_epoch"], base["last_epoch"], base["train_minutes"]) == (1, 3, 6)
    assert (at["best_epoch"], at["last_epoch"]) == (2, 2)
    per_row = {(d["task"], d["row"]): d for d in deltas(entries)}
    assert set(per_row) == {("ner", "baseline"), ("ner", "at")}
    assert per_row["ner", "at"]["gained"] == 1 and per_row["ner", "baseline"]["gained"] == 0
    table = markdown(entries, "10 ep", "25 ep")
    assert "| dev 10 ep | test 10 ep | dev 25 ep | test 25 ep |" in table
    assert "| ner | 0 | baseline | 90.00 | 88.00 | 92.00 | 87.00 | -1.00 | 1 | 3 | 6 |" in table
    assert "| chunk | 0 | baseline | – | – | 93.00 | 92.00 | – |" in table


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    short, long = tmp_path / "short", tmp_path / "long"
    write_run(short, "ner", "baseline", 0, 0.90, 0.88)
    write_run(long, "ner", "baseline", 0, 0.92, 0.89)
    assert main(["--short", str(short), "--long", str(long), "--results", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "budget_compare.json").read_text())
    assert len(saved["runs"]) == 1 and saved["runs"][0]["test_delta"] == pytest.approx(0.01)
    assert (tmp_path / "out" / "budget_compare.md").read_text() == capsys.readouterr().out


def test_no_finished_long_run_is_an_error(tmp_path):
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    with pytest.raises(SystemExit):
        main(["--short", str(tmp_path / "short"), "--long", str(tmp_path / "long")])


def test_a_bad_log_line_names_file_and_line(tmp_path):
    folder = write_run(tmp_path, "ner", "baseline", 0, 0.9, 0.9)
    with (folder / "training_log.jsonl").open("a") as log:
        log.write("{not json\n")
    with pytest.raises(ValueError, match=r"training_log.jsonl:4: not a JSON line"):
        epochs(folder)


def test_short_runs_logs_are_not_read(tmp_path):
    """Only the long runs' epochs are reported: a short run's broken log does not matter."""
    from spacy_mat.budget_compare import load

    short, long = tmp_path / "short", tmp_path / "long"
    folder = write_run(short, "ner", "baseline", 0, 0.90, 0.88)
    (folder / "training_log.jsonl").write_text("not json\n")
    write_run(long, "ner", "baseline", 0, 0.92, 0.89)
    assert "best_epoch" not in load([short], with_epochs=False)[("ner", "baseline", 0)]
    (entry,) = compare([short], [long])
    assert entry["test_delta"] == pytest.approx(0.01) and entry["best_epoch"] == 1
