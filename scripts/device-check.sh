#!/usr/bin/env bash
# The prepared GPU check: one command for a machine with a GPU and no .NET. Build the CLI here first
# (./build.sh publish), carry out/nativeparallel-linux-x64, and run this from the repository root.
# Writes under $OUT (default ./device-report): report.md (for docs/device-reports/), report.json, and the raw
# output of each step. Each step has its own timeout; the whole script finishes within 5 minutes.
#   DEVICE=cpu scripts/device-check.sh     dry run of the same steps on the CPU (checks the plumbing here)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-report}
DEVICE=${DEVICE:-cuda}
BIN=${NATIVEPARALLEL_BIN:-$PWD/out/nativeparallel-linux-x64/nativeparallel}
mkdir -p "$OUT"
# A fresh kernel cache: the first compile on this machine is measured, the second run shows the warm start.
export NATIVEPARALLEL_CACHE_DIR=${NATIVEPARALLEL_CACHE_DIR:-$OUT/kernel-cache}
export NATIVEPARALLEL_DEBUG=${NATIVEPARALLEL_DEBUG:-WARN}

if [ ! -x "$BIN" ]; then
  echo "device-check: $BIN not found; run ./build.sh publish on a machine with .NET and carry out/" >&2
  exit 1
fi

status=0
step() {  # step NAME TIMEOUT_S ARGS...: runs one CLI command, keeps its output and exit code
  local name=$1 limit=$2; shift 2
  echo "== $name: nativeparallel $*"
  local start=$SECONDS
  timeout "$limit" "$BIN" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  cat "$OUT/$name.txt"
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/steps.txt"
  [ $rc -eq 0 ] || status=1
}

{ date -u; uname -a; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv; } > "$OUT/machine.txt" 2>&1
: > "$OUT/steps.txt"
step info 15 info --json "$OUT/info.json"
step kernels-check 100 kernels check --device "$DEVICE" --arch sm_80,sm_90 --json "$OUT/kernels-check.json"
step kernels-check-warm 20 kernels check --device "$DEVICE" --arch sm_90 --cached --op matmul
step bench-kernels 70 bench kernels --device "$DEVICE" --json "$OUT/bench-kernels.json" --markdown "$OUT/bench-kernels.md"
step run 35 run --device "$DEVICE" --json "$OUT/run.json"
# Ranks as threads sharing the device: all_reduce device-direct (the reduce kernel over peers' buffers), against
# the device copy bandwidth measured by bench-kernels above.
step bench-collectives 30 bench collectives --ranks 2 --transport threads --device "$DEVICE" -b 1M -e 256M -f 16 -n 10 -w 3 --json "$OUT/bench-collectives.json"
# The same across processes: CUDA IPC exports of each buffer, opened by the peer (the IPC transport).
step bench-collectives-ipc 30 bench collectives --ranks 2 --device "$DEVICE" -b 1M -e 256M -f 16 -n 10 -w 3

{
  echo "# Device check ($DEVICE)"
  echo
  echo '```'; cat "$OUT/machine.txt"; echo '```'
  echo
  echo "## Steps"
  echo '```'; cat "$OUT/steps.txt"; echo '```'
  echo
  echo "## info"
  echo '```'; cat "$OUT/info.txt"; echo '```'
  echo
  echo "## kernels check (compile for sm_80, sm_90; every case against the CPU reference)"
  echo '```'; grep -vE ' ok$' "$OUT/kernels-check.txt"; echo '```'
  echo
  echo "## warm start (cached binaries)"
  echo '```'; head -5 "$OUT/kernels-check-warm.txt"; echo '```'
  echo
  [ -f "$OUT/bench-kernels.md" ] && sed 's/^# /## /' "$OUT/bench-kernels.md"
  echo
  echo "## run"
  echo '```'; cat "$OUT/run.txt"; echo '```'
  echo
  echo "## all_reduce, 2 thread ranks sharing the device (device-direct)"
  echo '```'; cat "$OUT/bench-collectives.txt"; echo '```'
  echo
  echo "## all_reduce, 2 processes sharing the device (CUDA IPC)"
  echo '```'; cat "$OUT/bench-collectives-ipc.txt"; echo '```'
} > "$OUT/report.md"
echo "device-check: report in $OUT/report.md (status $status)"
exit $status
