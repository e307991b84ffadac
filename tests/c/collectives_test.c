/*
 * The C API across processes: `collectives_test [NRANKS]` makes an npUniqueId, starts NRANKS (default 3) copies
 * of itself as ranks (fork, then exec at once: the parent already runs .NET, which a forked child must not use),
 * passes each the id in hex, and fails if any rank fails or the ranks take more than 120 s. Each rank checks
 * every collective's result exactly (small integers, exact in every type) and that bad arguments come back as
 * result codes with a message, the process still running. Prints one "ok" line per check and rank.
 * `collectives_test NRANKS --peer-exits`: the last rank exits after one all_reduce; the others' next call must
 * return npRemoteError (a peer gone is an error code, never a hang or an abort of the host).
 *
 *   gcc -std=c11 -Wall -Werror -I out/native/include tests/c/collectives_test.c -L out/native/lib \
 *       -lnativeparallel -Wl,-rpath,"$PWD/out/native/lib" -o out/native/collectives_test
 */
#define _POSIX_C_SOURCE 200809L
#include "nativeparallel.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_rank = -1;

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        npResult_t r_ = (call);                                                                              \
        if (r_ != npSuccess) {                                                                               \
            fprintf(stderr, "rank %d: %s failed: %s: %s\n", g_rank, #call, npGetErrorString(r_), npGetLastError(NULL)); \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

static void fail(const char* what, size_t index, double got, double want) {
    fprintf(stderr, "rank %d: %s: element %zu is %g, expected %g\n", g_rank, what, index, got, want);
    exit(1);
}

static void ok(const char* what) { printf("rank %d: %s ok\n", g_rank, what); fflush(stdout); }

static uint16_t to_bf16(float f) { uint32_t u; memcpy(&u, &f, 4); return (uint16_t)(u >> 16); }
static float from_bf16(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }

static void check_all_reduce(npComm_t comm, int n) {
    enum { count = 1000 };
    float send[count], recv[count];
    for (size_t i = 0; i < count; i++) send[i] = (float)(g_rank + 1 + i % 5);
    CHECK(npAllReduce(send, recv, count, npFloat32, npSum, comm, NULL));
    for (size_t i = 0; i < count; i++) {
        double want = n * (n + 1) / 2 + n * (double)(i % 5);
        if (recv[i] != want) fail("all_reduce f32 sum", i, recv[i], want);
    }
    ok("all_reduce f32 sum");

    enum { icount = 4099 };
    static int32_t values[icount];
    for (size_t i = 0; i < icount; i++) values[i] = g_rank * 1000 + (int32_t)i;
    CHECK(npAllReduce(values, values, icount, npInt32, npMax, comm, NULL)); /* in place */
    for (size_t i = 0; i < icount; i++)
        if (values[i] != (n - 1) * 1000 + (int32_t)i) fail("all_reduce i32 max in place", i, values[i], (n - 1) * 1000 + (double)i);
    ok("all_reduce i32 max in place");

    int64_t big[257], big_sum[257];
    for (size_t i = 0; i < 257; i++) big[i] = ((int64_t)1 << 40) * g_rank + (int64_t)i;
    CHECK(npAllReduce(big, big_sum, 257, npInt64, npSum, comm, NULL));
    for (size_t i = 0; i < 257; i++) {
        int64_t want = ((int64_t)1 << 40) * (n * (n - 1) / 2) + (int64_t)i * n;
        if (big_sum[i] != want) fail("all_reduce i64 sum", i, (double)big_sum[i], (double)want);
    }
    ok("all_reduce i64 sum");

    uint16_t half[33], half_sum[33];
    for (size_t i = 0; i < 33; i++) half[i] = to_bf16((float)(g_rank + i % 4));
    CHECK(npAllReduce(half, half_sum, 33, npBfloat16, npSum, comm, NULL));
    for (size_t i = 0; i < 33; i++) {
        float want = (float)(n * (n - 1) / 2 + n * (int)(i % 4));
        if (from_bf16(half_sum[i]) != want) fail("all_reduce bf16 sum", i, from_bf16(half_sum[i]), want);
    }
    ok("all_reduce bf16 sum");
}

static void check_all_gather_reduce_scatter(npComm_t comm, int n) {
    enum { part = 333 };
    float send[part];
    float* all = malloc(sizeof(float) * part * n);
    for (size_t i = 0; i < part; i++) send[i] = (float)(g_rank * 1000 + i);
    CHECK(npAllGather(send, all, part, npFloat32, comm, NULL));
    for (int r = 0; r < n; r++)
        for (size_t i = 0; i < part; i++)
            if (all[r * part + i] != (float)(r * 1000 + i)) fail("all_gather f32", r * part + i, all[r * part + i], r * 1000 + (double)i);
    free(all);
    ok("all_gather f32");

    enum { block = 100 };
    float* whole = malloc(sizeof(float) * block * n);
    float mine[block];
    for (size_t j = 0; j < (size_t)block * n; j++) whole[j] = (float)(g_rank + j);
    CHECK(npReduceScatter(whole, mine, block, npFloat32, npSum, comm, NULL));
    for (size_t i = 0; i < block; i++) {
        double want = n * (n - 1) / 2 + (double)n * (g_rank * block + i);
        if (mine[i] != want) fail("reduce_scatter f32 sum", i, mine[i], want);
    }
    free(whole);
    ok("reduce_scatter f32 sum");
}

static void check_broadcast_send_recv(npComm_t comm, int n) {
    enum { count = 64 };
    const int root = 1 % n;
    float send[count], recv[count];
    for (size_t i = 0; i < count; i++) { send[i] = g_rank == root ? (float)(7 * i + 1) : -1.0f; recv[i] = -2.0f; }
    CHECK(npBroadcast(send, recv, count, npFloat32, root, comm, NULL));
    for (size_t i = 0; i < count; i++)
        if (recv[i] != (float)(7 * i + 1)) fail("broadcast f32 from rank 1", i, recv[i], 7 * (double)i + 1);
    ok("broadcast f32 from rank 1");

    if (n < 2) return;
    /* A ring: rank r sends to r+1 and receives from r-1. Odd ranks receive first, so no cycle of senders waits. */
    enum { ring = 50 };
    int32_t out[ring], in[ring];
    int next = (g_rank + 1) % n, prev = (g_rank + n - 1) % n;
    for (size_t i = 0; i < ring; i++) { out[i] = g_rank * 100 + (int32_t)i; in[i] = -1; }
    if (g_rank % 2 == 0) {
        CHECK(npSend(out, ring, npInt32, next, comm, NULL));
        CHECK(npRecv(in, ring, npInt32, prev, comm, NULL));
    } else {
        CHECK(npRecv(in, ring, npInt32, prev, comm, NULL));
        CHECK(npSend(out, ring, npInt32, next, comm, NULL));
    }
    for (size_t i = 0; i < ring; i++)
        if (in[i] != prev * 100 + (int32_t)i) fail("send/recv ring i32", i, in[i], prev * 100 + (double)i);
    ok("send/recv ring i32");
}

/* Each mistake is a code and a message; the process (and the communicator) carry on. */
static void check_errors(npComm_t comm, int n) {
    float x[4] = {0};
    npResult_t r = npAllReduce(x, x, 4, (npDataType_t)0, npSum, comm, NULL);
    if (r != npInvalidArgument || strstr(npGetLastError(NULL), "datatype 0") == NULL) {
        fprintf(stderr, "rank %d: an unsupported datatype gave %d (%s)\n", g_rank, r, npGetLastError(NULL));
        exit(1);
    }
    r = npAllReduce(x, x, 4, npFloat32, npSum, NULL, NULL);
    if (r != npInvalidArgument || strstr(npGetLastError(NULL), "comm is NULL") == NULL) {
        fprintf(stderr, "rank %d: a NULL comm gave %d (%s)\n", g_rank, r, npGetLastError(NULL));
        exit(1);
    }
    r = npBroadcast(x, x, 4, npFloat32, n + 5, comm, NULL);
    if (r != npInvalidArgument) {
        fprintf(stderr, "rank %d: root %d of %d gave %d (%s)\n", g_rank, n + 5, n, r, npGetLastError(NULL));
        exit(1);
    }
    npComm_t other;
    npUniqueId id;
    CHECK(npGetUniqueId(&id));
    r = npCommInitRank(&other, n, id, n); /* rank n of n does not exist */
    if (r != npInvalidArgument || strstr(npGetLastError(NULL), "is not a rank") == NULL) {
        fprintf(stderr, "rank %d: npCommInitRank with rank %d of %d gave %d (%s)\n", g_rank, n, n, r, npGetLastError(NULL));
        exit(1);
    }
    memset(&id, 0x5a, sizeof id);
    r = npCommInitRank(&other, n, id, 0);
    if (r != npInvalidArgument || strstr(npGetLastError(NULL), "not an npUniqueId") == NULL) {
        fprintf(stderr, "rank %d: a garbage id gave %d (%s)\n", g_rank, r, npGetLastError(NULL));
        exit(1);
    }
    /* The communicator still works after its caller's mistakes. */
    x[0] = 1.0f;
    CHECK(npAllReduce(x, x, 1, npFloat32, npSum, comm, NULL));
    if (x[0] != (float)n) fail("all_reduce after refused calls", 0, x[0], n);
    ok("errors as codes with messages");
}

/* The last rank exits without a word; the others' next call must come back as npRemoteError, not hang or abort. */
static int peer_exits(npComm_t comm, int n) {
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = 1.0f;
    CHECK(npAllReduce(x, x, 256, npFloat32, npSum, comm, NULL));
    if (g_rank == n - 1) _exit(0);
    npResult_t r = npAllReduce(x, x, 256, npFloat32, npSum, comm, NULL);
    if (r != npRemoteError) {
        fprintf(stderr, "rank %d: an all_reduce with an exited peer gave %d (%s)\n", g_rank, r, npGetLastError(NULL));
        return 1;
    }
    printf("rank %d: exited peer -> %s: %s\n", g_rank, npGetErrorString(r), npGetLastError(NULL));
    CHECK(npCommAbort(comm));
    ok("exited peer as npRemoteError");
    return 0;
}

static int run_rank(int rank, int n, const char* hex, int exits) {
    g_rank = rank;
    npUniqueId id;
    if (strlen(hex) != 2 * sizeof id) { fprintf(stderr, "rank %d: the id must be %zu hex digits\n", rank, 2 * sizeof id); return 2; }
    for (size_t i = 0; i < sizeof id; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) { fprintf(stderr, "rank %d: the id is not hex\n", rank); return 2; }
        id.internal[i] = (char)byte;
    }
    npComm_t comm;
    CHECK(npCommInitRank(&comm, n, id, rank));
    int count = -1, me = -1;
    CHECK(npCommCount(comm, &count));
    CHECK(npCommUserRank(comm, &me));
    if (count != n || me != rank) { fprintf(stderr, "rank %d: npCommCount %d, npCommUserRank %d\n", rank, count, me); return 1; }
    if (exits) return peer_exits(comm, n);
    check_all_reduce(comm, n);
    check_all_gather_reduce_scatter(comm, n);
    check_broadcast_send_recv(comm, n);
    check_errors(comm, n);
    CHECK(npCommDestroy(comm));
    if (npCommDestroy(comm) != npInvalidArgument) { fprintf(stderr, "rank %d: a second npCommDestroy was accepted\n", rank); return 1; }
    ok("destroy");
    return 0;
}

int main(int argc, char** argv) {
    if (argc >= 5 && strcmp(argv[1], "--rank") == 0) return run_rank(atoi(argv[2]), atoi(argv[3]), argv[4], argc > 5);
    int n = argc > 1 ? atoi(argv[1]) : 3;
    int exits = argc > 2 && strcmp(argv[2], "--peer-exits") == 0;
    if (n < 1 || n > 64 || (argc > 2 && !exits) || (exits && n < 2)) {
        fprintf(stderr, "usage: %s [NRANKS 1-64] [--peer-exits (2 or more ranks)]\n", argv[0]);
        return 2;
    }

    int version = 0;
    CHECK(npGetVersion(&version));
    npUniqueId id;
    CHECK(npGetUniqueId(&id));
    char hex[2 * NP_UNIQUE_ID_BYTES + 1], count[16];
    for (size_t i = 0; i < sizeof id; i++) sprintf(hex + 2 * i, "%02x", (unsigned char)id.internal[i]);
    snprintf(count, sizeof count, "%d", n);

    pid_t pids[64];
    for (int r = 0; r < n; r++) {
        char rank[16];
        snprintf(rank, sizeof rank, "%d", r);
        pids[r] = fork();
        if (pids[r] == 0) {
            char* args[] = {argv[0], "--rank", rank, count, hex, exits ? "--peer-exits" : NULL, NULL};
            execv("/proc/self/exe", args);
            _exit(127);
        }
    }
    int failed = 0, left = n;
    time_t deadline = time(NULL) + 120;
    while (left > 0) {
        int status;
        pid_t done = waitpid(-1, &status, WNOHANG);
        if (done > 0) {
            left--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "a rank (pid %d) failed: %s %d\n", (int)done, WIFEXITED(status) ? "exit code" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                failed = 1;
            }
            continue;
        }
        if (time(NULL) > deadline) {
            fprintf(stderr, "the ranks did not finish within 120 s; killing them\n");
            for (int r = 0; r < n; r++) kill(pids[r], SIGKILL);
            while (waitpid(-1, NULL, 0) > 0) {}
            return 1;
        }
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (failed) printf("collectives_test: FAILED\n");
    else printf("collectives_test: %d ranks ok (libnativeparallel %d)\n", n, version);
    return failed;
}
