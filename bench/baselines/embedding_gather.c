// The embedding gather in C, the bound our CPU embedding kernel is held to: 4096 rows of 4 KB (bf16, hidden 2048)
// gathered from a 50257-row table (205 MB) into a 16 MB output, on two threads, as `bench kernels --op embedding`
// times it (same ids, median of runs after warm-up, 64 MB written before each run), beside a 256 MiB copy on two
// threads timed the same way. Four gathers: memcpy per row (what a plain C loop does), AVX-512 streaming stores (no
// read for ownership of the output), and both again with the table on 2 MB pages (madvise; no TLB miss per row).
// Build: gcc -O2 -mavx512f -pthread embedding_gather.c.  Usage: embedding_gather [RUNS]
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define VOCAB 50257L
#define ROW 4096L
#define TOKENS 4096L
#define COPY (256L << 20)
#define FLUSH (64L << 20)

static char *table4k, *table2m, *out, *src, *dst, *flush;
static int ids[TOKENS];

enum mode { COPY_MODE, MEMCPY_4K, STREAM_4K, MEMCPY_2M, STREAM_2M, MODES };
static const char *names[MODES] = {"copy 256 MiB", "gather memcpy", "gather streaming", "gather memcpy, 2 MB pages", "gather streaming, 2 MB pages"};

struct job { int half; enum mode mode; };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *arg) {
  struct job *j = arg;
  if (j->mode == COPY_MODE) {
    long n = COPY / 2;
    memcpy(dst + j->half * n, src + j->half * n, n);
    return NULL;
  }
  const char *table = j->mode >= MEMCPY_2M ? table2m : table4k;
  int stream = j->mode == STREAM_4K || j->mode == STREAM_2M;
  for (long t = j->half * TOKENS / 2; t < (j->half + 1) * TOKENS / 2; t++) {
    const char *s = table + ids[t] * ROW;
    char *d = out + t * ROW;
    if (!stream) memcpy(d, s, ROW);
    else
      for (long o = 0; o < ROW; o += 64) _mm512_stream_ps((float *)(d + o), _mm512_load_ps((const float *)(s + o)));
  }
  _mm_sfence();
  return NULL;
}

static double run(enum mode mode) {
  memset(flush, mode + 1, FLUSH);
  pthread_t threads[2];
  struct job jobs[2] = {{0, mode}, {1, mode}};
  double start = now();
  for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, work, &jobs[i]);
  for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
  return now() - start;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 20;
  if (runs < 1) { fprintf(stderr, "embedding_gather: RUNS must be at least 1\n"); return 2; }
  table4k = aligned_alloc(4096, VOCAB * ROW);
  table2m = aligned_alloc(2L << 20, (VOCAB * ROW + (2L << 20) - 1) / (2L << 20) * (2L << 20));
  madvise(table2m, VOCAB * ROW, MADV_HUGEPAGE);
  out = aligned_alloc(4096, TOKENS * ROW);
  src = aligned_alloc(4096, COPY);
  dst = aligned_alloc(4096, COPY);
  flush = aligned_alloc(4096, FLUSH);
  if (!table4k || !table2m || !out || !src || !dst || !flush) { fprintf(stderr, "embedding_gather: out of memory\n"); return 1; }
  memset(table4k, 1, VOCAB * ROW);
  memset(table2m, 1, VOCAB * ROW);
  memset(out, 0, TOKENS * ROW);
  memset(src, 1, COPY);
  memset(dst, 2, COPY);
  for (int i = 0; i < TOKENS; i++) ids[i] = (int)((i * 7919L) % VOCAB);  // bench kernels' ids
  double median[MODES];
  double *times = malloc(sizeof(double) * runs);
  for (int m = 0; m < MODES; m++) {
    for (int w = 0; w < 3; w++) run(m);
    for (int r = 0; r < runs; r++) times[r] = run(m);
    qsort(times, runs, sizeof(double), compare);
    median[m] = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
  }
  double copyRate = 2.0 * COPY / median[COPY_MODE];
  for (int m = 0; m < MODES; m++) {
    double bytes = m == COPY_MODE ? 2.0 * COPY : 2.0 * TOKENS * ROW;
    printf("%-30s %8.3f ms %7.1f GB/s %5.0f %% of the copy\n", names[m], median[m] * 1e3, bytes / median[m] / 1e9,
           100 * bytes / median[m] / copyRate);
  }
  return 0;
}
