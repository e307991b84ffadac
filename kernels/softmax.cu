// Softmax over the last dimension: y = softmax(scale * x).
//   x, y: (rows, n).
// Grid: one block per row (grid-stride), 256 threads.
// v1: one online pass for (max, sum) per thread (rescaling the sum when the max grows), block-combined, then
//     one write pass: two reads of the row instead of three. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct SoftmaxArgs {
    const void* x;  // (rows, n)
    void* y;        // (rows, n)
    int rows;
    int n;
    float scale;
};

template <typename T>
__device__ void softmax_fwd(const SoftmaxArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.n;
        float m = NP_NEG_INF, s = 0.0f;
        for (int j = threadIdx.x; j < a.n; j += blockDim.x) {
            float v = a.scale * load_f<T>(a.x, base + j);
            if (v > m) { s = s * expf(m - v) + 1.0f; m = v; }
            else s += expf(v - m);
        }
        float row_max = block_max(m, scratch);
        // Each thread's partial sum, moved to the row's max; threads that saw nothing contribute 0.
        float part = (m == NP_NEG_INF) ? 0.0f : s * expf(m - row_max);
        float inv = 1.0f / block_sum(part, scratch);
        for (int j = threadIdx.x; j < a.n; j += blockDim.x) {
            store_f<T>(a.y, base + j, expf(a.scale * load_f<T>(a.x, base + j) - row_max) * inv);
        }
    }
}

extern "C" __global__ void softmax_fwd_f32(SoftmaxArgs a) { softmax_fwd<float>(a); }
extern "C" __global__ void softmax_fwd_bf16(SoftmaxArgs a) { softmax_fwd<bf16>(a); }
