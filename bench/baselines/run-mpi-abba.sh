#!/usr/bin/env bash
# One size of all_reduce over shared memory, 2 processes, float sum: OpenMPI's MPI_Allreduce (btl vader), a base
# build of ours and a new one, ROUNDS rounds in alternating order (OpenMPI, base, new; then new, base, OpenMPI), so
# that a load that drifts during the sitting does not favour whichever runs first. Prints each run's out-of-place
# time and busbw (and ours in place) and the round's busbw ratios: base/OpenMPI, new/OpenMPI, new/base.
#   BASE=path/to/NativeParallel.Cli.dll NEW=path/to/NativeParallel.Cli.dll bench/baselines/run-mpi-abba.sh [ROUNDS]
#   SIZE (bytes, default 16777216), N iterations (20), W warm-up (3). Needs libopenmpi-dev (mpicc).
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${SIZE:-16777216}; n=${N:-20}; w=${W:-3}; rounds=${1:-8}
: "${BASE:?BASE=path/to/a NativeParallel.Cli.dll}" "${NEW:=src/NativeParallel.Cli/bin/Release/net10.0/NativeParallel.Cli.dll}"
command -v mpicc >/dev/null || { echo "needs mpicc: apt-get install libopenmpi-dev" >&2; exit 1; }
bin=$(mktemp -d)/mpi_allreduce
mpicc -O2 -o "$bin" bench/baselines/mpi_allreduce.c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { mpirun -n 2 --oversubscribe --mca btl self,vader "$bin" "$size" "$size" "$n" "$w" | awk '$1 ~ /^[0-9]+$/ {print $5, $7}'; }
# time, busbw and #wrong out of place, then time and #wrong in place
ours() { dotnet "$1" bench collectives --op all_reduce --ranks 2 --transport shm -b "$size" -e "$size" -n "$n" -w "$w" -c 1 | awk '$1 ~ /^[0-9]+$/ {print $6, $8, $9, $10, $13}'; }
echo "# round order load | mpi_us mpi_busbw | base_us base_busbw wrong inplace_us wrong | new_us new_busbw wrong inplace_us wrong | base/mpi new/mpi new/base (busbw)"
for r in $(seq 1 "$rounds"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if [ $((r % 2)) = 1 ]; then m=$(mpi); b=$(ours "$BASE"); x=$(ours "$NEW"); o=MBN; else x=$(ours "$NEW"); b=$(ours "$BASE"); m=$(mpi); o=NBM; fi
  read -r mu mb <<<"$m"; read -r bu bb bw bi biw <<<"$b"; read -r xu xb xw xi xiw <<<"$x"
  echo "$r $o $load | $mu $mb | $bu $bb $bw $bi $biw | $xu $xb $xw $xi $xiw | $(awk -v a="$bb" -v b="$mb" -v c="$xb" 'BEGIN{printf "%.2f %.2f %.2f", a/b, c/b, c/a}')"
done
