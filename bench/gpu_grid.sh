#!/usr/bin/env bash
# Table-1 runs on a lent GPU (the `device` tool: one H200, ~15 minutes per task).
#
# 1. Here, on the CPU machine, once:   bash bench/gpu_grid.sh prepare
#    - wheels for the GPU machine's Python 3.12 (spacy, thinc and the deps its
#      image lacks; spacy_mat itself) in .whl/ (pure-Python spacy_mat wheel
#      built from this checkout). That machine already has torch (CUDA),
#      CuPy, numpy, pyarrow: nothing here pins them.
#    - the converted corpora in .gpu/corpus/ and GloVe 6B 50-d in .gpu/ as
#      float16 (the 76 MB package does not fit the 64 MiB working-tree limit:
#      the GPU_VECTOR_ROWS most frequent GloVe words, default 150,000, plus
#      every word of the corpora that GloVe has; the runs record
#      "glove-6b-50d-gpu" as their vectors so the summary keeps them apart).
#    Both folders are ignored by git (.git/info/exclude) and travel with
#    `carry: [".whl", ".gpu"]`.
# 2. On the GPU, through the device tool's run (one call, timeout_s 590):
#       GPU_DEADLINE=540 bash bench/gpu_grid.sh run
#    - installs the wheels into /tmp/site, writes the vectors directory;
#    - smoke test: nvidia-smi, torch sees the GPU, 30 training steps with
#      --gpu-id 0 and a prediction;
#    - times 200 steps of baseline/AT/MAT (bench/train_step.py --gpu-id 0);
#    - then the grid until GPU_DEADLINE seconds after the start (default 510):
#      one process per (row, seed) of GPU_ROWS (default "baseline at
#      mat_similarity") x GPU_SEEDS (default "0 1 2 3 4"), all at once on the
#      one GPU (small runs share it), each training its chunking run and then
#      its NER run with the CPU grid's budget: GPU_EPOCHS epochs (default 10),
#      patience 620 / 1,100 steps. Runs unfinished at the deadline are lost;
#    - packs every finished run's result.json and logs (no models) and the
#      process logs into $OUT/gpu_runs.tar.gz, with the timings and the log.
#    Before spending device time on it, the same steps run on this machine's
#    CPU with a tiny budget (no install, no GPU; output in /tmp/gpu_grid_dry):
#       GPU_DRY=1 PYTHON=.venv/bin/python GPU_ROWS=baseline GPU_SEEDS="0 1" \
#           GPU_DEADLINE=900 bash bench/gpu_grid.sh run
# 3. Here: tar -xzf <files_at>/gpu_runs.tar.gz -C . runs_gpu && \
#       python -m spacy_mat.experiments --summary-only --output runs_gpu --results results/gpu
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-}"
GPU_VECTOR_ROWS="${GPU_VECTOR_ROWS:-150000}"

prepare() {
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
    rm -rf .whl .gpu && mkdir -p .whl .gpu
    local plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
                --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    # what spacy 3.8 / thinc 8.3 need beyond the GPU image (torch, numpy, typer,
    # requests, tqdm, jinja2, packaging, wrapt, ... are there)
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp "${plat[@]}" -d .whl \
        "spacy==3.8.*" "thinc==8.3.*" "blis==1.3.*" "cymem<2.1" "preshed<3.1" \
        "murmurhash<1.1" "srsly<3" "marisa-trie" "pydantic-core"
    python -m pip download -q --no-deps --only-binary=:all: -d .whl \
        spacy-legacy spacy-loggers wasabi catalogue confection weasel "pydantic>=2,<3" \
        annotated-types typing-inspection langcodes language-data smart-open cloudpathlib
    rm -f .whl/language_data-*.whl  # langcodes' optional name data: not needed
    python -m pip wheel -q --no-deps --no-build-isolation -w .whl .
    python bench/strip_wheels.py .whl  # debug symbols off the compiled wheels (spacy: 35 -> ~9 MB)
    python - "$GPU_VECTOR_ROWS" <<'EOF'
import sys
from pathlib import Path

import numpy as np
import spacy
from spacy.tokens import DocBin

from spacy_mat.vectors import read_glove_package

top = int(sys.argv[1])
words, vectors = read_glove_package()
corpus_words = set()
nlp = spacy.blank("en")
for path in Path("corpus").glob("*/*.spacy"):
    for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
        corpus_words.update(t.text.lower() for t in doc)
keep = [i for i, w in enumerate(words) if i < top or w in corpus_words]
np.save(".gpu/glove50.npy", vectors[keep].astype(np.float16))
Path(".gpu/glove50.words").write_text("\n".join(words[i] for i in keep) + "\n", encoding="utf8")
print(f"GloVe rows carried: {len(keep):,} of {len(words):,}")
EOF
    mkdir -p .gpu/corpus && cp -r corpus/ner corpus/chunk .gpu/corpus/
    du -sh .whl .gpu
}

run() {
    # GPU_DRY=1: the same steps on this machine's CPU with a tiny budget (checks
    # the script before device time is spent on it; no install, no GPU).
    local dry="${GPU_DRY:-}" gpu=0 py=python3
    if [[ -n "$dry" ]]; then gpu=-1; py="${PYTHON:-python}"; OUT="${OUT:-/tmp/gpu_grid_dry}"; mkdir -p "$OUT"; fi
    : "${OUT:?run this through the device tool (OUT unset)}"
    local log="$OUT/gpu_grid.log" start deadline
    start=$(date +%s)
    deadline=$(( start + ${GPU_DEADLINE:-510} ))  # the grid stops here (the call's timeout_s minus the packing)
    exec > >(tee "$log") 2>&1
    export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
    if [[ -z "$dry" ]]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    fi
    GPU_ID=$gpu $py - <<'EOF2'
import os
from pathlib import Path

import numpy as np
import torch

from spacy_mat.vectors import write_vectors

if int(os.environ["GPU_ID"]) >= 0:
    assert torch.cuda.is_available(), "no GPU visible to torch"
    print("torch", torch.__version__, torch.cuda.get_device_name(0))
words = Path(".gpu/glove50.words").read_text(encoding="utf8").split("\n")[:-1]
rows, width = write_vectors(words, np.load(".gpu/glove50.npy").astype(np.float32),
                            Path("vectors/glove-6b-50d-gpu"))
print(f"vectors: {rows:,} x {width}")
EOF2
    local smoke_steps=30 bench_steps=200 budget=(--max-epochs "${GPU_EPOCHS:-10}")
    if [[ -n "$dry" ]]; then smoke_steps=4; bench_steps=3; budget=(--max-steps 6); fi
    echo "== smoke test: $smoke_steps steps (--gpu-id $gpu) and a prediction"
    $py -m spacy train configs/ner_mat_similarity.cfg --output /tmp/smoke --gpu-id $gpu \
        --paths.train .gpu/corpus/ner/train.spacy --paths.dev .gpu/corpus/ner/dev.spacy \
        --paths.vectors vectors/glove-6b-50d-gpu --training.max_steps $smoke_steps \
        --training.eval_frequency $smoke_steps --corpora.dev.limit 200
    $py -c "import spacy, spacy_mat; spacy.prefer_gpu($gpu) if $gpu >= 0 else None; nlp = spacy.load('/tmp/smoke/model-best'); print([(e.text, e.label_) for e in nlp('Angela Merkel met Emmanuel Macron in Paris .').ents])"
    echo "== $bench_steps steps of baseline / AT / MAT"
    SPACY_MAT_BENCH_RESULTS="$OUT" $py bench/train_step.py --gpu-id $gpu --steps $bench_steps --warmup 5 \
        --train .gpu/corpus/ner/train.spacy --vectors vectors/glove-6b-50d-gpu \
        --modes baseline at mat_similarity
    # The grid: one process per (row, seed), all at once on the one GPU; each
    # trains its chunking run, then its NER run, with the CPU grid's budget
    # (GPU_EPOCHS epochs, patience 620 / 1,100 steps). What is not finished at
    # the deadline is stopped and lost; what finished comes back.
    local rows=(${GPU_ROWS:-baseline at mat_similarity}) seeds=(${GPU_SEEDS:-0 1 2 3 4})
    local seconds=$(( deadline - $(date +%s) )) row seed pids=()
    echo "== grid: ${#rows[@]} rows x ${#seeds[@]} seeds = $(( ${#rows[@]} * ${#seeds[@]} )) processes, chunk then ner, ${seconds} s"
    for seed in "${seeds[@]}"; do
        for row in "${rows[@]}"; do
            timeout "$seconds" bash -c '
                for spec in "chunk 620" "ner 1100"; do
                    set -- $spec
                    '"$py"' -m spacy_mat.experiments --tasks $1 --rows '"$row"' --seeds '"$seed"' \
                        --data-dir .gpu/corpus --output runs_gpu --results /tmp/results_'"${row}_$seed"' \
                        --patience $2 --gpu-id '"$gpu"' --threads 1 --vectors vectors/glove-6b-50d-gpu '"${budget[*]}"' || exit
                done' > "/tmp/shard_${row}_$seed.log" 2>&1 &
            pids+=($!)
        done
    done
    local pid
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    tail -n 2 /tmp/shard_*.log
    find runs_gpu -name result.json | sort
    echo "finished runs: $(find runs_gpu -name result.json | wc -l)"
    mkdir -p /tmp/pack && cp /tmp/shard_*.log /tmp/pack/ 2>/dev/null || true
    tar -czf "$OUT/gpu_runs.tar.gz" --exclude='model-*' runs_gpu -C /tmp pack 2>/dev/null || true
    echo "total $(( $(date +%s) - start )) s"
}

case "$MODE" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_grid.sh prepare | run   (see the header)" >&2; exit 2 ;;
esac
