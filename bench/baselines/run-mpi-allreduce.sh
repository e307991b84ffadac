#!/usr/bin/env bash
# Builds and runs the MPI_Allreduce baseline beside our all_reduce, same machine, same run, same sizes.
#   bench/baselines/run-mpi-allreduce.sh [RANKS] [MIN_BYTES] [MAX_BYTES] [ITERS]
# Needs Debian's openmpi-bin and libopenmpi-dev (mpicc). Prints OpenMPI over shared memory (btl vader), OpenMPI
# over loopback TCP (btl tcp), then ours over shm and tcp.
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks=${1:-2}; min=${2:-1024}; max=${3:-67108864}; iters=${4:-20}
command -v mpicc >/dev/null || { echo "needs mpicc: apt-get install libopenmpi-dev" >&2; exit 1; }
bin=$(mktemp -d)/mpi_allreduce
mpicc -O2 -o "$bin" bench/baselines/mpi_allreduce.c
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "## OpenMPI $(mpirun --version | head -1 | awk '{print $NF}'), shared memory (btl self,vader)"
mpirun -n "$ranks" --oversubscribe --mca btl self,vader "$bin" "$min" "$max" "$iters" 5
echo "## OpenMPI, loopback TCP (btl self,tcp)"
mpirun -n "$ranks" --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo "$bin" "$min" "$max" "$iters" 5
for transport in shm tcp; do
  echo "## nativeparallel all_reduce over $transport"
  ./build.sh cli bench collectives --op all_reduce --ranks "$ranks" --transport "$transport" -b "$min" -e "$max" -f 2 -n "$iters" -w 5 -c 1
done
