#!/usr/bin/env bash
# Every GPU check and GPU figure of zoomsr in one run (about 8 minutes on one H100/H200):
#   bash benchmarks/gpu_suite.sh OUT_DIR
# 1. the GPU-only tests (CLIPScore fp32/bf16/fp16 vs CPU, scene inference fp32/bf16 vs CPU,
#    bf16 training), 2. scene inference throughput (full ESRGAN, 8 images, bf16 autocast),
# 3. ESRGAN training throughput (paper config, 8 images, bf16-mixed), 4. CLIPScore throughput,
# 5. a profile of one inference run (what the pipeline spends besides the model).
# Each result is written to OUT_DIR (default: ./gpu-results) as it finishes.
set -uo pipefail
out=${1:-gpu-results}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
step() { echo "=== $1 ($(date +%T))"; }

step machine
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, platform.python_version())"
  nproc; } 2>&1 | tee "$out/machine.txt"

step "GPU tests"
(cd "$here" && timeout 150 $py -m pytest -q -p no:cacheprovider -rs \
    tests/metrics/test_clipscore.py tests/inference/test_infer_gpu.py tests/training/test_train_gpu.py \
    -k "gpu or cuda") 2>&1 | tee "$out/tests.txt"

step "inference throughput"
# 1936 LR px a side (206 km2) and 3856 (818 km2): at ~60 km2/s the 52 km2 scene used before took
# 1 s, so start-up and the last row's tail weighed on it. Medians of 3; the zero-cost model
# shows the ceiling the CPU side allows. Default --threads (3 on a GPU).
timeout 420 $py "$here/benchmarks/infer_throughput.py" --device cuda --size 1936 --batch 64 \
    --pipeline-batch 8 --seconds 5 --repeats 3 --ceiling 2>&1 | tee "$out/infer.txt"

step "training throughput"
timeout 150 $py "$here/benchmarks/train_throughput.py" --mode gpu --steps 40 --warmup 10 2>&1 \
    | tee "$out/train.txt"

step "CLIPScore throughput"
timeout 60 $py "$here/benchmarks/clipscore_throughput.py" --device cuda --pairs 64 2>&1 \
    | tee "$out/clipscore.txt"
step "where the pipeline time goes"
timeout 90 $py "$here/benchmarks/infer_profile.py" --device cuda --size 976 --threads 1 2>&1 \
    | tee "$out/infer_profile.txt"
step done
