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


def write_budgeted(root: Path, task: str, row: str, seed: int, test: float, cap: int,
                   scores, config: Path, patience: int = 30) -> Path:
    """A run folder whose result records its budget and config (as
    ``experiments`` writes them); ``scores`` one dev score per epoch."""
    folder = write_run(root, task, row, seed, max(scores), test, scores=scores)
    result = json.loads((folder / "result.json").read_text())
    result.update(budget={"max_epochs": cap, "max_steps": None, "patience": patience},
                  config=str(config))
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def test_the_grid_at_the_long_budget_carries_only_runs_a_longer_cap_would_not_change(tmp_path):
    from spacy_mat.budget_compare import at_long_budget

    config = tmp_path / "tagger.cfg"
    config.write_text("[training]\neval_frequency = 10\npatience = 30\n")  # patience = 3 evaluations
    short, long = tmp_path / "short", tmp_path / "long"
    # baseline seed 0: a long run: it wins over its short twin
    write_budgeted(short, "ner", "baseline", 0, 0.80, 5, (0.1, 0.2, 0.3, 0.4, 0.5), config)
    write_budgeted(long, "ner", "baseline", 0, 0.85, 10, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.5), config)
    # seed 1: stopped at epoch 3 of a 5-epoch cap: carried
    write_budgeted(short, "ner", "baseline", 1, 0.81, 5, (0.1, 0.4, 0.3, 0.2), config)
    # seed 2: last epoch 4 is the cap's, but its best (1) is 3 evaluations back: patience ran out: carried
    write_budgeted(short, "ner", "baseline", 2, 0.82, 5, (0.1, 0.5, 0.3, 0.2, 0.1), config)
    # AT: seed 0 stopped early, but seed 3 reached the cap still improving within patience, seed 4
    # had another patience and seed 5 no budget (an imported record): the row is incomplete
    write_budgeted(short, "ner", "at", 0, 0.90, 5, (0.1, 0.4, 0.3), config)
    write_budgeted(short, "ner", "at", 3, 0.83, 5, (0.1, 0.2, 0.5, 0.3, 0.2), config)
    write_budgeted(short, "ner", "at", 4, 0.84, 5, (0.1, 0.4, 0.3), config, patience=20)
    write_run(short, "ner", "at", 5, 0.9, 0.86)
    # chunking has no long run: its short runs are not part of the grid
    write_budgeted(short, "chunk", "baseline", 0, 0.90, 5, (0.1, 0.4, 0.3), config)
    grid = at_long_budget([short], [long])
    assert sorted((r["row"], r["seed"], r["test"]["ents_f"]) for r in grid["runs"]) == [
        ("baseline", 0, 0.85), ("baseline", 1, 0.81), ("baseline", 2, 0.82)]
    assert grid["carried"] == [("ner", "baseline", 1), ("ner", "baseline", 2)]
    assert [(e["row"], e["seed"], e["why"]) for e in grid["left_out"]] == [
        ("at", 3, "reached its cap of 5 epochs"), ("at", 4, "other patience or step limit"),
        ("at", 5, "budget not recorded")]
    assert grid["incomplete"] == [{"task": "ner", "row": "at", "seeds": [0], "seeds_left_out": [3, 4, 5]}]


def test_long_means_table_and_json(tmp_path, capsys):
    config = tmp_path / "tagger.cfg"
    config.write_text("[training]\neval_frequency = 10\n")
    short, long = tmp_path / "short", tmp_path / "long"
    for seed, (base, at) in enumerate([(0.80, 0.83), (0.82, 0.81)]):
        write_budgeted(long, "ner", "baseline", seed, base, 10, (0.1, 0.5, 0.4), config)
        write_budgeted(short, "ner", "at", seed, at, 5, (0.1, 0.5, 0.4), config)  # stopped early
    write_budgeted(short, "ner", "baseline", 0, 0.70, 5, (0.1, 0.2, 0.3, 0.4, 0.5), config)
    out = tmp_path / "out"
    assert main(["--short", str(short), "--long", str(long), "--results", str(out),
                 "--labels", "5 ep", "10 ep", "--long-means"]) == 0
    text = capsys.readouterr().out
    assert "## The grid at 10 ep" in text
    assert "| Baseline | 81.00 ± 1.41 |" in text and "| AT | 82.00 ± 1.41 |" in text
    assert "| NER | AT − Baseline | +1.00 | 1/2 | +3.00, -1.00 |" in text
    assert "2 of the 4 runs are 5 ep runs that stopped early." in text
    saved = json.loads((out / "budget_compare.json").read_text())["at_long"]
    assert [(c["row"], c["seed"]) for c in saved["carried"]] == [("at", 0), ("at", 1)]
    assert saved["left_out"] == []
    (pair,) = [p for p in saved["paired"] if p["row"] == "at" and p["minus"] == "baseline"]
    assert pair["mean_diff"] == pytest.approx(0.01)


def test_long_means_average_each_runs_probes_from_its_own_budget(tmp_path, capsys):
    from spacy_mat.grid_analysis import PROBES

    config = tmp_path / "tagger.cfg"
    config.write_text("[training]\neval_frequency = 10\n")
    short, long = tmp_path / "short", tmp_path / "long"
    write_budgeted(long, "ner", "baseline", 0, 0.80, 10, (0.1, 0.5, 0.4), config)
    write_budgeted(short, "ner", "baseline", 0, 0.70, 5, (0.1, 0.5, 0.4), config)  # twin: not used
    write_budgeted(short, "ner", "baseline", 1, 0.82, 5, (0.1, 0.5, 0.4), config)  # carried
    write_budgeted(short, "ner", "baseline", 2, 0.84, 5, (0.1, 0.5, 0.4), config)  # carried, no probes

    def entry(seed, f, unseen, drop):
        return {"task": "ner", "row": "baseline", "seed": seed, "vectors": "v", "f": f, "unseen_f": unseen,
                "probes": {p: {"f": f - drop, "drop": drop} for p in PROBES}}

    (long / "analysis.json").write_text(json.dumps({"split": "test", "runs": [entry(0, 0.80, 0.70, 0.10)]}))
    (short / "analysis.json").write_text(json.dumps(
        {"split": "test", "runs": [entry(0, 0.70, 0.10, 0.50), entry(1, 0.82, 0.74, 0.20)]}))
    out = tmp_path / "out"
    assert main(["--short", str(short), "--long", str(long), "--results", str(out), "--long-means"]) == 0
    text = capsys.readouterr().out
    assert "| NER | Baseline | 2 | v | 81.00 | 72.00 |" in text  # seeds 0 (long) and 1 (carried)
    assert "No probes for 1 of these runs: ner baseline seed 2." in text
    saved = json.loads((out / "budget_compare.json").read_text())["at_long"]
    (row,) = saved["probes"]
    assert row["seeds"] == [0, 1] and row["probes"]["typos"]["drop"] == pytest.approx(0.15)
    assert saved["probes_missing"] == [{"task": "ner", "row": "baseline", "seed": 2}]


def test_a_run_in_its_caps_last_epoch_without_its_config_is_left_out_saying_why(tmp_path):
    from spacy_mat.budget_compare import at_long_budget

    config = tmp_path / "tagger.cfg"
    config.write_text("[training]\neval_frequency = 10\n")
    short, long = tmp_path / "short", tmp_path / "long"
    write_budgeted(long, "ner", "baseline", 0, 0.85, 10, (0.1, 0.5, 0.4), config)
    write_budgeted(short, "ner", "baseline", 1, 0.82, 5, (0.1, 0.5, 0.3, 0.2, 0.1), tmp_path / "gone.cfg")
    grid = at_long_budget([short], [long])
    (entry,) = grid["left_out"]
    assert "patience in epochs is unknown" in entry["why"] and "gone.cfg" in entry["why"]
    assert [r["seed"] for r in grid["runs"]] == [] and grid["incomplete"][0]["seeds"] == [0]


def test_long_means_names_the_incomplete_rows(tmp_path, capsys):
    config = tmp_path / "tagger.cfg"
    config.write_text("[training]\neval_frequency = 10\n")
    short, long = tmp_path / "short", tmp_path / "long"
    write_budgeted(long, "ner", "baseline", 0, 0.80, 10, (0.1, 0.5, 0.4), config)
    write_budgeted(short, "ner", "at", 0, 0.83, 5, (0.1, 0.5, 0.4), config)  # stopped early
    write_budgeted(short, "ner", "at", 1, 0.84, 5, (0.1, 0.2, 0.3, 0.4, 0.5), config)  # at its cap
    assert main(["--short", str(short), "--long", str(long), "--labels", "5 ep", "10 ep", "--long-means"]) == 0
    text = capsys.readouterr().out.split("## The grid at 10 ep")[1]
    assert "| AT |" not in text and "| Baseline | 80.00 ± – |" in text
    assert "- ner at: 1 of 2 seeds (0); not seeds 1 (reached its cap of 5 epochs)" in text
