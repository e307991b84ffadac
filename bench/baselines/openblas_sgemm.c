/* OpenBLAS SGEMM as bench kernels times our CPU matmul: C (m x n) = A (m x k) * B^T with B (n x k), row-major f32,
 * median of REPEATS runs after WARMUP, a 64 MiB buffer written before each run so no operand starts in cache.
 * Build and run: bench/baselines/run-openblas-sgemm.sh (set OPENBLAS_CORETYPE to the real core: this VM's
 * auto-detection picks a slower kernel). Prints one line per size: "sgemm SIZE^3 MEDIAN_MS GFLOP/s". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* cblas_sgemm from libopenblas (declared here: the -dev package with cblas.h is not needed). */
enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int by_value(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

int main(int argc, char **argv) {
  int warmup = 3, repeats = argc > 1 ? atoi(argv[1]) : 20;
  size_t flush_bytes = 64u << 20;
  char *flush = malloc(flush_bytes);
  int sizes[] = {512, 1024};
  for (int s = 0; s < 2; s++) {
    int n = sizes[s];
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) {
      a[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
      b[i] = (float)((i * 104729) % 2001 - 1000) / 1000.0f;
    }
    double *times = malloc(sizeof(double) * repeats);
    for (int r = 0; r < warmup + repeats; r++) {
      memset(flush, r, flush_bytes);
      double t0 = now_ms();
      cblas_sgemm(RowMajor, NoTrans, Trans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      double t1 = now_ms();
      if (r >= warmup) times[r - warmup] = t1 - t0;
    }
    qsort(times, repeats, sizeof(double), by_value);
    double median = repeats % 2 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
    printf("sgemm %d^3 %.3f ms %.1f GFLOP/s\n", n, median, 2.0 * n * n * n / (median * 1e6));
    free(a), free(b), free(c), free(times);
  }
  free(flush);
  return 0;
}
