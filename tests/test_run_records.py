"""Per-run records: written beside the summary, merged with run folders (a
run folder wins), imported from an older summary (test F1 only), bad files
named; the budget comparison reads them when the run folders are gone."""
import json

import pytest

from spacy_mat.budget_compare import compare, deltas
from spacy_mat.budget_compare import markdown as budget_markdown
from spacy_mat.experiments import markdown, summarize
from spacy_mat.run_records import (import_summary, main, merge, read_records, record_path,
                                   write_records)


def fake(task, row, seed, f, dev=0.5, seconds=10.0):
    key = "ents_f" if task == "ner" else "spans_chunks_f"
    return {"task": task, "row": row, "seed": seed, "score_key": key, "test": {key: f},
            "dev": {key: dev}, "budget": {"max_epochs": 25, "max_steps": None, "patience": 1100},
            "vectors": "glove-6b-50d", "train_seconds": seconds}


def test_write_read_and_merge(tmp_path):
    output, results = tmp_path / "runs", tmp_path / "results"
    folder = output / "ner_at" / "seed0"
    folder.mkdir(parents=True)
    (folder / "training_log.jsonl").write_text(
        "\n".join(json.dumps({"epoch": e, "score": s}) for e, s in enumerate((0.2, 0.7, 0.6))) + "\n")
    paths = write_records(results, output, [fake("ner", "at", 0, 0.90), fake("ner", "at", 1, 0.91)])
    assert paths[0] == record_path(results, "ner", "at", 0) == results / "runs" / "ner_at" / "seed0.json"
    records = read_records(results)
    assert [(r["seed"], r["test"]["ents_f"]) for r in records] == [(0, 0.90), (1, 0.91)]
    assert (records[0]["best_epoch"], records[0]["last_epoch"]) == (1, 2)
    assert records[1]["best_epoch"] is None  # no log in that folder
    assert records[0]["record"]["from"] == str(folder / "result.json")
    # a run folder wins over its record; records fill in the rest
    merged = merge([fake("ner", "at", 0, 0.95)], records)
    assert sorted((r["seed"], r["test"]["ents_f"], r["source"]) for r in merged) == [
        (0, 0.95, "run folder"), (1, 0.91, "record")]


def test_import_from_summary_round_trips_test_f1(tmp_path):
    runs = [fake("ner", "baseline", 0, 0.890), fake("ner", "baseline", 1, 0.893),
            fake("ner", "at", 0, 0.896), fake("ner", "at", 1, 0.898),
            fake("chunk", "at", 0, 0.934)]
    old = summarize(runs)
    (tmp_path / "summary.json").write_text(json.dumps(old))
    assert main(["import", str(tmp_path / "summary.json")]) == 0
    records = read_records(tmp_path)
    assert len(records) == 5
    assert all(r["dev"] == {} and r["train_seconds"] is None and "test F1 only" in r["record"]["from"]
               for r in records)
    # a new run folder for seed 2 plus the imported seeds 0-1
    new = summarize(merge([fake("ner", "baseline", 2, 0.896, dev=0.94), fake("ner", "at", 2, 0.899)],
                          records))
    base = new["rows"][0]["ner"]
    assert base["seeds"] == [0, 1, 2] and base["test_f"] == pytest.approx([0.890, 0.893, 0.896])
    assert base["dev_seeds"] == [2] and base["dev_f_mean"] == pytest.approx(0.94)
    assert base["from_records"] == [0, 1] and base["train_seconds_mean"] == pytest.approx(10.0)
    assert base["budgets"] == ["25 epochs, patience 1100"]  # the record's text = the run's label
    pair = next(p for p in new["paired"] if (p["row"], p["minus"]) == ("at", "baseline"))
    assert pair["diffs"] == pytest.approx([0.006, 0.005, 0.003])
    assert new["n_from_records"] == 5  # chunk AT seed 0 too
    assert "5 of the 7 runs come from the records" in markdown(new)
    # importing again keeps existing records
    assert import_summary(tmp_path / "summary.json", tmp_path) == []


def test_import_refuses_a_row_that_mixes_budgets(tmp_path):
    runs = [fake("ner", "at", 0, 0.9), dict(fake("ner", "at", 1, 0.9), budget={"max_epochs": 10})]
    (tmp_path / "summary.json").write_text(json.dumps(summarize(runs)))
    with pytest.raises(ValueError, match="ner at mixes budgets"):
        import_summary(tmp_path / "summary.json", tmp_path / "out")


def test_a_bad_record_is_named(tmp_path):
    path = tmp_path / "runs" / "ner_at" / "seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"seed0.json: not a run record \(no task, row"):
        read_records(tmp_path)
    path.write_text("{oops")
    with pytest.raises(ValueError, match="seed0.json: not JSON"):
        read_records(tmp_path)


def test_budget_compare_reads_records(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    (short / "summary.json").parent.mkdir()
    (short / "summary.json").write_text(json.dumps(summarize([fake("ner", "at", 0, 0.894)])))
    import_summary(short / "summary.json", short)
    write_records(long, tmp_path / "gone", [fake("ner", "at", 0, 0.896, seconds=600)])
    (entry,) = compare([short], [long])
    assert entry["test_delta"] == pytest.approx(0.002)
    assert entry["short"] == {"dev": None, "test": 0.894}
    assert entry["train_minutes"] == pytest.approx(10) and entry["best_epoch"] is None
    # the imported twin is flagged: an earlier revision trained it, so Δ is not the budget alone
    assert entry["short_imported"] is True
    assert deltas([entry])[0]["short_imported"] == 1
    table = budget_markdown([entry], "25 ep", "50 ep")
    assert "| ner | 0 | at | – | 89.40* | " in table and "record imported from a summary" in table


def test_budget_compare_does_not_flag_a_written_record(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    write_records(short, tmp_path / "gone", [fake("ner", "at", 0, 0.894)])
    write_records(long, tmp_path / "gone", [fake("ner", "at", 0, 0.896)])
    (entry,) = compare([short], [long])
    assert entry["short_imported"] is False and deltas([entry])[0]["short_imported"] == 0
    table = budget_markdown([entry], "25 ep", "50 ep")
    assert "| ner | 0 | at | 50.00 | 89.40 | " in table and "imported from a summary" not in table


def test_budget_compare_flags_a_run_that_did_not_retrace(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    runs = [fake("ner", "at", 0, 0.894, dev=0.94), fake("ner", "at", 1, 0.894, dev=0.94),
            fake("ner", "at", 2, 0.894, dev=0.94)]
    write_records(short, tmp_path / "gone", runs)
    later = [dict(fake("ner", "at", 0, 0.894, dev=0.94), best_epoch=20),  # retraced
             dict(fake("ner", "at", 1, 0.895, dev=0.94), best_epoch=14),  # best within 25, differs
             dict(fake("ner", "at", 2, 0.896, dev=0.95), best_epoch=30)]  # beyond the cap: budget
    for run in later:
        path = record_path(long, "ner", "at", run["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(run, budget={"max_epochs": 50, "max_steps": None,
                                                     "patience": 1100})))
    entries = compare([short], [long])
    assert [e["diverged"] for e in entries] == [False, True, None]
    assert deltas(entries)[0]["diverged"] == 1
    table = budget_markdown(entries, "25 ep", "50 ep")
    assert "| ner | 1 | at | 94.00 | 89.40 | 94.00 | 89.50 | +0.10† | 14 |" in table
    assert "† diverged" in table and "| +0.10† |" in table
    assert "| ner | 0 | at | 94.00 | 89.40 | 94.00 | 89.40 | +0.00 | 20 |" in table
    # no cap recorded for the twin (an imported record): nothing to tell
    from spacy_mat.budget_compare import diverged
    assert diverged(dict(runs[0], budget=None), later[1]) is None
    assert diverged(None, later[1]) is None


def test_budget_compare_keeps_the_tasks_asked_for(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    runs = [fake("ner", "at", 0, 0.894), fake("chunk", "at", 0, 0.93)]
    write_records(short, tmp_path / "gone", runs)
    write_records(long, tmp_path / "gone", runs)
    assert [e["task"] for e in compare([short], [long])] == ["ner", "chunk"]
    assert [e["task"] for e in compare([short], [long], tasks=["chunk"])] == ["chunk"]
