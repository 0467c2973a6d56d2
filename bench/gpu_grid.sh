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
#       bash bench/gpu_grid.sh run
#    - installs the wheels into /tmp/site, writes the vectors directory;
#    - smoke test: nvidia-smi, torch sees the GPU, 30 training steps with
#      --gpu-id 0 and a prediction;
#    - times 200 steps of baseline/AT/MAT (bench/train_step.py --gpu-id 0);
#    - then runs as many Table-1 runs as fit in GPU_GRID_SECONDS (default
#      330 s) as GPU_PARALLEL (default 8) parallel `spacy_mat.experiments`
#      shards on the one GPU (small runs share it), budget GPU_EPOCHS epochs
#      (default 10, the CPU grid's), seeds GPU_SEEDS (default "0 1 2");
#    - packs every finished run's result.json and logs (no models) into
#      $OUT/gpu_runs.tar.gz with the timings and the log.
# 3. Here: tar -xzf <files_at>/gpu_runs.tar.gz -C . && \
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
    : "${OUT:?run this through the device tool (OUT unset)}"
    local log="$OUT/gpu_grid.log" start
    start=$(date +%s)
    exec > >(tee "$log") 2>&1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 - <<'EOF'
import numpy as np
import torch
from pathlib import Path

from spacy_mat.vectors import write_vectors

assert torch.cuda.is_available(), "no GPU visible to torch"
print("torch", torch.__version__, torch.cuda.get_device_name(0))
words = Path(".gpu/glove50.words").read_text(encoding="utf8").split("\n")[:-1]
rows, width = write_vectors(words, np.load(".gpu/glove50.npy").astype(np.float32),
                            Path("vectors/glove-6b-50d-gpu"))
print(f"vectors: {rows:,} x {width}")
EOF
    echo "== smoke test: 30 steps on the GPU"
    python3 -m spacy train configs/ner_mat_similarity.cfg --output /tmp/smoke --gpu-id 0 \
        --paths.train .gpu/corpus/ner/train.spacy --paths.dev .gpu/corpus/ner/dev.spacy \
        --paths.vectors vectors/glove-6b-50d-gpu --training.max_steps 30 \
        --training.eval_frequency 30 --corpora.dev.limit 200
    python3 -c "import spacy, spacy_mat; spacy.prefer_gpu(0); nlp = spacy.load('/tmp/smoke/model-best'); print([(e.text, e.label_) for e in nlp('Angela Merkel met Emmanuel Macron in Paris .').ents])"
    echo "== 200 steps of baseline / AT / MAT"
    SPACY_MAT_BENCH_RESULTS="$OUT" python3 bench/train_step.py --gpu-id 0 --steps 200 --warmup 5 \
        --train .gpu/corpus/ner/train.spacy --vectors vectors/glove-6b-50d-gpu \
        --modes baseline at mat_similarity
    echo "== grid: ${GPU_PARALLEL:-8} parallel shards for ${GPU_GRID_SECONDS:-330} s"
    local n="${GPU_PARALLEL:-8}" i pids=()
    for i in $(seq 1 "$n"); do
        timeout "${GPU_GRID_SECONDS:-330}" python3 -m spacy_mat.experiments \
            --rows ${GPU_ROWS:-baseline at mat_similarity at_noadv} --tasks ${GPU_TASKS:-chunk ner} \
            --seeds ${GPU_SEEDS:-0 1 2} --data-dir .gpu/corpus --output runs_gpu \
            --results /tmp/results_$i --max-epochs "${GPU_EPOCHS:-10}" --gpu-id 0 --threads 1 \
            --vectors vectors/glove-6b-50d-gpu --shard "$i/$n" > "/tmp/shard_$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    tail -n 3 /tmp/shard_*.log
    find runs_gpu -name result.json | sort
    tar -czf "$OUT/gpu_runs.tar.gz" --exclude='model-*' runs_gpu /tmp/shard_*.log 2>/dev/null || true
    echo "total $(( $(date +%s) - start )) s"
}

case "$MODE" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: bash bench/gpu_grid.sh prepare | run   (see the header)" >&2; exit 2 ;;
esac
