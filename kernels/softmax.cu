// Softmax over the last dimension: y = softmax(scale * x).
//   x, y: (rows, n).
// Grid: one block per row (grid-stride).
// v1 softmax_fwd_<dtype>: 256 threads; one online pass for (max, sum) per thread (rescaling the sum when the max
//     grows), block-combined, then one write pass: two reads of the row instead of three.
//     H200, 4096 x 32000 f32: 0.608 ms, 1.72 TB/s (41 % of copy): 2- or 4-byte loads, and with 8 blocks of 128 KB
//     rows per SM (135 MB) the second read misses L2, so the row comes from HBM twice.
// v2 softmax_fwd_v2_<dtype>: blocks of up to 1024 threads (the host sizes the block so SOFTMAX_VECS 16-byte vectors
//     per thread cover the row); the row is read once with 16-byte loads into registers, max and sum of exp come from
//     the registers, then the row is written with 16-byte stores. f32 keeps exp(x - max) in the registers (one exp
//     per element). Rows longer than the registers hold (over 32 K f32 / 64 K bf16) take v1's two passes, vectorised.
//     Default.
//     Predicted, H200 4096 x 32000 f32: 1 read + 1 write = 1.05 GB; one 128 KB row per SM in flight, the exps and
//     two block reductions (about 1.5 us a row) partly exposed: 0.27-0.30 ms, 3.5-3.9 TB/s (83-92 % of copy).
#include "common/dtypes.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"

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

// ---- v2: the row in registers, 16-byte loads. ----
#define SOFTMAX_VECS 8  // 16-byte vectors a thread keeps: rows up to 8 * 1024 vectors (32 K f32, 64 K bf16) stay in registers

template <typename T>
__device__ void softmax_fwd_v2(const SoftmaxArgs& a) {
    constexpr int N = VecOf<T>::N;
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        const T* row = static_cast<const T*>(a.x) + (long long)r * a.n;
        T* out = static_cast<T*>(a.y) + (long long)r * a.n;
        const int s0 = row_vec_start<T>(row), nv = row_vec_count<T>(s0, a.n);
        const bool aligned = row_vec_start<T>(out) == s0;
        if (nv <= SOFTMAX_VECS * (int)blockDim.x) {
            // One read of the row from memory: every later pass works on the registers.
            uint4 cache[SOFTMAX_VECS];
            float m = NP_NEG_INF;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k < nv) cache[i] = load_row_vec<T>(row, s0, a.n, k, 0.0f);
            }
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++)
                    if (in_row(s0 + N * k, e, a.n)) m = fmaxf(m, a.scale * f[e]);
            }
            const float row_max = block_max(m, scratch);
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) {
                    f[e] = in_row(s0 + N * k, e, a.n) ? expf(a.scale * f[e] - row_max) : 0.0f;
                    s += f[e];
                }
                // f32 keeps the exponentials (one exp per element); bf16 could not hold them exactly, so recomputes.
                if (sizeof(T) == 4) cache[i] = pack<T>(f);
            }
            const float inv = 1.0f / block_sum(s, scratch);
#pragma unroll
            for (int i = 0; i < SOFTMAX_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) f[e] = (sizeof(T) == 4 ? f[e] : expf(a.scale * f[e] - row_max)) * inv;
                store_row_vec<T>(out, s0, a.n, k, f, aligned);
            }
        } else {
            // Longer rows: v1's two passes (online max and sum, then write), with 16-byte loads.
            float m = NP_NEG_INF, s = 0.0f;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N];
                unpack(load_row_vec<T>(row, s0, a.n, k, 0.0f), f);
                float vm = NP_NEG_INF;
#pragma unroll
                for (int e = 0; e < N; e++) {
                    f[e] = in_row(s0 + N * k, e, a.n) ? a.scale * f[e] : NP_NEG_INF;
                    vm = fmaxf(vm, f[e]);
                }
                if (vm == NP_NEG_INF) continue;
                if (vm > m) { s = m == NP_NEG_INF ? 0.0f : s * expf(m - vm); m = vm; }
#pragma unroll
                for (int e = 0; e < N; e++) s += expf(f[e] - m);
            }
            const float row_max = block_max(m, scratch);
            const float part = (m == NP_NEG_INF) ? 0.0f : s * expf(m - row_max);
            const float inv = 1.0f / block_sum(part, scratch);
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N];
                unpack(load_row_vec<T>(row, s0, a.n, k, 0.0f), f);
#pragma unroll
                for (int e = 0; e < N; e++) f[e] = expf(a.scale * f[e] - row_max) * inv;
                store_row_vec<T>(out, s0, a.n, k, f, aligned);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024) softmax_fwd_v2_f32(SoftmaxArgs a) { softmax_fwd_v2<float>(a); }
extern "C" __global__ void __launch_bounds__(1024) softmax_fwd_v2_bf16(SoftmaxArgs a) { softmax_fwd_v2<bf16>(a); }
