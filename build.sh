#!/usr/bin/env bash
# NativeParallel build entry point. Verbs:
#   run [ARGS...]      the main job: `nativeparallel run` on the best device present (CPU when there is no GPU); without
#                      ARGS it then prints the seed's training table (`train --strategy all`, a short run on real text)
#   test               build and run the whole test suite; ends with "N passed, N failed, N skipped"
#   cli ARGS...        any CLI command, e.g. ./build.sh cli kernels check --arch sm_80,sm_90
#   bench [ARGS...]    BenchmarkDotNet suites of the CPU paths (bench/), e.g. ./build.sh bench --filter '*Gemm*'
#   publish [RID]      self-contained CLI for machines without .NET (default linux-x64) into out/nativeparallel-RID/
#   bundle             one archive for a GPU machine without .NET: the CLI, the GPU test classes and the .NET runtime
#                      (out/device/nativeparallel-device.tar.xz, under 64 MiB); scripts/device-check.sh unpacks it
#   pack               NuGet packages into out/packages/: NativeParallel, NativeParallel.Interop, the nativeparallel tool
#   sample             pack, build samples/AllReduce against the packages, run it under the packed tool's launch -n 2
#   native [RID]       the C API: NativeAOT libnativeparallel.so and nativeparallel.h into out/native/ (lib/, include/)
#   setup              install what this machine lacks (NVRTC from Debian non-free when run as root on Debian)
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
CONFIG=${CONFIG:-Release}
CLI_PROJECT=src/NativeParallel.Cli/NativeParallel.Cli.csproj
TEST_PROJECT=tests/NativeParallel.Tests/NativeParallel.Tests.csproj

need_dotnet() {
  command -v dotnet >/dev/null 2>&1 || { echo "build.sh: the .NET 10 SDK is required (https://dot.net); 'dotnet' is not on PATH" >&2; exit 1; }
}

# NVRTC lets every kernel compile for real without a GPU. On Debian it is libnvrtc11.2 in the non-free
# component; we add that component and install it when we are root. Elsewhere we say what is missing.
setup() {
  need_dotnet
  # Debian's fortunes: real English text for the training demo (nativeparallel prepare --text /usr/share/games/fortunes).
  if [ ! -d /usr/share/games/fortunes ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: installing Debian's fortunes (a text corpus for training)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes >/dev/null; } || echo "build.sh: could not install fortunes" >&2
  fi
  if ldconfig -p 2>/dev/null | grep 'libnvrtc\.so' >/dev/null || [ -n "${NATIVEPARALLEL_NVRTC:-}" ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && grep -qi debian /etc/os-release 2>/dev/null; then
    echo "build.sh: installing NVRTC (libnvrtc11.2 from Debian non-free)"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed -i -E '/^Components:/{/non-free( |$)/! s/$/ non-free/}' /etc/apt/sources.list.d/debian.sources
    fi
    if [ -f /etc/apt/sources.list ] && grep -qE '^deb .*debian' /etc/apt/sources.list; then
      sed -i -E '/^deb .*debian/{/non-free( |$)/! s/$/ non-free/}' /etc/apt/sources.list
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnvrtc11.2 >/dev/null
  else
    echo "build.sh: NVRTC not found; kernels will not be compiled (install NVRTC or set NATIVEPARALLEL_NVRTC)" >&2
  fi
}

build_cli() {
  local log
  log=$(mktemp)
  if ! dotnet build "$CLI_PROJECT" -c "$CONFIG" -v q -nologo > "$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}

cli() {
  build_cli
  dotnet "src/NativeParallel.Cli/bin/$CONFIG/net10.0/NativeParallel.Cli.dll" "$@"
}

run_tests() {
  local log rc summary
  log=$(mktemp)
  set +e
  dotnet test --project "$TEST_PROJECT" -c "$CONFIG" --no-progress --output Detailed 2>&1 | tee "$log" \
    | awk '/^ *(passed|skipped) /{skip=1; next} skip && /^  /{next} {skip=0; print}' | grep -vE '^ +from .*\.dll'
  rc=${PIPESTATUS[0]}
  set -e
  # Skips must name missing hardware: list each distinct reason once.
  awk '/^ *skipped /{getline reason; sub(/^ +/, "", reason); n[reason]++} END{for (r in n) printf "skipped %d: %s\n", n[r], r}' "$log"
  summary=$(awk '/^ *total:/{t=$2} /^ *failed:/{f=$2} /^ *succeeded:/{p=$2} /^ *skipped:/{s=$2} END{if (t=="") exit 1; printf "%d passed, %d failed, %d skipped\n", p, f, s}' "$log") \
    || summary="0 passed, 1 failed (the test run did not finish; see the log above)"
  rm -f "$log"
  echo "$summary"
  return "$rc"
}

# The main job: the inference table, then (without arguments) the training table for a short run on English text
# (Debian's fortunes, or this repository's own docs where that is missing), tokenized once into out/.
run_main() {
  cli run "$@"
  [ $# -gt 0 ] && return 0
  local cli_dll="src/NativeParallel.Cli/bin/$CONFIG/net10.0/NativeParallel.Cli.dll" shard=out/train-text.bin
  if [ ! -f "$shard" ]; then
    mkdir -p out
    local text=(--text README.md --text docs)
    [ -d /usr/share/games/fortunes ] && text=(--text /usr/share/games/fortunes)
    dotnet "$cli_dll" prepare "${text[@]}" --out "$shard" >/dev/null
  fi
  echo
  dotnet "$cli_dll" train --data "$shard" --strategy all --steps 3 --batch 4 --seq 64
}

# The C API (native/include/nativeparallel.h) as a NativeAOT shared library. The ILCompiler package comes from the
# NuGet feed at the SDK's version; it links with clang, or gcc where clang is missing.
build_native() {
  need_dotnet
  local rid=${1:-linux-x64} out=out/native log
  log=$(mktemp)
  if ! dotnet publish src/NativeParallel.Native/NativeParallel.Native.csproj -c Release -r "$rid" -o "$out/publish" -v q -nologo > "$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
  mkdir -p "$out/lib" "$out/include"
  cp "$out/publish/NativeParallel.Native.so" "$out/lib/libnativeparallel.so"
  cp native/include/nativeparallel.h "$out/include/"
  echo "built $out/lib/libnativeparallel.so and $out/include/nativeparallel.h"
}

# The two libraries and the dotnet tool (PackAsTool: `dotnet tool install --add-source out/packages NativeParallel.Cli`).
pack() {
  need_dotnet
  local log project
  log=$(mktemp)
  rm -rf out/packages
  for project in interop/NativeParallel.Interop.csproj src/NativeParallel/NativeParallel.csproj "$CLI_PROJECT"; do
    if ! dotnet pack "$project" -c Release -o out/packages -v q -nologo > "$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"; exit 1
    fi
  done
  rm -f "$log"
  ls out/packages/*.nupkg
}

# What a user does with the packages: a project referencing NativeParallel from the local feed (samples/nuget.config),
# run as 2 ranks by the packed tool. The samples' own package folder forgets the previous pack of the same version.
sample() {
  pack
  local log
  log=$(mktemp)
  rm -rf out/sample-packages/nativeparallel out/sample-packages/nativeparallel.interop out/sample-tool
  if ! dotnet build samples/AllReduce/AllReduce.csproj -c Release -o out/sample -v q -nologo > "$log" 2>&1 ||
     ! dotnet tool install NativeParallel.Cli --version 0.1.0 --tool-path out/sample-tool --configfile samples/nuget.config > "$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
  out/sample-tool/nativeparallel launch -n 2 -- dotnet out/sample/AllReduce.dll
}

# The GPU machine has no .NET and returns at most 64 MiB of carried files: a framework-dependent build of the test
# project (which holds the CLI too) and this SDK's own runtime, xz-compressed. The single-file CLI of `publish` and the
# tests would not fit together; this way the CLI, its process ranks and the GPU test classes all run there.
bundle() {
  need_dotnet
  local out=out/device stage
  stage=$(mktemp -d)
  rm -rf "$out"; mkdir -p "$out"
  dotnet publish "$TEST_PROJECT" -c Release -r linux-x64 --self-contained false -p:DebugType=portable \
    -o "$stage/app" -v q -nologo > "$out/publish.log" 2>&1 || { cat "$out/publish.log" >&2; exit 1; }
  rm -rf "$stage/app/Microsoft.CodeCoverage" "$stage/app"/*.xml   # coverage tooling (30 MB) and XML docs are not used there
  local root runtime
  root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  runtime=$(ls -d "$root"/shared/Microsoft.NETCore.App/10.* | sort -V | tail -1)
  mkdir -p "$stage/dotnet/shared/Microsoft.NETCore.App" "$stage/dotnet/host"
  cp "$root/dotnet" "$stage/dotnet/"
  cp -r "$root/host/fxr" "$stage/dotnet/host/"
  cp -r "$runtime" "$stage/dotnet/shared/Microsoft.NETCore.App/"
  XZ_OPT=-6T0 tar -cJf "$out/nativeparallel-device.tar.xz" -C "$stage" app dotnet
  rm -rf "$stage"
  local size
  size=$(stat -c %s "$out/nativeparallel-device.tar.xz")
  [ "$size" -lt $((60 * 1024 * 1024)) ] || { echo "build.sh: the bundle is $((size / 1048576)) MiB; the GPU machine takes 64 MiB with the tree" >&2; exit 1; }
  echo "bundled $out/nativeparallel-device.tar.xz ($((size / 1048576)) MiB): carry out/device and run scripts/device-check.sh there"
}

verb=${1:-help}
[ $# -gt 0 ] && shift
case "$verb" in
  setup) setup ;;
  run) setup; run_main "$@" ;;
  cli) cli "$@" ;;
  test) setup; run_tests ;;
  bench) need_dotnet; dotnet run --project bench/NativeParallel.Bench/NativeParallel.Bench.csproj -c Release -- "$@" ;;
  publish)
    need_dotnet
    rid=${1:-linux-x64}
    rm -rf "out/nativeparallel-$rid"
    # One compressed self-contained file (~40 MB): small enough to carry to a GPU machine without .NET.
    dotnet publish "$CLI_PROJECT" -c Release -r "$rid" --self-contained true -p:PublishSingleFile=true \
      -p:EnableCompressionInSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:DebugType=none \
      -o "out/nativeparallel-$rid" -v q -nologo
    mv "out/nativeparallel-$rid/NativeParallel.Cli" "out/nativeparallel-$rid/nativeparallel"
    echo "published out/nativeparallel-$rid/nativeparallel (self-contained, no .NET needed)"
    ;;
  bundle) bundle ;;
  native) build_native "$@" ;;
  pack) pack ;;
  sample) sample ;;
  help|-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "build.sh: unknown verb '$verb'" >&2; sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
