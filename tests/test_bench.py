"""The bench scripts run on a tiny input (--quick) and write valid JSON.

No timing is checked here: the numbers of a --quick run mean nothing.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import git_head, sample_vectors_dir, vectors_overrides
from spacy_mat.experiments import cpu_model
from test_training import spacy_train

REPO = Path(__file__).parents[1]
BENCH = REPO / "bench"


def _env(results: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "SPACY_MAT_BENCH_RESULTS": str(results)}


def _run(args, results: Path, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=_env(results),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _train(config: Path, corpus: Path, out: Path) -> Path:
    result = spacy_train(str(config), corpus, out)  # an absolute config path is kept as is
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "model-best"


@pytest.fixture(scope="module")
def bench_corpus(ner_slice, tmp_path_factory) -> Path:
    """The 200/60-sentence NER slice with its dev set doubling as test set."""
    out = tmp_path_factory.mktemp("bench_corpus")
    for name in ("train", "dev"):
        shutil.copy(ner_slice / f"{name}.spacy", out / f"{name}.spacy")
    shutil.copy(ner_slice / "dev.spacy", out / "test.spacy")
    return out


@pytest.fixture(scope="module")
def models(bench_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_models")
    ours = _train(REPO / "configs" / "ner_baseline.cfg", bench_corpus, out / "ours")
    theirs = _train(BENCH / "configs" / "spacy_ner_efficiency.cfg", bench_corpus, out / "spacy_ner")
    return {"ours": ours, "spacy_ner": theirs}


def _load(results: Path, name: str) -> dict:
    path = results / f"{name}_quick.json"
    assert path.exists(), f"{path} not written"
    data = json.loads(path.read_text(encoding="utf8"))
    assert data["machine"]["cores"] >= 1 and data["machine"]["date"]
    assert data["machine"]["cpu"] == cpu_model()
    assert data["machine"]["commit"].split("+")[0] == (git_head(REPO) or "unknown")
    return data


def test_crf_quick(tmp_path):
    out = _run([BENCH / "crf.py", "--quick"], tmp_path)
    data = _load(tmp_path, "crf")
    assert "Viterbi" in out
    assert len(data["rows"]) == 2
    for case in data["rows"]:
        assert case["identical"] is True
        assert set(case["speedup"]) == {"nll", "nll_fwd_bwd", "viterbi"}
        assert all(v > 0 for v in case["median_s"].values())


def test_train_step_quick(tmp_path, bench_corpus):
    _run([BENCH / "train_step.py", "--quick", "--threads", "1", "--train", bench_corpus / "train.spacy",
          "--vectors", sample_vectors_dir()], tmp_path)
    data = _load(tmp_path, "train_step")
    assert set(data["modes"]) == {"baseline", "at", "mat_similarity", "mat_random"}
    assert data["modes"]["baseline"]["ratio_to_baseline"] == 1.0
    assert all(m["median_s"] > 0 and m["steps"] == 3 for m in data["modes"].values())


def test_batching_quick(tmp_path, bench_corpus):
    _run([BENCH / "batching.py", "--quick", "--train", bench_corpus / "train.spacy",
          "--vectors", sample_vectors_dir()], tmp_path)
    data = _load(tmp_path, "batching")
    rows = data["rows"]
    assert set(rows) == {"baseline/random", "baseline/bucketed", "mat_similarity/random",
                         "mat_similarity/bucketed"}
    # the padding measure is exact, not a timing: bucketing must reduce it
    assert rows["baseline/bucketed"]["slots_per_token"] < rows["baseline/random"]["slots_per_token"]


def test_inference_quick(tmp_path, bench_corpus, models):
    _run([BENCH / "inference.py", f"ours={models['ours']}", f"spacy_ner={models['spacy_ner']}",
          "--quick", "--batch-sizes", "1", "32", "--test", bench_corpus / "test.spacy"], tmp_path)
    data = _load(tmp_path, "inference")
    assert set(data["results"]) == {"ours", "spacy_ner"}
    for result in data["results"].values():
        assert result["sentences"] == 60 and set(result["words_per_s"]) == {"1", "32"}
        assert result["peak_rss_mb"] > 0


def test_analysis_quick(tmp_path, bench_corpus, models):
    _run([BENCH / "analysis.py", f"ours={models['ours']}", "--corpus", bench_corpus, "--quick"],
         tmp_path)
    data = _load(tmp_path, "analysis")
    row = data["rows"]["ours"]
    assert 0.0 <= row["test_f1"] <= 1.0 and 0.0 <= row["unseen_token_f1"] <= 1.0
    assert (tmp_path / "analysis_quick.md").read_text().startswith("| model |")
    assert (tmp_path / "robustness_drop_quick.png").stat().st_size > 0


def test_train_budget_quick(tmp_path, bench_corpus):
    _run([BENCH / "train_budget.py", REPO / "configs" / "ner_baseline.cfg", "--task", "ner",
          "--epochs", "1", "--name", "tiny", "--threads", "1", "--quick",
          "--corpus", bench_corpus, "--output", tmp_path / "training",
          *vectors_overrides(REPO / "configs" / "ner_baseline.cfg")], tmp_path)
    data = _load(tmp_path, "train_tiny")
    assert data["budget"]["epochs"] == 1
    assert 0.0 <= data["test"]["ents_f"] <= 1.0 and data["train_wall_s"] > 0


def test_sampler_support_quick(tmp_path):
    _run([BENCH / "sampler_support.py", "--quick"], tmp_path)
    data = _load(tmp_path, "sampler_support")
    default = [r for r in data["rows"] if r["setting"].endswith("(default)")]
    assert [r["exclude_case_variants"] for r in default] == [False, True]
    assert all(w["support"] >= 1.0 and 0 < w["top_p"] <= 1 for r in data["rows"]
               for w in r["words"].values())


def test_train_step_vector_modes_and_memory_quick(tmp_path, bench_corpus):
    modes = ["baseline_novec", "baseline", "baseline_trainonly", "baseline_dense"]
    _run([BENCH / "train_step.py", "--quick", "--threads", "1", "--train", bench_corpus / "train.spacy",
          "--vectors", sample_vectors_dir(), "--modes", *modes], tmp_path)
    data = _load(tmp_path, "train_step_vectors")
    assert list(data["modes"]) == modes and data["ratio_to"] == "baseline_novec"
    _run([BENCH / "train_memory.py", "--quick", "--train", bench_corpus / "train.spacy",
          "--vectors", sample_vectors_dir(), "--modes", "baseline", "baseline_trainonly"], tmp_path)
    memory = _load(tmp_path, "train_memory")
    assert set(memory["modes"]) == {"baseline", "baseline_trainonly"}
    assert all(m["peak_rss_mb"] > 0 and m["model_mb"] > 0 for m in memory["modes"].values())


def test_trf_memory_quick(tmp_path, bench_corpus):
    """The serving-memory bench runs end to end on a random 2-layer BERT:
    the default pipeline caches nothing at inference, cache_inference
    caches every sentence, and the tokenizer-alone control is reported."""
    pytest.importorskip("transformers")
    out = _run([BENCH / "trf_memory.py", "--quick", "--hidden", "32", "--corpus", bench_corpus], tmp_path)
    data = _load(tmp_path, "trf_memory")
    assert "beyond spaCy's vocabulary" in out
    results = data["results"]
    assert set(results) == {"default", "cache_inference", "tokenizer"}
    assert all(row["cached"] == 0 for row in results["default"]["rows"])
    last = results["cache_inference"]["rows"][-1]
    assert last["cached"] > 0 and last["sentences"] == data["sentences"]
    assert results["tokenizer"]["rows"][-1]["lexemes"] > results["tokenizer"]["rows"][0]["lexemes"]
    assert isinstance(data["default_growth_beyond_tokenizer_mb"], float)


def test_gpu_grid_script_parses_and_refuses_misuse(tmp_path):
    """bench/gpu_grid.sh is only run on a lent GPU (or with GPU_DRY=1 after
    `prepare`): here, its syntax and its refusals."""
    script = BENCH / "gpu_grid.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert usage.returncode == 2 and "prepare | run" in usage.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "GPU_DRY")}
    no_out = subprocess.run(["bash", str(script), "run"], capture_output=True, text=True, env=env)
    assert no_out.returncode != 0 and "OUT unset" in no_out.stderr
