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
// v1 (both): plain loops in global memory. The fallback of v2 (rows not a whole number of 16-byte vectors, unaligned
//     tensors, rows over 256 threads' registers). rmsnorm_bwd_weight runs one thread per column: d threads in all
//     (16 blocks for d = 4096), each walking every row, so a few SMs read all of x and d_y a second time.
// v2 rmsnorm_bwd_v2_<dtype> + rmsnorm_bwd_v2_weight_<dtype>: block b takes rows [b R, (b + 1) R) in order, each row's
//     x and d_y read once into registers with 16-byte loads (RMSNORM_VECS vectors of each per thread), d_x written with
//     16-byte stores, and d_y * x * inv summed per column in registers across the block's rows; the block writes that
//     partial row to `partials` (blocks, d). The weight kernel (8 warps per 32 columns) sums the partials in block order
//     (deterministic, no atomics) into d_weight. Default where it fits (d * size a multiple of 16 bytes, 16-byte aligned
//     tensors, d / N <= 4 * 256).
//     Predicted, H200 16384 x 4096 bf16 (528 blocks): x, d_y read once and d_x written (403 MB) + 9 MB of partials:
//     about 0.11-0.13 ms (3.2-3.7 TB/s); v1 reads x and d_y twice and its weight kernel runs on 16 SMs.
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

// ---- Backward v2: rows in registers, d_weight from per-block column partials. ----
struct RmsNormBwdV2Args {
    const void* x;       // (rows, d)
    const void* weight;  // (d)
    const void* d_y;     // (rows, d)
    void* d_x;           // (rows, d)
    void* d_weight;      // (d), accumulated
    float* partials;     // (blocks, d) f32 workspace: block b's column sums of d_y * x * inv over its rows
    int rows;
    int d;
    int rows_per_block;
    int blocks;          // grid of rmsnorm_bwd_v2
    float eps;
};

template <typename T>
__device__ void rmsnorm_bwd_v2(const RmsNormBwdV2Args& a) {
    constexpr int N = VecOf<T>::N;
    __shared__ float scratch[32];
    const int nv = a.d / N;  // whole 16-byte vectors (the host checks), every row aligned
    float acc[RMSNORM_VECS][N];
#pragma unroll
    for (int i = 0; i < RMSNORM_VECS; i++)
#pragma unroll
        for (int e = 0; e < N; e++) acc[i][e] = 0.0f;
    const int r0 = blockIdx.x * a.rows_per_block, r1 = min(a.rows, r0 + a.rows_per_block);
    for (int r = r0; r < r1; r++) {
        const long long base = (long long)r * a.d;
        uint4 xc[RMSNORM_VECS], gc[RMSNORM_VECS];
#pragma unroll
        for (int i = 0; i < RMSNORM_VECS; i++) {
            int k = threadIdx.x + i * blockDim.x;
            if (k < nv) {
                xc[i] = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.x) + base + k * N);
                gc[i] = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.d_y) + base + k * N);
            }
        }
        float sum_squares = 0.0f, sum_gx = 0.0f;
#pragma unroll
        for (int i = 0; i < RMSNORM_VECS; i++) {
            int k = threadIdx.x + i * blockDim.x;
            if (k >= nv) continue;
            float x[N], dy[N], w[N];
            unpack(xc[i], x);
            unpack(gc[i], dy);
            unpack(*reinterpret_cast<const uint4*>(static_cast<const T*>(a.weight) + k * N), w);
#pragma unroll
            for (int e = 0; e < N; e++) {
                sum_squares += x[e] * x[e];
                sum_gx += dy[e] * w[e] * x[e];
            }
        }
        const float inv = rsqrtf(block_sum(sum_squares, scratch) / a.d + a.eps);
        const float dot = block_sum(sum_gx, scratch);
        const float coef = inv * inv * inv * dot / a.d;
#pragma unroll
        for (int i = 0; i < RMSNORM_VECS; i++) {
            int k = threadIdx.x + i * blockDim.x;
            if (k >= nv) continue;
            float x[N], dy[N], w[N], dx[N];
            unpack(xc[i], x);
            unpack(gc[i], dy);
            unpack(*reinterpret_cast<const uint4*>(static_cast<const T*>(a.weight) + k * N), w);
#pragma unroll
            for (int e = 0; e < N; e++) {
                dx[e] = inv * (dy[e] * w[e]) - x[e] * coef;
                acc[i][e] += dy[e] * x[e] * inv;
            }
            *reinterpret_cast<uint4*>(static_cast<T*>(a.d_x) + base + k * N) = pack<T>(dx);
        }
    }
    float* part = a.partials + (long long)blockIdx.x * a.d;
#pragma unroll
    for (int i = 0; i < RMSNORM_VECS; i++) {
        int k = threadIdx.x + i * blockDim.x;
        if (k >= nv) continue;
#pragma unroll
        for (int e = 0; e < N; e++) part[k * N + e] = acc[i][e];
    }
}

// Block of 8 warps per 32 columns: warp w sums partial rows w, w + 8, ... in order, then warp 0 adds the 8 in order.
template <typename T>
__device__ void rmsnorm_bwd_v2_weight(const RmsNormBwdV2Args& a) {
    __shared__ float sums[8][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int j = blockIdx.x * 32 + lane;
    float s = 0.0f;
    if (j < a.d)
        for (int b = warp; b < a.blocks; b += 8) s += a.partials[(long long)b * a.d + j];
    sums[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && j < a.d) {
        float total = 0.0f;
#pragma unroll
        for (int w = 0; w < 8; w++) total += sums[w][lane];
        store_f<T>(a.d_weight, j, load_f<T>(a.d_weight, j) + total);
    }
}

extern "C" __global__ void __launch_bounds__(256) rmsnorm_bwd_v2_f32(RmsNormBwdV2Args a) { rmsnorm_bwd_v2<float>(a); }
extern "C" __global__ void __launch_bounds__(256) rmsnorm_bwd_v2_bf16(RmsNormBwdV2Args a) { rmsnorm_bwd_v2<bf16>(a); }
extern "C" __global__ void __launch_bounds__(256) rmsnorm_bwd_v2_weight_f32(RmsNormBwdV2Args a) { rmsnorm_bwd_v2_weight<float>(a); }
extern "C" __global__ void __launch_bounds__(256) rmsnorm_bwd_v2_weight_bf16(RmsNormBwdV2Args a) { rmsnorm_bwd_v2_weight<bf16>(a); }
