// Top-k per row: the k largest values of x[r, :] in descending order, lower index first on ties.
//   x: (rows, n); values: (rows, k) f32; indices: (rows, k) i32; 1 <= k <= min(n, NP_MAX_TOPK).
// Grid: one block per row (grid-stride), 256 threads.
// v1: k rounds of a block argmax, each over the elements ranked after the previous winner in the total order
//     (value desc, index asc): no scratch, no sort; O(k n) reads, fine for sampling-sized k. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct TopKArgs {
    const void* x;   // (rows, n)
    float* values;   // (rows, k)
    int* indices;    // (rows, k)
    int rows;
    int n;
    int k;
};

template <typename T>
__device__ void topk(const TopKArgs& a) {
    __shared__ float scratch_v[32];
    __shared__ int scratch_i[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.n;
        // The previous winner; everything ranked before it is already taken. Start above everything.
        float prev_v = __int_as_float(0x7f800000);
        int prev_i = -1;
        for (int round = 0; round < a.k; round++) {
            float best_v = NP_NEG_INF;
            int best_i = 0x7fffffff;
            for (int j = threadIdx.x; j < a.n; j += blockDim.x) {
                float v = load_f<T>(a.x, base + j);
                bool remaining = np_ranks_before(prev_v, prev_i, v, j);
                if (remaining && np_ranks_before(v, j, best_v, best_i)) { best_v = v; best_i = j; }
            }
            block_argmax(best_v, best_i, scratch_v, scratch_i);
            // A row with fewer than k comparable values (NaN) has no winner left: report index 0 as argmax does,
            // never an index outside the row.
            if (best_i == 0x7fffffff) best_i = 0;
            if (threadIdx.x == 0) {
                a.values[(long long)r * a.k + round] = best_v;
                a.indices[(long long)r * a.k + round] = best_i;
            }
            prev_v = best_v;
            prev_i = best_i;
        }
    }
}

extern "C" __global__ void topk_f32(TopKArgs a) { topk<float>(a); }
extern "C" __global__ void topk_bf16(TopKArgs a) { topk<bf16>(a); }
