#!/usr/bin/env bash
# Issue 11's small-message and 16 MB comparison: OpenMPI's MPI_Allreduce over shared memory (btl vader) and our
# all_reduce over shm, 2 processes, float sum, interleaved REPEATS times in one run so both see the same load.
#   bench/baselines/run-mpi-small.sh [REPEATS]       (CLI=path/to/NativeParallel.Cli.dll times another build)
# Prints one line per measurement and, per size, each repeat's ratio (1 KB: our out-of-place time / OpenMPI's;
# 16 MB: our out-of-place busbw / OpenMPI's). Needs libopenmpi-dev (mpicc) and a Release build (dotnet build -c Release).
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-5}
command -v mpicc >/dev/null || { echo "needs mpicc: apt-get install libopenmpi-dev" >&2; exit 1; }
bin=$(mktemp -d)/mpi_allreduce
mpicc -O2 -o "$bin" bench/baselines/mpi_allreduce.c
cli=${CLI:-src/NativeParallel.Cli/bin/Release/net10.0/NativeParallel.Cli.dll}  # CLI=another build (e.g. main before a change)
[ -f "$cli" ] || { echo "build first: dotnet build NativeParallel.sln -c Release" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { mpirun -n 2 --oversubscribe --mca btl self,vader "$bin" "$1" "$1" "$2" "$3" | awk '$1 ~ /^[0-9]+$/ {print $5, $7}'; }
ours() { dotnet "$cli" bench collectives --op all_reduce --ranks 2 --transport shm -b "$1" -e "$1" -n "$2" -w "$3" -c 1 | awk '$1 ~ /^[0-9]+$/ {print $6, $8, $9, $10, $13}'; }
echo "# repeat size  mpi_us mpi_busbw  ours_us ours_busbw ours_wrong ours_inplace_us ours_inplace_wrong  ratio"
for r in $(seq 1 "$repeats"); do
  read -r mu mb < <(mpi 1024 5000 500)
  read -r ou ob ow oi iw < <(ours 1024 5000 500)
  echo "$r 1KB  $mu $mb  $ou $ob $ow $oi $iw  time_ratio=$(awk -v a="$ou" -v b="$mu" 'BEGIN{printf "%.2f", a/b}')"
  read -r mu mb < <(mpi 16777216 20 3)
  read -r ou ob ow oi iw < <(ours 16777216 20 3)
  echo "$r 16MB $mu $mb  $ou $ob $ow $oi $iw  busbw_ratio=$(awk -v a="$ob" -v b="$mb" 'BEGIN{printf "%.2f", a/b}')"
done
