// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension.
//   x, y: (rows, d); weight: (d). f32 statistics whatever the storage dtype.
// Grid: one block per row (grid-stride); launcher: GpuKernels.RmsNorm.
// v1 rmsnorm_fwd_<dtype>: 256 threads, two passes over the row in global memory (sum of squares, then scale); rows
//     stay in L1/L2.
//     H200, 16384 x 4096 bf16: 0.177 ms, 1.52 TB/s (36 % of copy): 2-byte loads, 16 per thread per row, too few
//     bytes in flight to cover HBM latency.
// v2 rmsnorm_fwd_v2_<dtype>: blocks sized by the host (whole warps, up to 1024 threads) so that RMSNORM_VECS 16-byte
//     vectors per thread cover the row; the row is read once into registers with 16-byte loads, scaled from the
//     registers and written with 16-byte stores (weight through 16-byte loads too when its misalignment matches the
//     row's). Rows over 4 * 1024 vectors take two vectorised passes. Default.
//     Predicted, H200 16384 x 4096 bf16 (blocks of 160 threads, about 12 per SM, 96 KB in flight per SM): 268 MB moved,
//     0.068-0.075 ms, 3.6-3.9 TB/s (85-92 % of copy).
// Backward: with inv = 1/sqrt(mean(x^2) + eps) and g = d_y * weight,
//   d_x = inv * g - x * inv^3 * sum(g * x) / d (overwritten), d_weight += sum over rows of d_y * x * inv.
//   x, d_y, d_x: (rows, d); weight, d_weight: (d); inv: (rows) f32 workspace. One dtype for all but inv.
// rmsnorm_bwd_<dt>: one block of 256 per row (grid-stride): d_x, and inv of the row into the workspace.
// rmsnorm_bwd_weight_<dt>: one thread per column (grid-stride), rows summed in order from the workspace (no
//   atomics: deterministic run to run). Launched after rmsnorm_bwd on the same stream.
// v1 (both): plain loops in global memory. Default. (Next: row-chunk partials for d_weight when d is small.)
#include "common/dtypes.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"

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

#define RMSNORM_VECS 4  // 16-byte vectors of the row a thread keeps in registers

template <typename T>
__device__ void rmsnorm_fwd_v2(const RmsNormArgs& a) {
    constexpr int N = VecOf<T>::N;
    __shared__ float scratch[32];
    const int sw = row_vec_start<T>(a.weight);
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        const T* row = static_cast<const T*>(a.x) + (long long)r * a.d;
        T* out = static_cast<T*>(a.y) + (long long)r * a.d;
        const int s0 = row_vec_start<T>(row), nv = row_vec_count<T>(s0, a.d);
        const bool aligned_out = row_vec_start<T>(out) == s0, aligned_w = sw == s0;
        if (nv <= RMSNORM_VECS * (int)blockDim.x) {
            uint4 cache[RMSNORM_VECS];
            float sum_squares = 0.0f;
#pragma unroll
            for (int i = 0; i < RMSNORM_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k < nv) cache[i] = load_row_vec<T>(row, s0, a.d, k, 0.0f);
            }
#pragma unroll
            for (int i = 0; i < RMSNORM_VECS; i++) {
                if ((int)threadIdx.x + i * (int)blockDim.x >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) sum_squares += f[e] * f[e];
            }
            const float inv = rsqrtf(block_sum(sum_squares, scratch) / a.d + a.eps);
#pragma unroll
            for (int i = 0; i < RMSNORM_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k >= nv) continue;
                float f[N], w[N];
                unpack(cache[i], f);
                unpack(load_row_vec<T>(a.weight, s0, a.d, k, 0.0f, aligned_w), w);
#pragma unroll
                for (int e = 0; e < N; e++) f[e] = f[e] * inv * w[e];
                store_row_vec<T>(out, s0, a.d, k, f, aligned_out);
            }
        } else {
            float sum_squares = 0.0f;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N];
                unpack(load_row_vec<T>(row, s0, a.d, k, 0.0f), f);
#pragma unroll
                for (int e = 0; e < N; e++) sum_squares += f[e] * f[e];
            }
            const float inv = rsqrtf(block_sum(sum_squares, scratch) / a.d + a.eps);
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N], w[N];
                unpack(load_row_vec<T>(row, s0, a.d, k, 0.0f), f);
                unpack(load_row_vec<T>(a.weight, s0, a.d, k, 0.0f, aligned_w), w);
#pragma unroll
                for (int e = 0; e < N; e++) f[e] = f[e] * inv * w[e];
                store_row_vec<T>(out, s0, a.d, k, f, aligned_out);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024) rmsnorm_fwd_v2_f32(RmsNormArgs a) { rmsnorm_fwd_v2<float>(a); }
extern "C" __global__ void __launch_bounds__(1024) rmsnorm_fwd_v2_bf16(RmsNormArgs a) { rmsnorm_fwd_v2<bf16>(a); }

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
