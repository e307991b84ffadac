#!/usr/bin/env bash
# OpenBLAS SGEMM beside our CPU matmul in one run (bench kernels --op matmul --version all), the same protocol:
# median of event-timed runs after warm-up, caches flushed before each. A benchmark command only: it names the real
# core for OpenBLAS (OPENBLAS_CORETYPE, SkylakeX where AVX-512 is present; its auto-detection picks Prescott here).
# Usage: bench/baselines/run-openblas-sgemm.sh [REPEATS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-20}
rounds=${2:-3}
# awk reads to the end: exiting at the first match made ldconfig die of SIGPIPE, which pipefail turned into exit 141.
lib=$(ldconfig -p | awk '/libopenblas\.so\.0 / && !found {print $NF; found = 1}')
[ -n "$lib" ] || { echo "run-openblas-sgemm: libopenblas0 is not installed (apt-get install libopenblas0-pthread)" >&2; exit 1; }
mkdir -p out/baselines
gcc -O2 -o out/baselines/openblas_sgemm bench/baselines/openblas_sgemm.c "$lib"
grep -qw avx512f /proc/cpuinfo && core=${OPENBLAS_CORETYPE:-SkylakeX} || core=${OPENBLAS_CORETYPE:-Haswell}
./build.sh cli --help >/dev/null
for round in $(seq "$rounds"); do
  echo "== round $round (OPENBLAS_CORETYPE=$core)"
  OPENBLAS_CORETYPE=$core out/baselines/openblas_sgemm "$repeats"
  ./build.sh cli bench kernels --device cpu --op matmul --version all --repeats "$repeats" | grep -E '^matmul'
done
