// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
//   x, y: (rows, d); weight: (d). f32 statistics whatever the storage dtype.
// Grid: one block per row (grid-stride), block of 256 threads; launcher: RmsNormLauncher.
// v1: two passes over the row in global memory (sum of squares, then scale); rows stay in L1/L2. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct RmsNormArgs {
    const void* x;       // (rows, d)
    const void* weight;  // (d)
    void* y;             // (rows, d)
    int rows;
    int d;
    float eps;
};

template <typename T>
__device__ void rmsnorm_fwd(const RmsNormArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.d;
        float sum_squares = 0.0f;
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            float v = load_f<T>(a.x, base + j);
            sum_squares += v * v;
        }
        float inv = rsqrtf(block_sum(sum_squares, scratch) / a.d + a.eps);
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            store_f<T>(a.y, base + j, load_f<T>(a.x, base + j) * inv * load_f<T>(a.weight, j));
        }
    }
}

extern "C" __global__ void rmsnorm_fwd_f32(RmsNormArgs a) { rmsnorm_fwd<float>(a); }
extern "C" __global__ void rmsnorm_fwd_bf16(RmsNormArgs a) { rmsnorm_fwd<bf16>(a); }
