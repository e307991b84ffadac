// Matmul: c = a · bᵀ with f32 accumulation (the nn.Linear layout: b is the (out, in) weight).
//   a: (m, k); b: (n, k); c: (m, n). Entry points matmul_<in>_<out>: in = dtype of a and b, out = dtype of c.
// Grid: (ceil(n / 64), ceil(m / 64)), block 256 threads; each thread owns a 4 × 4 patch of the 64 × 64 tile.
// v1: shared-memory tiling, BK = 16, k-major tiles so the inner loop reads one broadcast a-value and
//     conflict-free b-values; outputs strided by 16 so a warp's stores are contiguous. Default.
//     (Next on the ladder: an mma.sync tensor-core path behind kernels/common/ wrappers.)
#include "common/dtypes.cuh"

#define MM_BM 64
#define MM_BN 64
#define MM_BK 16
#define MM_THREADS 256

struct MatmulArgs {
    const void* a;  // (m, k)
    const void* b;  // (n, k)
    void* c;        // (m, n)
    int m;
    int n;
    int k;
};

template <typename TIn, typename TOut>
__device__ void matmul(const MatmulArgs& p) {
    __shared__ float tile_a[MM_BK][MM_BM];
    __shared__ float tile_b[MM_BK][MM_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int row0 = blockIdx.y * MM_BM, col0 = blockIdx.x * MM_BN;
    // Loader mapping: 64 rows × 16 k per tile = 4 consecutive k of one row per thread.
    const int load_row = tid / 4, load_k = (tid % 4) * 4;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < p.k; k0 += MM_BK) {
        int ar = row0 + load_row, br = col0 + load_row;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int kk = k0 + load_k + e;
            tile_a[load_k + e][load_row] = (ar < p.m && kk < p.k) ? load_f<TIn>(p.a, (long long)ar * p.k + kk) : 0.0f;
            tile_b[load_k + e][load_row] = (br < p.n && kk < p.k) ? load_f<TIn>(p.b, (long long)br * p.k + kk) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < MM_BK; kk++) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = tile_a[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = tile_b[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();  // the next tile overwrites what this one read
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = row0 + ty + 16 * i;
        if (r >= p.m) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int c = col0 + tx + 16 * j;
            if (c < p.n) store_f<TOut>(p.c, (long long)r * p.n + c, acc[i][j]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_f32_f32(MatmulArgs p) { matmul<float, float>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_f32_bf16(MatmulArgs p) { matmul<float, bf16>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bf16_f32(MatmulArgs p) { matmul<bf16, float>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bf16_bf16(MatmulArgs p) { matmul<bf16, bf16>(p); }
