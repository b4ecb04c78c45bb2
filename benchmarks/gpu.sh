#!/usr/bin/env bash
# Training and serving benchmarks on a CUDA GPU in one call (bf16), for a GPU machine with no package index and no
# model hub. Random weights of the embedded model's shape (and of SmolLM2-1.7B's) stand in for the real ones.
#   bash benchmarks/gpu.sh prepare   here, with the project set up: the embedded model's config and tokenizer into
#                                    .gpu/, and wheels (pinned by constraints.txt, for the GPU machine's Python, PY_TAG)
#                                    of what its image lacks into .whl/; both ignored by git, about 30 MB
#   bash benchmarks/gpu.sh           there, from the repository root with .gpu and .whl carried; the figures and logs
#                                    land in $OUT (default /tmp/gpu-bench); about 8 minutes on an H200
set -u
if [ "${1:-}" = prepare ]; then
  .venv/bin/python benchmarks/random_model.py smollm2-135m .gpu/smollm2-135m && rm .gpu/smollm2-135m/model.safetensors
  # the GPU image has torch, accelerate, numpy, pandas, pyarrow, safetensors, tokenizers, yaml, tqdm, jinja2, httpx;
  # annotune's CLI, its server and the TRL comparison need these too
  names="pydantic pydantic_core annotated-types typing-inspection typing_extensions fastapi starlette uvicorn httptools
    python-multipart opentelemetry-api SQLAlchemy argon2-cffi argon2-cffi-bindings cffi pycparser sniffio trl datasets
    dill multiprocess transformers peft tokenizers"
  pins=$(for n in $names; do grep -i -E "^$n==" constraints.txt; done)
  rm -rf .whl && .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${PY_TAG:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
  exit
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 ANNOTUNE_HOME=/tmp/annotune-home
OUT=${OUT:-/tmp/gpu-bench}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, peft, trl; print('torch', torch.__version__, 'transformers', transformers.__version__,
'peft', peft.__version__, 'trl', trl.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: one benchmark, its log in $OUT, bounded in time, later steps run anyway
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T))"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -n 14 "$OUT/$name.log"; echo "=== $name: exit $rc"
}

M=/tmp/models
step model-135m 120 $PY benchmarks/random_model.py .gpu/smollm2-135m $M/smollm2-135m
step train-135m 300 $PY benchmarks/train_throughput.py --model $M/smollm2-135m --epochs 3 --batch-size 8 \
  --precision bf16 --json "$OUT/train-135m.json"
step serve-135m 120 $PY benchmarks/serve.py --model $M/smollm2-135m --dtype bf16 --levels 1,4,8,16 \
  --out "$OUT/serve-135m.json"
step model-1.7b 120 $PY benchmarks/random_model.py .gpu/smollm2-135m $M/smollm2-1.7b --set hidden_size=2048 \
  --set intermediate_size=8192 --set num_hidden_layers=24 --set num_attention_heads=32 --set num_key_value_heads=32
step train-1.7b 200 $PY benchmarks/train_throughput.py --model $M/smollm2-1.7b --epochs 3 --batch-size 8 \
  --precision bf16 --json "$OUT/train-1.7b.json"
step serve-1.7b 150 $PY benchmarks/serve.py --model $M/smollm2-1.7b --dtype bf16 --levels 1,8,16 \
  --out "$OUT/serve-1.7b.json"
