// Matmul: c = a · bᵀ with f32 accumulation (the nn.Linear layout: b is the (out, in) weight).
//   a: (m, k); b: (n, k); c: (m, n). Entry points name the dtype of a and b, then of c.
// Grid: (ceil(n / 64), ceil(m / 64)); v1 blocks of 256 threads (a 4 x 4 patch each), v2 blocks of 128 (4 warps).
// v1 matmul_<in>_<out>: shared-memory tiling, BK = 16, k-major tiles so the inner loop reads one broadcast
//     a-value and conflict-free b-values; outputs strided by 16 so a warp's stores are contiguous. Default for
//     f32 inputs.
// v2 matmul_tc_bf16_<out>: tensor cores. 64 x 64 tile per block of 4 warps, each warp a 32 x 32 quarter made of
//     2 x 4 mma.sync m16n8k16 (bf16 in, f32 accumulate); tiles of BK = 32 staged in shared memory with rows padded
//     by 8 elements (16 bytes) so ldmatrix's eight row reads hit different banks. Default for bf16 inputs.
//     (Next: cp.async double buffering, then wgmma + TMA on sm_90a.)
// Backward of y = x · Wᵀ (x: (m, k), W: (n, k), y: (m, n)), operands all f32 or all bf16, f32 accumulation:
//   matmul_bwd_input_<dt>: d_x (m, k) = d_y (m, n) · W; grid (ceil(k / 64), ceil(m / 64)).
//   matmul_bwd_weight_<dt>: d_w (n, k) = (accumulate ? d_w : 0) + d_yᵀ · x, summed over the m rows in order;
//     grid (ceil(k / 64), ceil(n / 64)).
// v1 (both): the SIMT tiling of matmul v1 (64 x 64 tiles, BK = 16, 256 threads of 4 x 4 outputs) over strided
//     operands; each tile loader reads along its operand's contiguous dimension. Deterministic (no atomics, one
//     thread per output, fixed summation order). Default. (Next: tensor cores for bf16, split-m for d_w.)
#include "common/dtypes.cuh"
#include "common/mma.cuh"

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

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_PAD 8
#define TC_THREADS 128

// Stages rows [row0, row0 + 64) x k [k0, k0 + 32) of a bf16 (rows, k) matrix into shared memory, zero-filling
// outside the matrix. 128 threads x 2 rows x 8 consecutive k; one 16-byte load when the run is whole and aligned.
__device__ __forceinline__ void tc_stage(unsigned short (*tile)[TC_BK + TC_PAD], const unsigned short* src, int rows,
                                         int k, int row0, int k0) {
    const int tid = threadIdx.x, seg = (tid % 4) * 8;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int r = tid / 4 + 32 * i, gr = row0 + r, gk = k0 + seg;
        const unsigned short* p = src + (long long)gr * k + gk;
        if (gr < rows && gk + 8 <= k && ((reinterpret_cast<unsigned long long>(p) & 15) == 0)) {
            *reinterpret_cast<uint4*>(&tile[r][seg]) = *reinterpret_cast<const uint4*>(p);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) tile[r][seg + e] = (gr < rows && gk + e < k) ? p[e] : (unsigned short)0;
        }
    }
}

template <typename TOut>
__device__ void matmul_tc(const MatmulArgs& p) {
    __shared__ __align__(16) unsigned short tile_a[TC_BM][TC_BK + TC_PAD];
    __shared__ __align__(16) unsigned short tile_b[TC_BN][TC_BK + TC_PAD];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wm = warp / 2, wn = warp % 2;  // this warp's 32 x 32 quarter of the tile
    const int row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
    const unsigned short* a = static_cast<const unsigned short*>(p.a);
    const unsigned short* b = static_cast<const unsigned short*>(p.b);

    FragC acc[2][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j].r[e] = 0.0f;

    for (int k0 = 0; k0 < p.k; k0 += TC_BK) {
        tc_stage(tile_a, a, p.m, p.k, row0, k0);
        tc_stage(tile_b, b, p.n, p.k, col0, k0);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TC_BK; kk += 16) {
            FragA fa[2];
            FragB fb[4];
#pragma unroll
            for (int i = 0; i < 2; i++) load_a_fragment(fa[i], &tile_a[wm * 32 + i * 16][kk], TC_BK + TC_PAD);
#pragma unroll
            for (int j = 0; j < 4; j++) load_b_fragment(fb[j], &tile_b[wn * 32 + j * 8][kk], TC_BK + TC_PAD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_bf16_16816(acc[i][j], fa[i], fb[j]);
        }
        __syncthreads();  // the next tile overwrites what this one read
    }

    // Each accumulator fragment: rows g and g + 8, columns 2t and 2t + 1 of its 16 x 8 piece.
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = row0 + wm * 32 + i * 16 + g + 8 * (e / 2);
                int c = col0 + wn * 32 + j * 8 + 2 * t + (e % 2);
                if (r < p.m && c < p.n) store_f<TOut>(p.c, (long long)r * p.n + c, acc[i][j].r[e]);
            }
}

extern "C" __global__ void __launch_bounds__(TC_THREADS) matmul_tc_bf16_f32(MatmulArgs p) { matmul_tc<float>(p); }
extern "C" __global__ void __launch_bounds__(TC_THREADS) matmul_tc_bf16_bf16(MatmulArgs p) { matmul_tc<bf16>(p); }

struct MatmulBwdArgs {
    const void* d_y;    // (m, n)
    const void* other;  // W (n, k) for matmul_bwd_input, x (m, k) for matmul_bwd_weight
    void* out;          // d_x (m, k) or d_w (n, k)
    int m;
    int n;
    int k;
    int accumulate;  // matmul_bwd_weight: d_w += instead of d_w =
};

// c (M, N) = (accumulate ? c : 0) + Σ_l A(i, l) · B(l, j), with B(l, j) = b[l * N + j] and
// A(i, l) = a[l * lda + i] when A_T (a stored (L, M)), else a[i * lda + l] (a stored (M, L)).
template <typename T, bool A_T>
__device__ void matmul_bwd_tiles(const void* a, int lda, const void* b, void* c, int M, int N, int L, bool accumulate) {
    __shared__ float tile_a[MM_BK][MM_BM];
    __shared__ float tile_b[MM_BK][MM_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int row0 = blockIdx.y * MM_BM, col0 = blockIdx.x * MM_BN;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int l0 = 0; l0 < L; l0 += MM_BK) {
        // Loaders: 64 x 16 elements per tile, 4 per thread, consecutive threads along the contiguous dimension.
        if (A_T) {
            int r = tid % 64, gr = row0 + r;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int lk = (tid / 64) * 4 + e, gl = l0 + lk;
                tile_a[lk][r] = (gr < M && gl < L) ? load_f<T>(a, (long long)gl * lda + gr) : 0.0f;
            }
        } else {
            int r = tid / 4, gr = row0 + r;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int lk = (tid % 4) * 4 + e, gl = l0 + lk;
                tile_a[lk][r] = (gr < M && gl < L) ? load_f<T>(a, (long long)gr * lda + gl) : 0.0f;
            }
        }
        {
            int cc = tid % 64, gc = col0 + cc;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int lk = (tid / 64) * 4 + e, gl = l0 + lk;
                tile_b[lk][cc] = (gc < N && gl < L) ? load_f<T>(b, (long long)gl * N + gc) : 0.0f;
            }
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
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int cc = col0 + tx + 16 * j;
            if (cc >= N) continue;
            long long o = (long long)r * N + cc;
            store_f<T>(c, o, accumulate ? load_f<T>(c, o) + acc[i][j] : acc[i][j]);
        }
    }
}

// d_x (m, k) = d_y (m, n) · W (n, k): M = m, N = k, summed over n.
template <typename T>
__device__ void matmul_bwd_input(const MatmulBwdArgs& p) {
    matmul_bwd_tiles<T, false>(p.d_y, p.n, p.other, p.out, p.m, p.k, p.n, false);
}

// d_w (n, k) += d_yᵀ (n, m) · x (m, k): M = n, N = k, summed over m.
template <typename T>
__device__ void matmul_bwd_weight(const MatmulBwdArgs& p) {
    matmul_bwd_tiles<T, true>(p.d_y, p.n, p.other, p.out, p.n, p.k, p.m, p.accumulate != 0);
}

extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bwd_input_f32(MatmulBwdArgs p) { matmul_bwd_input<float>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bwd_input_bf16(MatmulBwdArgs p) { matmul_bwd_input<bf16>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bwd_weight_f32(MatmulBwdArgs p) { matmul_bwd_weight<float>(p); }
extern "C" __global__ void __launch_bounds__(MM_THREADS) matmul_bwd_weight_bf16(MatmulBwdArgs p) { matmul_bwd_weight<bf16>(p); }
