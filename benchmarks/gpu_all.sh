#!/usr/bin/env bash
# All GPU benchmarks in one call, for a lent machine with one NVIDIA GPU, its own python3 (torch, transformers,
# peft, accelerate) and no network: a machine start costs minutes, so one prepared script runs everything, each
# benchmark under its own timeout and all of them under one deadline (the call must return with its output, not be
# killed with it). Packages the machine lacks (diffusers, trl, datasets, bitsandbytes, pydantic, ...) come as wheels.
#
#   benchmarks/gpu_all.sh [WHEEL_DIR] [OUT_DIR] [TOTAL_SECONDS]
#
# WHEEL_DIR: cp312 manylinux wheels installed into $SITE (/tmp/site) (default .whl; skipped when empty or absent).
# OUT_DIR: one log per benchmark plus all.log (default $OUT, else /tmp/gpu-out). TOTAL_SECONDS: the deadline (450).
# Run from the repository root. gpu_scale.py is not run here: it needs two or more GPUs.
set -u
WHL=${1:-.whl}
OUT_DIR=${2:-${OUT:-/tmp/gpu-out}}
TOTAL=${3:-450}
SITE=${SITE:-/tmp/site}
DEADLINE=$(( $(date +%s) + TOTAL ))
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/all.log") 2>&1

# nothing can be downloaded there: fail fast instead of waiting for hub time-outs; no progress bars in the logs
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
       TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export PYTHONPATH=$PWD
if compgen -G "$WHL/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHL"/*.whl \
    || echo "WARNING: the wheels did not all install"
  export PYTHONPATH=$SITE:$PWD
fi
# WHEEL_DIR/fallback/NAME-*.whl: installed only where the machine's NAME is missing or older than pyproject's minimum
for wheel in "$WHL"/fallback/*.whl; do
  [[ -e $wheel ]] || continue
  name=$(basename "$wheel" | cut -d- -f1)
  minimum=$(grep -oP "^\s*\"$name>=\K[0-9.]+" pyproject.toml | head -1)
  if ! python3 -c "import importlib.metadata as md, sys; from packaging.version import Version as V
sys.exit(V(md.version('$name')) < V('${minimum:-0}'))" 2>/dev/null; then
    echo "the machine's $name is missing or older than ${minimum:-any}: installing $(basename "$wheel")"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$wheel"
    export PYTHONPATH=$SITE:$PWD
  fi
done

echo "=== environment $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'EOF'
import importlib.metadata as md
import sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "diffusers", "bitsandbytes",
             "safetensors", "tokenizers", "huggingface_hub", "pydantic"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} MISSING")
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available())
EOF

# bench NAME TIMEOUT COMMAND...: runs under min(TIMEOUT, time left), its output into OUT_DIR/NAME.log too
bench() {
  local name=$1 limit=$2 left started rc
  shift 2
  left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then
    echo "=== $name: skipped, ${left} s left before the deadline"
    return
  fi
  echo "=== $name (timeout ${limit} s): $*"
  started=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc ($([[ $rc == 124 || $rc == 137 ]] && echo 'TIMED OUT, ')$(( $(date +%s) - started )) s)"
}

bench text 180 python3 benchmarks/gpu_train_text.py --modes lora,qlora,dpo
bench text_grpo 200 python3 benchmarks/gpu_train_text.py --modes grpo --steps 4  # generation-bound: 10 steps took over 100 s on an H200
bench image_sd15 80 python3 benchmarks/gpu_train_image.py --size sd15
bench image_sdxl 100 python3 benchmarks/gpu_train_image.py --size sdxl --resolution 1024 --batch-size 1 \
  --gradient-checkpointing
bench audio 120 python3 benchmarks/gpu_train_audio.py
bench warm_fork 90 python3 benchmarks/gpu_warm_fork.py  # last: only if time is left
echo "=== done $(date -u +%FT%TZ)"
