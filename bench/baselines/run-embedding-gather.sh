#!/usr/bin/env bash
# The embedding gather in C (memcpy and streaming stores, 4 KB and 2 MB pages) beside our CPU embedding kernel
# (bench kernels --op embedding), round after round, each against a copy timed in the same program: what the gather
# itself reaches on this machine, the bound for issue 14's "embedding ≥ 70 % of the copy".
# Usage: bench/baselines/run-embedding-gather.sh [RUNS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
rounds=${2:-3}
grep -qw avx512f /proc/cpuinfo || { echo "run-embedding-gather: the C gather uses AVX-512 streaming stores; this CPU has no AVX-512" >&2; exit 1; }
mkdir -p out/baselines
gcc -O2 -mavx512f -pthread -o out/baselines/embedding_gather bench/baselines/embedding_gather.c
./build.sh cli --help >/dev/null
for round in $(seq "$rounds"); do
  echo "== round $round"
  out/baselines/embedding_gather "$runs"
  ./build.sh cli bench kernels --device cpu --op embedding --repeats "$runs" | grep -E '^(device copy|embedding)'
done
