"""Plot commands on hand-written logs: a non-empty PNG and the plotted data
as JSON beside it; clear errors for bad input."""
import json
import shutil

import pytest

from spacy_mat.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    return str(path)


def learning_log(path, scale):
    return write_jsonl(path, [
        {"epoch": i, "step": 100 * i, "losses": {"mat_tagger": 10.0 / (i + 1)},
         "scores": {"ents_f": scale * i / 10, "ents_p": 0.5, "ents_r": 0.5},
         "score": scale * i / 10, "seconds": 3.0 * i} for i in range(6)])


def confidence_log(path, rate):
    return write_jsonl(path, [
        {"step": 50 * i, "epoch": 0, "sentence": s, "words": ["Radio", "Romania"],
         "tags": ["B-ORG", "I-ORG"], "prob": min(1.0, rate * i + 0.1 * s), "log_prob": 0.0}
        for i in range(8) for s in range(2)])


def robustness_result(path, original, drops):
    probes = {"original": {"changed": 0, "scores": {"f": original}, "drop": 0.0}}
    for name, drop in drops.items():
        probes[name] = {"changed": 10, "scores": {"f": original - drop}, "drop": drop}
    path.write_text(json.dumps({"name": path.stem, "probes": probes}), encoding="utf8")
    return str(path)


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    return json.loads(path.with_suffix(".json").read_text())


def test_plot_learning(tmp_path, capsys):
    runs = [learning_log(tmp_path / "base.jsonl", 0.8), learning_log(tmp_path / "mat.jsonl", 0.9)]
    out = tmp_path / "figs" / "curves.png"
    assert main(["plot-learning", *runs, "--labels", "baseline", "mat", "--output", str(out),
                 "--metric", "ents_f"]) == 0
    data = check_png(out)
    assert [r["label"] for r in data["runs"]] == ["baseline", "mat"]
    assert data["runs"][1]["x"] == [0, 100, 200, 300, 400, 500]
    assert data["runs"][1]["y"] == pytest.approx([90 * i / 10 for i in range(6)])
    assert "curves.json" in capsys.readouterr().out


def test_plot_confidence(tmp_path):
    runs = [confidence_log(tmp_path / "baseline.jsonl", 0.05), confidence_log(tmp_path / "mat.jsonl", 0.1)]
    out = tmp_path / "fig.png"
    assert main(["plot-confidence", *runs, "--output", str(out), "--sentence", "1"]) == 0
    data = check_png(out)
    assert [r["label"] for r in data["runs"]] == ["baseline", "mat"]  # file names by default
    assert data["runs"][0]["step"] == [50 * i for i in range(8)]
    assert data["runs"][0]["prob"] == pytest.approx([0.05 * i + 0.1 for i in range(8)])


def test_many_curves_get_distinct_styles_and_a_legend_beside_the_axes(tmp_path, monkeypatch):
    from spacy_mat.analysis import plots

    styles = [plots._line_style(i) for i in range(20)]
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 20  # default cycle: 10
    assert len({s["color"] for s in styles[:10]}) == 10 and styles[0] == plots._line_style(20)
    asked = []
    style = plots._line_style
    monkeypatch.setattr(plots, "_line_style", lambda i: asked.append(i) or style(i))
    runs = [confidence_log(tmp_path / f"run{i}.jsonl", 0.01 * (i + 1)) for i in range(13)]
    assert main(["plot-confidence", *runs, "--output", str(tmp_path / "many.png")]) == 0
    assert len(check_png(tmp_path / "many.png")["runs"]) == 13
    logs = [learning_log(tmp_path / f"log{i}.jsonl", 0.5 + 0.03 * i) for i in range(13)]
    assert main(["plot-learning", *logs, "--output", str(tmp_path / "curves.png")]) == 0
    assert asked == list(range(13)) * 2  # one style per curve, in order, for both kinds


def test_plot_robustness(tmp_path):
    drops = {"replace_entities": 0.1, "mask_non-entity": 0.02}
    results = [robustness_result(tmp_path / "baseline.json", 0.9, drops),
               robustness_result(tmp_path / "mat.json", 0.91, {k: v / 2 for k, v in drops.items()})]
    out = tmp_path / "drops.png"
    assert main(["plot-robustness", *results, "--labels", "baseline", "MAT", "--output", str(out)]) == 0
    data = check_png(out)
    assert data["probes"] == ["replace_entities", "mask_non-entity"]
    assert data["methods"][1]["drops"] == pytest.approx({"replace_entities": 5.0, "mask_non-entity": 1.0})


def test_plot_errors(tmp_path, capsys):
    run = learning_log(tmp_path / "a.jsonl", 1.0)
    assert main(["plot-learning", run, "--labels", "x", "y", "--output", str(tmp_path / "f.png")]) == 1
    assert "2 labels for 1 runs" in capsys.readouterr().err
    assert main(["plot-learning", run, "--output", str(tmp_path / "f.pdf")]) == 1
    assert "must be a .png" in capsys.readouterr().err
    assert main(["plot-learning", run, "--metric", "spans_chunks_f", "--output", str(tmp_path / "f.png")]) == 1
    assert "no field 'scores.spans_chunks_f'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "score": 0.1}\n{"step": 1,\n', encoding="utf8")
    assert main(["plot-learning", str(bad), "--output", str(tmp_path / "f.png")]) == 1
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    conf = confidence_log(tmp_path / "c.jsonl", 0.1)
    assert main(["plot-confidence", conf, "--sentence", "5", "--output", str(tmp_path / "f.png")]) == 1
    assert "no records for sentence 5" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


def test_grid_curves_are_not_redrawn_without_rows_whose_logs_are_gone(tmp_path, capsys):
    """A summary run over a subset of the run folders must not overwrite the
    plot of the rows it no longer has (their folders lost): the plot is kept,
    and said so; with every row's log present it is redrawn."""
    from spacy_mat.experiments import write_curves

    def run_folder(row):
        folder = tmp_path / "runs" / f"ner_{row}" / "seed0"
        folder.mkdir(parents=True)
        learning_log(folder / "training_log.jsonl", 0.9)
        confidence_log(folder / "confidence.jsonl", 0.1)
        return {"task": "ner", "row": row, "seed": 0}

    results = tmp_path / "results"
    results.mkdir()
    everything = [run_folder("baseline"), run_folder("at")]
    written = write_curves(everything, tmp_path / "runs", results)
    assert sorted(p.name for p in written) == ["confidence_ner.png", "learning_ner.png"]
    before = (results / "learning_ner.json").read_text()
    shutil.rmtree(tmp_path / "runs" / "ner_at")  # its folder is gone
    assert write_curves(everything[:1], tmp_path / "runs", results) == []
    assert (results / "learning_ner.json").read_text() == before
    assert "learning_ner.png kept as it was: the logs of its rows ['at']" in capsys.readouterr().err
    run_folder("at")
    assert len(write_curves(everything, tmp_path / "runs", results)) == 2
