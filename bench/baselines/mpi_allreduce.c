/* The OpenMPI baseline of `nativeparallel bench collectives --op all_reduce`: MPI_Allreduce (float, sum) timed the
 * same way (warm-up, then the average of N iterations, the slowest rank's) and printed in the same columns, so
 * the two tables compare line by line. Build and run with run-mpi-allreduce.sh. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long min_bytes = argc > 1 ? atol(argv[1]) : 1024;
    long max_bytes = argc > 2 ? atol(argv[2]) : 64L << 20;
    int iters = argc > 3 ? atoi(argv[3]) : 20, warmup = argc > 4 ? atoi(argv[4]) : 5;
    float* in = malloc(max_bytes > 0 ? max_bytes : 4);
    float* out = malloc(max_bytes > 0 ? max_bytes : 4);
    for (long i = 0; i < max_bytes / 4; i++) in[i] = (float)((rank + 2 * i) % 7 - 2);
    if (rank == 0) printf("#       size         count      type   redop     time   algbw   busbw   (MPI_Allreduce, %d ranks)\n", size);
    for (long bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
        int count = (int)(bytes / 4);
        for (int i = 0; i < warmup; i++) MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (int i = 0; i < iters; i++) MPI_Allreduce(in, out, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double us = (MPI_Wtime() - start) * 1e6 / iters, slowest;
        MPI_Reduce(&us, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        double algbw = bytes / slowest / 1e3, busbw = algbw * 2.0 * (size - 1) / size;
        if (rank == 0) printf("%12ld %13d     float     sum %8.2f %7.2f %7.2f\n", bytes, count, slowest, algbw, busbw);
    }
    free(in);
    free(out);
    MPI_Finalize();
    return 0;
}
