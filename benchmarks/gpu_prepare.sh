#!/usr/bin/env bash
# Prepares a checkout for the GPU suite on a lent GPU machine that has torch but not the rest
# of zoomsr's dependencies and cannot reach a package registry: downloads the missing wheels
# into .whl/ (for the machine's Python, 3.12) and copies the real Sentinel-2 scene the suite
# reads into .gpushared/; both are kept out of git (.git/info/exclude) and travel as carried
# paths. Then prints the command to run there.
#
#   bash benchmarks/gpu_prepare.sh [SHARED]   # SHARED: the shared folder (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared}"
scene="$shared/data/real/sentinel2-l2a-29RKH"

# the wheels the GPU machine lacks, at versions tested with this checkout
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform any -d .whl \
  rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2 mercantile==1.2.1 \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 lpips==0.1.4 py-spy==0.4.3

if [[ -d "$scene" ]]; then
  rm -rf .gpushared && cp -r "$scene" .gpushared
else
  echo "gpu_prepare: $scene not found: the suite's real-scene steps will say so" >&2
fi

exclude=.git/info/exclude
if [[ -d .git ]]; then
  mkdir -p .git/info
  for p in /.whl/ /.gpushared/; do
    grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >> "$exclude"
  done
fi

echo "$(ls .whl/*.whl | wc -l) wheels in .whl/. On the GPU machine (carry [\".whl\", \".gpushared\"]):"
cat <<'EOF'
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src || exit 3; (mkdir -p ../shared/data/real && cp -r .gpushared ../shared/data/real/sentinel2-l2a-29RKH); GPU_SUITE_STEPS="1 2 20 21 22" PYSPY=/tmp/site/bin/py-spy bash benchmarks/gpu_suite.sh $OUT 560
EOF
