#!/usr/bin/env bash
# Every GPU check and GPU figure of zoomsr in one run (about 8 minutes on one H100/H200):
#   bash benchmarks/gpu_suite.sh [OUT_DIR] [SECONDS]
# Steps (numbered as their "=== N." headers): 1. the machine, 2. the GPU-only tests (CLIPScore
# fp32/bf16/fp16 vs CPU, scene inference fp32/bf16 vs CPU, bf16 training), 3. scene inference
# throughput (full ESRGAN, 8 images, bf16 autocast) with the GPU's utilisation sampled each
# second, 4. the GeoTIFF writer's strips of 512 vs 256 rows, 5. the peak memory of
# scenes wider than one column strip (4096 and 8192 px), 6. every thread of one inference run
# sampled by py-spy (if installed), 7. a timeline of one run (py-spy), 8. ESRGAN training
# throughput (paper config, 8 images, bf16-mixed), 9. CLIPScore throughput, 10. freed blocks
# handed back, 11. 512 vs 256 px windows on the 8192 px scene, 12. the interpreter's switch
# interval (5 vs 1 ms), 13. a profile of one run, 14. column strips of 2048 px on 3856 px,
# 15. the CLI's default tiling and batch on 3856 px, 16. a row's files decoded by the read
# pool vs one at a time (the row's decode alone, then 3856 px runs alternating), 17. the
# output's DEFLATE level 6 (GDAL's default) vs 4 (the pipeline's), 18. 512 px windows on
# 3984 / 7952 px scenes (bare and pipelines), 19. CUDA graphs on vs off, 20. the GeoTIFF
# writer alone, 21. step 18 with inputs that have overviews, 22. 1024 px windows on 4048 /
# 8080 px scenes.
# The steps run in that order (most important first) and the whole suite stops within SECONDS
# (default 570, so that it fits one 10-minute device call with its start-up): a step that no
# longer has its usual time left is skipped, and says so. Each result is written to OUT_DIR
# (default: ./gpu-results) as it finishes. GPU_SUITE_STEPS="1 3 5" runs only those steps (by
# number, as "=== N." headers show them), for a call with less device time than the whole suite.
# On a lent GPU machine without zoomsr's other dependencies, first run
# `bash benchmarks/gpu_prepare.sh` here (wheels and the real scene to carry; it prints the call).
set -uo pipefail
out=${1:-gpu-results}
deadline=$((SECONDS + ${2:-570}))
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1  # a crash prints every thread's Python stack
py=${PYTHON:-python3}
scenes=$(mktemp -d)  # the generated scenes, made once for the throughput and py-spy steps
trap 'rm -rf "$scenes"' EXIT

# step NAME USUAL_SECONDS: prints a header and sets $limit (the usual time, or what is left);
# returns 1 (skip) when less than half the usual time is left, or the step is not in
# GPU_SUITE_STEPS.
n=0
step() {
  local left=$((deadline - SECONDS))
  n=$((n + 1))
  limit=$(( left < $2 ? left : $2 ))
  if [[ -n "${GPU_SUITE_STEPS:-}" && " $GPU_SUITE_STEPS " != *" $n "* ]]; then
    echo "=== $n. $1: not in GPU_SUITE_STEPS"; return 1; fi
  if (( left < $2 / 2 )); then echo "=== $n. $1: skipped, ${left} s left of the suite's time"; return 1; fi
  echo "=== $n. $1 ($(date +%T), up to ${limit} s)"
}

# alternate FILE OPTION "V1 V2": the 3856 px scene (8 windows a call), 3 rounds of runs with
# infer_throughput.py's OPTION set to each value in turn, their JSON lines appended to FILE;
# all within $limit seconds.
alternate() {
  timeout "$limit" bash -c "
    for i in 1 2 3; do
      for v in $3; do
        $py '$here/benchmarks/infer_throughput.py' --_child --device cuda --size 3856 \
            --pipeline-batch 8 --scene-dir '$scenes' $2 \$v 2>&1 | tail -1
      done
    done" | tee -a "$1"
}

# summary FILE LABEL: the medians of the runs (JSON lines of infer_throughput.py --_child) in
# FILE, appended to it.
summary() {
  $py -c '
import json, statistics, sys
runs = [json.loads(x) for x in open(sys.argv[1]) if x.startswith("{")]
if runs:
    rate = statistics.median(x["km2_per_s"] for x in runs)
    chunks = statistics.median(x["chunks_per_s"] for x in runs)
    rss = statistics.median(x["peak_rss_total_mb"] for x in runs)
    tail = statistics.median(x.get("phases", {}).get("output_finish", float("nan"))
                             for x in runs)
    print(f"{sys.argv[2]}: {len(runs)} runs, median {rate:.1f} km2/s, {chunks:.0f} chunks/s, "
          f"peak RSS {rss:.0f} MB, {tail:.2f} s waiting for the output at the end")
' "$1" "$2" 2>&1 | tee -a "$1"
}

# by_value FILE KEY LABEL: the medians of FILE's runs (as summary) for each value of their
# JSON key KEY, in the order the values first came, appended to FILE.
by_value() {
  $py -c '
import json, statistics, sys
runs = [json.loads(x) for x in open(sys.argv[1]) if x.startswith("{")]
for value in dict.fromkeys(x[sys.argv[2]] for x in runs):
    r = [x for x in runs if x[sys.argv[2]] == value]
    rate = statistics.median(x["km2_per_s"] for x in r)
    rss = statistics.median(x["peak_rss_total_mb"] for x in r)
    each = ", ".join("%.1f" % x["km2_per_s"] for x in r)
    tail = statistics.median(x.get("phases", {}).get("output_finish", float("nan")) for x in r)
    print(f"{sys.argv[3]} {value}: {len(r)} runs, median {rate:.1f} km2/s (runs {each}), "
          f"peak RSS {rss:.0f} MB, {tail:.2f} s waiting for the output at the end")
' "$1" "$2" "$3" 2>&1 | tee -a "$1"
}

# compare NAME OPTION "V1 V2" KEY LABEL: OUT/NAME.txt holds the alternating runs of the
# 3856 px scene with OPTION set to each value (alternate), then their medians per value of
# their JSON key KEY (by_value).
compare() {
  : > "$out/$1.txt"
  alternate "$out/$1.txt" "$2" "$3"
  by_value "$out/$1.txt" "$4" "$5"
}

# throughput NAME ARGS...: infer_throughput.py's whole measurement on the GPU (the bare model
# in batches of 512 chunks on its memory, 4 s a timing; the pipelines on the suite's scenes)
# with ARGS, within $limit seconds; its report in OUT/NAME.txt, its figures in OUT/NAME.json.
throughput() {
  local name=$1
  shift
  timeout "$limit" $py "$here/benchmarks/infer_throughput.py" --device cuda --batch 512 \
      --seconds 4 --scene-dir "$scenes" --save "$out/$name.json" "$@" 2>&1 \
      | tee "$out/$name.txt"
}

step machine 10 && { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, platform.python_version())"
  nproc; } 2>&1 | tee "$out/machine.txt"

step "GPU tests" 120 && (cd "$here" && timeout "$limit" $py -m pytest -q -p no:cacheprovider -rs \
    tests/metrics/test_clipscore.py tests/inference/test_infer_gpu.py tests/training/test_train_gpu.py \
    -k "gpu or cuda") 2>&1 | tee "$out/tests.txt"

# 1936 LR px a side (206 km2) and 3856 (818 km2): at ~60 km2/s the 52 km2 scene used before took
# 1 s, so start-up and the last row's tail weighed on it. Medians of 3. Default --threads (3 on
# a GPU). The bare rate is the model on inputs already on the GPU in batches of 512 chunks
# (until 2026-11-27: batches of 64 from and back to host memory, a weaker reference; on an H200
# batches of 64 ran at 50-74 % of 512's); also timed on the pipeline's own calls (8 windows of
# 256 px). --ceiling (the pipeline with a model that costs nothing) is left out for time: on
# 2026-11-27 it was 0.6x the bare rate.
if step "inference throughput" 240; then
  nvidia-smi dmon -s u -d 1 >"$out/gpu_utilisation.txt" 2>&1 &
  dmon=$!
  throughput infer --size 1936 --bare-window 256 --pipeline-batch 8 --repeats 3
  kill "$dmon" 2>/dev/null
fi

# The GeoTIFF writer thread's strips: 512 output rows at a time against 256 (the default,
# zoomsr.io.geotiff.STRIP). Each strip costs the writer calls that give up the interpreter lock
# and wait to take it back from the row threads (on a 2-core CPU beside a busy Python thread,
# uncompressed, 512 rows wrote 1.33x as fast as 256, for 34 MB more peak memory at 3856 px);
# the writer was what a GPU run waited for at its end (2026-11-27, before its own work beside
# a busy thread was cut 3x on the CPU). The 3856 px scene with each, alternating, 3 runs each. (The writer
# in a process of its own, step 4 until then, lost on the H200: 95.5 against 109.3 km2/s;
# ZOOMSR_GEOTIFF_WRITER=process still chooses it.)
if step "the GeoTIFF writer: 512 / 256-row strips (3856 px, 3 runs each)" 150; then
  compare infer_writer --writer-strip "512 256" writer_strip "writer strips (rows)"
fi

# Scenes wider than --column-width (default 4096 LR px) are processed in column strips, so
# their peak memory stops growing with the width: one run each of a 4096 px scene (one strip,
# 1604 km2) and an 8192 px one (three strips, 6417 km2: 4x the area), default options. The
# scenes are made first (one process per frame), outside the measured processes.
if step "memory beyond --column-width (4096 and 8192 px, one run each)" 150; then
  timeout "$limit" bash -c "
    $py -c 'import sys; sys.path.insert(0, \"$here/benchmarks\"); import infer_throughput as t;
from pathlib import Path; [t.scene(Path(\"$scenes\"), s, 8) for s in (4096, 8192)]' &&
    for size in 4096 8192; do
      $py '$here/benchmarks/infer_throughput.py' --_child --device cuda --size \$size \
          --pipeline-batch 8 --scene-dir '$scenes' 2>&1 | tail -1
    done" | tee "$out/infer_columns.txt"
  rm -rf "$scenes"/scene4096x8 "$scenes"/scene8192x8  # 2 GB of disk
fi

# Every thread of one run of the larger scene (3 row threads, the writer's compression threads),
# sampled by py-spy when it is installed (PYSPY, or py-spy on PATH), as raw stacks:
# `python benchmarks/spy_summary.py OUT/infer_spy.txt` says where each thread's time went.
spy=${PYSPY:-$(command -v py-spy)}
if step "every thread of one pipeline run (py-spy)" 60 \
    && { [[ -n "$spy" ]] || { echo "py-spy is not installed: not run"; false; }; }; then
  timeout "$limit" "$spy" record -r 200 --threads -f raw -o "$out/infer_spy.txt" -- \
      $py "$here/benchmarks/infer_throughput.py" --_child --device cuda --size 3856 \
      --pipeline-batch 8 --scene-dir "$scenes" 2>&1 | tail -3 | tee "$out/infer_spy_run.txt"
  $py "$here/benchmarks/spy_summary.py" "$out/infer_spy.txt" 2>&1 | tee "$out/infer_spy_summary.txt"
fi

# When each thread did what in one run (py-spy's Chrome trace, idle samples kept): how long
# before the first model call, the gaps with no model call, what the end waited for.
if step "timeline of one pipeline run (py-spy)" 45 \
    && { [[ -n "$spy" ]] || { echo "py-spy is not installed: not run"; false; }; }; then
  timeout "$limit" "$spy" record --idle -r 200 -f chrometrace -o "$out/infer_trace.json" -- \
      $py "$here/benchmarks/infer_throughput.py" --_child --device cuda --size 3856 \
      --pipeline-batch 8 --scene-dir "$scenes" 2>&1 | tail -3 | tee "$out/infer_trace_run.txt"
  # (the model call's frame: with CUDA graphs RRDBNet.forward runs only on a shape's first
  # call and its capture)
  $py "$here/benchmarks/spy_timeline.py" "$out/infer_trace.json" \
      --model InferenceModel.forward_device 2>&1 \
      | tee "$out/infer_timeline.txt" | head -150
fi

step "training throughput" 90 && timeout "$limit" $py "$here/benchmarks/train_throughput.py" \
    --mode gpu --steps 40 --warmup 10 2>&1 | tee "$out/train.txt"

# 45 s was too short on 2026-11-27 (killed with no output): the imports and the model build
step "CLIPScore throughput" 90 && timeout "$limit" $py \
    "$here/benchmarks/clipscore_throughput.py" --device cuda --pairs 64 2>&1 \
    | tee "$out/clipscore.txt"

# Diagnostics whose conclusions are in the docs already (run when time is left).
# Peak host memory of the two scenes with glibc handing large freed blocks back at once: if the
# 4x / 1x ratio drops well below the throughput step's, freed temporaries kept in the threads'
# heaps are part of the growth.
if step "peak memory, large blocks handed back (MALLOC_MMAP_THRESHOLD_)" 40; then
  for size in 1936 3856; do
    MALLOC_MMAP_THRESHOLD_=1048576 timeout "$limit" $py "$here/benchmarks/infer_throughput.py" \
        --_child --device cuda --size "$size" --pipeline-batch 8 --scene-dir "$scenes" 2>&1 \
        | tail -1
  done | tee "$out/infer_mmap_threshold.txt"
fi

# Larger windows on a large scene (8192 px: a side is not a whole number of steps for either,
# as with real scenes): 256 px windows with a 16 px overlap compute 19.6 % more pixels than
# the scene holds there, 512 px windows 12.9 %, so 512 px windows could lift the 88.6 % bound
# the overlaps set (docs/inference.md "GPU"). One run each, default window first.
if step "larger windows on the 8192 px scene (256 and 512 px)" 120; then
  for wb in 256:8 512:2; do
    timeout "$limit" $py "$here/benchmarks/infer_throughput.py" --_child --device cuda \
        --size 8192 --window "${wb%:*}" --pipeline-batch "${wb#*:}" --scene-dir "$scenes" 2>&1 \
        | tail -1
  done | tee "$out/infer_windows.txt"
  rm -rf "$scenes"/scene8192x8
fi

# The interpreter lock: the row threads launch the model's kernels in Python while the writer
# thread needs the lock between GDAL calls (on the CPU the writer ran 6x slower beside one
# thread of pure Python; 1.7x since the fourth session of 2026-11-27). The 3856 px scene with
# Python's default switch interval (5 ms) and with 1 ms, alternating, 3 runs each.
if step "switch interval 5 ms / 1 ms (3856 px, 3 runs each)" 150; then
  compare infer_switch --switch-interval "0.005 0.001" switch_interval "switch interval (s)"
fi

step "where the pipeline time goes" 60 && timeout "$limit" $py \
    "$here/benchmarks/infer_profile.py" --device cuda --size 976 --threads 1 2>&1 \
    | tee "$out/infer_profile.txt"

# Narrower column strips: rows in flight as wide as the strip are what a scene's peak memory
# grows with (on the CPU's fake of the GPU path, 3856 px in strips of 2048 px: 1010 MB vs
# 1129 MB in one strip, as much as the 1936 px scene's 982; same time). But the windows on a
# strip border are computed twice (one window column in 16 here), so on a GPU it costs
# speed; the row threads no longer pause between strips. The 3856 px scene in strips of
# 2048 px, 3 runs: compare with step 4's 512-row runs (the default, one strip) and with
# step 3's 1936 px scene (the 4x ratio).
if step "column strips of 2048 px on the 3856 px scene (3 runs)" 90; then
  timeout "$limit" bash -c "
    for i in 1 2 3; do
      $py '$here/benchmarks/infer_throughput.py' --_child --device cuda --size 3856 \
          --pipeline-batch 8 --scene-dir '$scenes' --column-width 2048 2>&1 | tail -1
    done" | tee "$out/infer_strips2048.txt"
  summary "$out/infer_strips2048.txt" "column width 2048"
fi

# The CLI's own defaults on a GPU (zoomsr infer with no tiling options: an automatic window
# among 128-512 px, a 32 px overlap, --batch-size 32 counted in 128 px windows), which every
# figure above departs from (256 px windows, 16 px overlap, 8 a call): the 3856 px scene,
# 3 runs; compare with step 3's bare rate.
if step "the CLI defaults (automatic window, 32 px overlap, batch 32) on 3856 px (3 runs)" 90; then
  timeout "$limit" bash -c "
    for i in 1 2 3; do
      $py '$here/benchmarks/infer_throughput.py' --_child --device cuda --size 3856 \
          --window auto --overlap 32 --pipeline-batch 32 --scene-dir '$scenes' 2>&1 | tail -1
    done" | tee "$out/infer_cli_defaults.txt"
  summary "$out/infer_cli_defaults.txt" "CLI defaults"
fi

# A row's files were decoded one after the other by its row thread (what the first model call
# waited for: py-spy put +0.9 .. +1.49 s of the start in the first row); the read pool decodes
# them at once (reader.READ_THREADS). The decode of one row alone, then the 3856 px scene with
# --read-threads 1 (as before) and the default, alternating, 3 runs each.
if step "read pool vs one file at a time (row decode; 3856 px, 3 runs each)" 120; then
  started=$SECONDS
  timeout "$limit" $py "$here/benchmarks/infer_read.py" --size 3856 --images 8 --window 256 \
      --rows 2 --repeats 5 --scene-dir "$scenes" 2>&1 | tee "$out/infer_read_pool.txt"
  limit=$((limit - (SECONDS - started)))  # the step's time, shared with the runs
  alternate "$out/infer_read_pool.txt" --read-threads "1 16"
  by_value "$out/infer_read_pool.txt" read_threads "read threads"
fi

# The output's DEFLATE level: GDAL's default, 6, against the pipeline's, 4
# (zoomsr.io.deflate.DEFLATE_LEVEL since 2026-11-27: on the CPU, the writer alone on
# Real-ESRGAN output, level 6 took 3.3x as long as 4 for a 7 % smaller file; on a GPU the
# writer's compression is what a run waited for at its end; every run before used 6). The
# 3856 px scene with each, alternating, 3 runs each.
if step "DEFLATE level 6 / 4 (3856 px, 3 runs each)" 150; then
  compare infer_deflate --deflate-level "6 4" deflate_level "DEFLATE level"
fi

# The done-when's measurement at a geometry whose overlaps cost little: 512 px windows
# overlapping by 16 px (6.5 % more pixels computed than the scene holds, against 12.8 % for
# 256 px ones), 2 a call (512 chunks' worth, as the bare model's batches), on scenes of 3984
# and 7952 LR px (813 and 3240 km2 at this latitude; both 8 and 16 whole steps of 496 px):
# the bare model, both pipelines (the 4x scene in two column strips, the default), the bare
# model again; 2 repeats. Then the 4x scene once more in one strip (--column-width 8192: no
# window column computed twice, the rows in flight as wide as the scene). On the H200
# (2026-11-28, medians of 2): 57.4 % / 67.7 % of the bare model, peak RSS x1.019.
if step "512 px windows on 3984 / 7952 px scenes (bare, pipelines; 2 repeats)" 240; then
  throughput infer_512 --size 3984 --window 512 --overlap 16 --pipeline-batch 2 --repeats 2
  timeout "$((limit / 4))" $py "$here/benchmarks/infer_throughput.py" --_child --device cuda \
      --size 7952 --window 512 --overlap 16 --pipeline-batch 2 --column-width 8192 \
      --scene-dir "$scenes" 2>&1 | tail -1 | tee -a "$out/infer_512.txt"
  rm -rf "$scenes"/scene7952x8 "$scenes"/scene3984x8
fi

# The model's forward replayed from CUDA graphs (one launch a call: zoomsr.inference.graphs,
# ZOOMSR_CUDA_GRAPHS=1) against launched kernel by kernel (the default), the 3856 px
# scene, alternating, 3 runs each (2026-11-28, 2 runs each: the same speed, 20 % less peak
# GPU memory).
if step "CUDA graphs on / off (3856 px, 3 runs each)" 150; then
  compare infer_graphs --cuda-graphs "on off" cuda_graphs "CUDA graphs"
fi

# The GeoTIFF writer alone on this machine (GDAL compresses on its cores; the rows come from
# a raw file written beforehand): on the H200 (2026-11-28) the writer thread fell behind the
# rows all along and the run waited for it at the end. The model makes about 161 MB/s of RGB
# output there (3486 chunks/s of 128 x 128 output px, 6.5 % of them overlaps at 512 px
# windows): a writer slower than that alone is the limit. 15936 px wide strips (the 3984 px
# scene's output), DEFLATE 4 (the default) and 1, then uncompressed; medians of 3.
if step "the GeoTIFF writer alone (15936 x 4096 px: DEFLATE 4 / 1, uncompressed)" 60; then
  timeout "$limit" bash -c "
    $py '$here/benchmarks/writer_throughput.py' --width 15936 --height 4096 --repeats 3 \
        --deflate-level 4 1
    $py '$here/benchmarks/writer_throughput.py' --width 15936 --height 4096 --repeats 3 \
        --no-compress" 2>&1 | tee "$out/writer_alone.txt"
fi

# Step 18 again with inputs that have overviews, as the Sentinel-2 COGs of the cloud
# archives do: discovery's decimated look at a file without them decodes the whole file
# (growing with the area: benchmarks/discovery_time.py, 2-core CPU, medians of 5: 0.238 s
# without and 0.086 s with at 1936 px, 0.591 s and 0.087 s at 3984 px). Bare model, both
# pipelines, 2 repeats.
if step "512 px windows, inputs with overviews, 3984 / 7952 px (2 repeats)" 240; then
  throughput infer_512ov --size 3984 --window 512 --overlap 16 --pipeline-batch 2 \
      --repeats 2 --input-overviews
  rm -rf "$scenes"/scene7952x8ov "$scenes"/scene3984x8ov
fi

# Windows of 1024 px overlapping by 16 px compute 3.2 % more pixels than the scene holds
# (512 px: 6.5 %): on scenes of 4048 and 8080 LR px (4 and 8 whole steps of 1008 px), one
# window a call (1024 chunks' worth), the bare model and both pipelines, 2 repeats. At 85 %
# of the bare rate the 8080 px scene leaves 2.5 s for everything but the model (512 px
# windows on 7952 px: 1.9 s). Rows in flight are 4096 output rows tall: more host memory.
if step "1024 px windows on 4048 / 8080 px scenes (bare, pipelines; 2 repeats)" 240; then
  throughput infer_1024 --size 4048 --window 1024 --overlap 16 --pipeline-batch 1 \
      --repeats 2
  rm -rf "$scenes"/scene8080x8 "$scenes"/scene4048x8
fi

echo "=== done ($(date +%T), $((deadline - SECONDS)) s of the suite's time left)"
