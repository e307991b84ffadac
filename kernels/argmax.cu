// Argmax per row: indices[r] = index of the largest x[r, :], lowest index on ties (greedy decoding).
//   x: (rows, n), n >= 1; indices: (rows) i32.
// Grid: one block per row (grid-stride), 256 threads.
// v1: per-thread running best, then a block (value desc, index asc) reduction. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct ArgmaxArgs {
    const void* x;  // (rows, n)
    int* indices;   // (rows)
    int rows;
    int n;
};

template <typename T>
__device__ void argmax(const ArgmaxArgs& a) {
    __shared__ float scratch_v[32];
    __shared__ int scratch_i[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.n;
        float best_v = NP_NEG_INF;
        int best_i = 0x7fffffff;
        for (int j = threadIdx.x; j < a.n; j += blockDim.x) {
            float v = load_f<T>(a.x, base + j);
            if (np_ranks_before(v, j, best_v, best_i)) { best_v = v; best_i = j; }
        }
        block_argmax(best_v, best_i, scratch_v, scratch_i);
        // A row of -inf (or NaN) leaves no winner: report index 0 as the reference does.
        if (threadIdx.x == 0) a.indices[r] = best_i == 0x7fffffff ? 0 : best_i;
    }
}

extern "C" __global__ void argmax_f32(ArgmaxArgs a) { argmax<float>(a); }
extern "C" __global__ void argmax_bf16(ArgmaxArgs a) { argmax<bf16>(a); }
