#!/usr/bin/env bash
# Issue 11's small-message and 16 MB comparison: OpenMPI's MPI_Allreduce over shared memory (btl vader) and our
# all_reduce over shm, 2 processes, float sum, interleaved REPEATS times in one run so both see the same load.
#   bench/baselines/run-mpi-small.sh [REPEATS]       (CLI=path/to/NativeParallel.Cli.dll times another build;
#                                                     BEFORE=path/to/NativeParallel.Cli.dll times a second one beside it)
# Prints one line per measurement and, per size, each repeat's ratio (1 KB: our out-of-place time / OpenMPI's;
# 16 MB: our out-of-place busbw / OpenMPI's). Needs libopenmpi-dev (mpicc) and a Release build (dotnet build -c Release).
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-5}
command -v mpicc >/dev/null || { echo "needs mpicc: apt-get install libopenmpi-dev" >&2; exit 1; }
bin=$(mktemp -d)/mpi_allreduce
mpicc -O2 -o "$bin" bench/baselines/mpi_allreduce.c
cli=${CLI:-src/NativeParallel.Cli/bin/Release/net10.0/NativeParallel.Cli.dll}  # CLI=another build (e.g. main before a change)
before=${BEFORE:-}
[ -f "$cli" ] || { echo "build first: dotnet build NativeParallel.sln -c Release" >&2; exit 1; }
[ -z "$before" ] || [ -f "$before" ] || { echo "BEFORE=$before: no such build" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { mpirun -n 2 --oversubscribe --mca btl self,vader "$bin" "$1" "$1" "$2" "$3" | awk '$1 ~ /^[0-9]+$/ {print $5, $7}'; }
# time, busbw and #wrong out of place, then time and #wrong in place
ours() { dotnet "$1" bench collectives --op all_reduce --ranks 2 --transport shm -b "$2" -e "$2" -n "$3" -w "$4" -c 1 | awk '$1 ~ /^[0-9]+$/ {print $6, $8, $9, $10, $13}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "# repeat size  mpi_us mpi_busbw  ours_us ours_busbw ours_wrong ours_inplace_us ours_inplace_wrong  ratio [before: same columns, ratio]"
for r in $(seq 1 "$repeats"); do
  echo "# $(uptime)"
  for size in 1024 16777216; do
    if [ "$size" = 1024 ]; then n=5000 w=500 label=1KB; else n=20 w=3 label=16MB; fi
    read -r mu mb < <(mpi "$size" "$n" "$w")
    [ -z "$before" ] || read -r bu bb bw bi biw < <(ours "$before" "$size" "$n" "$w")
    read -r ou ob ow oi iw < <(ours "$cli" "$size" "$n" "$w")
    if [ "$size" = 1024 ]; then line="time_ratio=$(ratio "$ou" "$mu")"; else line="busbw_ratio=$(ratio "$ob" "$mb")"; fi
    if [ -n "$before" ]; then
      if [ "$size" = 1024 ]; then extra="before: $bu $bb $bw $bi $biw time_ratio=$(ratio "$bu" "$mu")"; else extra="before: $bu $bb $bw $bi $biw busbw_ratio=$(ratio "$bb" "$mb")"; fi
    else extra=""; fi
    echo "$r $label $mu $mb  $ou $ob $ow $oi $iw  $line  $extra"
  done
done
