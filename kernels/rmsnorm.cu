// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
//   x, y: (rows, d); weight: (d). f32 statistics whatever the storage dtype.
// Grid: one block per row (grid-stride), block of 256 threads; launcher: RmsNormLauncher.
// v1: two passes over the row in global memory (sum of squares, then scale); rows stay in L1/L2. Default.
// Backward: with inv = 1/sqrt(mean(x^2) + eps) and g = d_y * weight,
//   d_x = inv * g - x * inv^3 * sum(g * x) / d (overwritten), d_weight += sum over rows of d_y * x * inv.
//   x, d_y, d_x: (rows, d); weight, d_weight: (d); inv: (rows) f32 workspace. One dtype for all but inv.
// rmsnorm_bwd_<dt>: one block of 256 per row (grid-stride): d_x, and inv of the row into the workspace.
// rmsnorm_bwd_weight_<dt>: one thread per column (grid-stride), rows summed in order from the workspace (no
//   atomics: deterministic run to run). Launched after rmsnorm_bwd on the same stream.
// v1 (both): plain loops in global memory. Default. (Next: row-chunk partials for d_weight when d is small.)
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

struct RmsNormBwdArgs {
    const void* x;       // (rows, d)
    const void* weight;  // (d)
    const void* d_y;     // (rows, d)
    void* d_x;           // (rows, d)
    void* d_weight;      // (d), accumulated
    float* inv;          // (rows) f32 workspace: written by rmsnorm_bwd, read by rmsnorm_bwd_weight
    int rows;
    int d;
    float eps;
};

template <typename T>
__device__ void rmsnorm_bwd(const RmsNormBwdArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.d;
        float sum_squares = 0.0f, sum_gx = 0.0f;
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            float v = load_f<T>(a.x, base + j);
            sum_squares += v * v;
            sum_gx += load_f<T>(a.d_y, base + j) * load_f<T>(a.weight, j) * v;
        }
        float inv = rsqrtf(block_sum(sum_squares, scratch) / a.d + a.eps);
        float dot = block_sum(sum_gx, scratch);
        float coef = inv * inv * inv * dot / a.d;
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            float g = load_f<T>(a.d_y, base + j) * load_f<T>(a.weight, j);
            store_f<T>(a.d_x, base + j, inv * g - load_f<T>(a.x, base + j) * coef);
        }
        if (threadIdx.x == 0) a.inv[r] = inv;
    }
}

template <typename T>
__device__ void rmsnorm_bwd_weight(const RmsNormBwdArgs& a) {
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < a.d; j += gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int r = 0; r < a.rows; r++) {
            long long i = (long long)r * a.d + j;
            sum += load_f<T>(a.d_y, i) * load_f<T>(a.x, i) * a.inv[r];
        }
        store_f<T>(a.d_weight, j, load_f<T>(a.d_weight, j) + sum);
    }
}

extern "C" __global__ void rmsnorm_bwd_f32(RmsNormBwdArgs a) { rmsnorm_bwd<float>(a); }
extern "C" __global__ void rmsnorm_bwd_bf16(RmsNormBwdArgs a) { rmsnorm_bwd<bf16>(a); }
extern "C" __global__ void rmsnorm_bwd_weight_f32(RmsNormBwdArgs a) { rmsnorm_bwd_weight<float>(a); }
extern "C" __global__ void rmsnorm_bwd_weight_bf16(RmsNormBwdArgs a) { rmsnorm_bwd_weight<bf16>(a); }
