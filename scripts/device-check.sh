#!/usr/bin/env bash
# The prepared GPU check: one command for a machine with a GPU and no .NET. Build the bundle here first
# (./build.sh bundle: the CLI, the GPU test classes and the .NET runtime in out/device/), carry out/device, and run
# this from the repository root. Without the bundle it runs the single-file CLI of ./build.sh publish, with no tests.
# Writes at most 8 files under $OUT (default ./device-report), because the GPU machine returns no more:
#   report.md      the report (commit it as docs/device-reports/<date>-<gpu>.md)
#   steps.txt      one line per step: name, exit code, seconds
#   raw.tar.gz     every step's raw output and JSON
# Every step runs under `timeout -k`; the timeouts add up to less than 6 minutes.
#   DEVICE=cpu scripts/device-check.sh     dry run of the same steps on the CPU (checks the plumbing here)
#   NATIVEPARALLEL_BIN="dotnet src/NativeParallel.Cli/bin/Release/net10.0/NativeParallel.Cli.dll"  runs from a build
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device-report}
DEVICE=${DEVICE:-cuda}
BUNDLE=${NATIVEPARALLEL_BUNDLE:-$PWD/out/device/nativeparallel-device.tar.xz}
# Steps to skip, space-separated (the test suite's dry run skips the slow benchmarks).
SKIP=${DEVICE_CHECK_SKIP:-}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RAW=$WORK/raw
mkdir -p "$RAW"
# The bundle's runtime runs the CLI and the tests; `dotnet` on PATH is the one the tests start rank processes with.
TESTS=${NATIVEPARALLEL_TESTS:-}
if [ -z "${NATIVEPARALLEL_BIN:-}" ] && [ -f "$BUNDLE" ]; then
  mkdir -p "$WORK/bundle" && tar -xJf "$BUNDLE" -C "$WORK/bundle" || { echo "device-check: cannot unpack $BUNDLE" >&2; exit 1; }
  export DOTNET_ROOT=$WORK/bundle/dotnet PATH=$WORK/bundle/dotnet:$PATH DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
  NATIVEPARALLEL_BIN="$WORK/bundle/dotnet/dotnet $WORK/bundle/app/NativeParallel.Cli.dll"
  TESTS=${TESTS:-"$WORK/bundle/dotnet/dotnet $WORK/bundle/app/NativeParallel.Tests.dll"}
fi
BIN=${NATIVEPARALLEL_BIN:-$PWD/out/nativeparallel-linux-x64/nativeparallel}
# A fresh kernel cache outside $OUT: the first compile on this machine is measured, the second run shows the warm
# start. NVRTC 12.9+ keeps its own compile cache, which would hide the ptxas report on a rerun: turn it off.
export NATIVEPARALLEL_CACHE_DIR=$WORK/kernel-cache
export CUDA_CACHE_DISABLE=1
export NATIVEPARALLEL_DEBUG=${NATIVEPARALLEL_DEBUG:-WARN}

read -r -a BIN_CMD <<< "$BIN"
if ! command -v "${BIN_CMD[0]}" >/dev/null 2>&1; then
  echo "device-check: ${BIN_CMD[0]} not found; run ./build.sh publish on a machine with .NET and carry out/" >&2
  exit 1
fi

status=0
run_step() {  # run_step NAME TIMEOUT_S COMMAND...: runs one command, keeps its output and exit code
  local name=$1 limit=$2; shift 2
  if [[ " $SKIP " == *" $name "* ]]; then echo "$name skipped (DEVICE_CHECK_SKIP)" >> "$OUT/steps.txt"; return; fi
  echo "== $name: $*"
  local start=$SECONDS
  timeout -k 5 "$limit" "$@" > "$RAW/$name.txt" 2>&1
  local rc=$?
  tail -n 60 "$RAW/$name.txt"
  echo "$name rc=$rc seconds=$((SECONDS - start))$([ $rc -ge 124 ] && echo " (timed out after ${limit}s)")" | tee -a "$OUT/steps.txt"
  [ $rc -eq 0 ] || status=1
}
step() {  # step NAME TIMEOUT_S ARGS...: one CLI command
  local name=$1 limit=$2; shift 2
  run_step "$name" "$limit" "${BIN_CMD[@]}" "$@"
}

: > "$OUT/steps.txt"
{ date -u; uname -a; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv; nproc; ls /usr/local/cuda/lib64 2>/dev/null | grep -E "^lib(nvrtc|cublas)"; } > "$RAW/machine.txt" 2>&1

# Preflight: stop early, with the reason, when the GPU, the driver or NVRTC is missing.
step info 15 info --json "$RAW/info.json"
if [ "$DEVICE" = cuda ]; then
  reason=""
  command -v nvidia-smi >/dev/null 2>&1 || reason="nvidia-smi is not on PATH (no NVIDIA driver?)"
  grep -qiE '^cuda .*(not found|unavailable)' "$RAW/info.txt" && reason="${reason:+$reason; }the CUDA driver library was not found (see info)"
  grep -qiE '^nvrtc .*(not found|unavailable)' "$RAW/info.txt" && reason="${reason:+$reason; }NVRTC was not found (see info; set NATIVEPARALLEL_NVRTC)"
  if [ -n "$reason" ]; then
    echo "device-check: preflight failed: $reason" | tee -a "$OUT/steps.txt"
    status=1
    SKIP="kernels-check kernels-check-warm bench-kernels run prepare train train-cpu train-layouts bench-collectives bench-collectives-ipc latency-collectives latency-collectives-ipc gpu-tests sanitize"
  fi
fi

step kernels-check 50 kernels check --device "$DEVICE" --arch sm_80,sm_90 --json "$RAW/kernels-check.json"
# The warm start measures the cache the cold check just filled; without that check it would be a second cold one.
[[ " $SKIP " == *" kernels-check "* ]] && SKIP="$SKIP kernels-check-warm"
step kernels-check-warm 10 kernels check --device "$DEVICE" --arch sm_90 --cached --op matmul
step run 20 run --device "$DEVICE" --json "$RAW/run.json"
# Training: a shard of this repository's own text (GPT-2 BPE), 20 steps on the device, then the first 5 of the same
# steps on the CPU: the losses must agree (the device run is the CUDA kernels, the CPU run their checked CPU paths).
step prepare 10 prepare --text README.md --text docs --out "$WORK/docs.bin"
step train 25 train --data "$WORK/docs.bin" --device "$DEVICE" --steps 20 --batch 8 --seq 128 --lr 3e-3 --json "$RAW/train.json"
step train-cpu 20 train --data "$WORK/docs.bin" --device cpu --steps 5 --batch 8 --seq 128 --lr 3e-3 --json "$RAW/train-cpu.json"
# The training layouts on the device (thread ranks sharing it): dp=2 (bucket all-reduces device-direct), ZeRO-1,
# tp=2 with and without sequence parallelism (vocabulary-parallel cross-entropy), pp=2 under 1F1B, and the 8-rank
# composition, each against the single-device losses, with memory and bytes beside the formulas.
step train-layouts 35 train --data "$WORK/docs.bin" --device "$DEVICE" --strategy "dp=2;dp=2,zero=1;tp=2;tp=2,sp;pp=2,mb=4,1f1b;dp=2,tp=2,pp=2,mb=2,1f1b" --steps 4 --batch 8 --seq 128 --vocab 50304 --json "$RAW/train-layouts.json"
# Ranks as threads sharing the device: all_reduce device-direct (the reduce kernel over peers' buffers), against
# the device copy bandwidth measured by bench-kernels below.
step bench-collectives 15 bench collectives --ranks 2 --transport threads --device "$DEVICE" -b 1M -e 256M -f 16 -n 10 -w 3 --json "$RAW/bench-collectives.json"
# The same across processes: CUDA IPC exports of each buffer, opened by the peer (the IPC transport).
step bench-collectives-ipc 20 bench collectives --ranks 2 --device "$DEVICE" -b 1M -e 256M -f 16 -n 10 -w 3
# The fixed cost of one device-direct call (4 bytes and 4 KiB, many iterations): the meetings, the driver calls and
# the device's own waits, with no bandwidth in it; the IPC line says how many handles were exported and opened.
step latency-collectives 10 bench collectives --ranks 2 --transport threads --device "$DEVICE" -b 4 -e 4K -f 1024 -n 200 -w 20
step latency-collectives-ipc 10 bench collectives --ranks 2 --device "$DEVICE" -b 4 -e 4K -f 1024 -n 200 -w 20
# The test classes that need the GPU (they skip without one; here a skip is a failure): the kernel suite, tensors on
# the device, device-timed traces, every device-direct collective on thread ranks and on processes over CUDA IPC, and
# the MoE layer with expert parallelism on the GPU.
if [ -n "$TESTS" ] && [ "$DEVICE" = cuda ]; then
  read -r -a TESTS_CMD <<< "$TESTS"
  NATIVEPARALLEL_REQUIRE=cuda,nvrtc run_step gpu-tests 50 "${TESTS_CMD[@]}" -noColor -noLogo \
    -class '*CudaKernelSuiteTests' -class '*CudaDeviceDirectTests' -class '*TensorTests' -class '*TracerTests' -class '*DeviceTimedTraceTests' -class '*LibraryResolverTests' -class '*CudaKernelVersionTests' -class '*CudaMoeOnDeviceTests'
  # The report keeps the first failures with their messages and the summary; the archive keeps everything.
  [ -f "$RAW/gpu-tests.txt" ] && { grep -A4 '\[FAIL\]' "$RAW/gpu-tests.txt" | head -n 150; grep -E 'Total:' "$RAW/gpu-tests.txt"; } > "$RAW/gpu-tests-summary.txt"
else
  echo "gpu-tests skipped (no test bundle or not on cuda)" >> "$OUT/steps.txt"
fi
step bench-kernels 40 bench kernels --device "$DEVICE" --version all --json "$RAW/bench-kernels.json" --markdown "$RAW/bench-kernels.md"
# compute-sanitizer's memcheck over the kernel suite: an out-of-bounds access a comparison could miss.
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ "$DEVICE" = cuda ] && [ -n "$SANITIZER" ]; then
  run_step sanitize 20 "$SANITIZER" --tool memcheck --error-exitcode 9 --print-limit 20 "${BIN_CMD[@]}" kernels check --device cuda --cached
else
  echo "sanitize skipped (no compute-sanitizer or not on cuda)" >> "$OUT/steps.txt"
fi

section() {  # section TITLE FILE [FILTER]: a fenced block of one step's output, when the step ran
  [ -f "$RAW/$2" ] || return 0
  echo "## $1"; echo '```'
  if [ -n "${3:-}" ]; then grep -vE "$3" "$RAW/$2"; else cat "$RAW/$2"; fi
  echo '```'; echo
}
{
  echo "# Device check ($DEVICE)"
  echo
  echo '```'; cat "$RAW/machine.txt"; echo '```'
  echo
  echo "## Steps"
  echo '```'; cat "$OUT/steps.txt"; echo '```'
  echo
  section info info.txt
  section "kernels check (compile for sm_80, sm_90; every case against the CPU reference; passing cases omitted)" kernels-check.txt ' ok$'
  section "warm start (cached binaries)" kernels-check-warm.txt
  [ -f "$RAW/bench-kernels.md" ] && { sed 's/^# /## /' "$RAW/bench-kernels.md"; echo; }
  section run run.txt
  section "train on $DEVICE (20 steps)" train.txt
  section "train on cpu (the first 5 of the same steps)" train-cpu.txt
  section "training layouts on $DEVICE (dp=2, ZeRO-1, tp=2, tp=2+sp, pp=2 1F1B, dp×tp×pp; thread ranks sharing the device)" train-layouts.txt
  section "all_reduce, 2 thread ranks sharing the device (device-direct)" bench-collectives.txt
  section "all_reduce, 2 processes sharing the device (CUDA IPC)" bench-collectives-ipc.txt
  section "fixed cost per call: all_reduce of 4 B and 4 KiB, 2 thread ranks" latency-collectives.txt
  section "fixed cost per call: all_reduce of 4 B and 4 KiB, 2 processes (CUDA IPC)" latency-collectives-ipc.txt
  section "GPU test classes (the first failures and the summary)" gpu-tests-summary.txt
  section "compute-sanitizer memcheck over the kernel suite (passing cases omitted)" sanitize.txt ' ok$' 
} > "$OUT/report.md"
tar -czf "$OUT/raw.tar.gz" -C "$WORK" raw
echo "device-check: report in $OUT/report.md, raw outputs in $OUT/raw.tar.gz (status $status)"
exit $status
