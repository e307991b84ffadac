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

// ---- v3 (bf16 forward) and v2 (bf16 backward): one tensor-core tile for every layout of the three products ----
// c (M, N) = (accumulate ? c : 0) + A · B with A (M, K) and B (K, N) bf16, f32 accumulation. Each operand is stored
// with K contiguous ("kc": A as (M, K), B as (N, K)) or with its outer dimension contiguous ("oc": A as (K, M),
// B as (K, N)); ldmatrix loads kc tiles as they are and oc tiles with .trans, so no operand is ever transposed in
// memory. Block: 128 x 128 outputs, 8 warps of 64 x 32 (4 x 4 mma.sync m16n8k16 each, 64 f32 accumulators per
// thread); BK = 32; two shared-memory stages filled by cp.async while the other is multiplied.
// Why these sizes: 128 x 128 halves the global traffic per flop of the 64 x 64 v2 tile, 8 warps keep 16 mma in
// flight per warp per k-step, and two stages of both operands fit the 48 KB of static shared memory.
#define G3_BM 128
#define G3_BN 128
#define G3_PAD 8  // 16 bytes: consecutive rows of an ldmatrix land in different banks (48, 80 and 272 B strides)
#define G3_THREADS 256

// One operand's stage: 128 outer x BK k elements. kc: [outer][BK + PAD]; oc: [k][128 + PAD].
template <int BK>
struct G3Stage {
    static constexpr int kc = G3_BM * (BK + G3_PAD), oc = BK * (G3_BM + G3_PAD);
    static constexpr int elems = kc > oc ? kc : oc;
};

// Stages outer [o0, o0 + 128) x k [k0, k0 + BK) of an operand into `tile`, zero outside the matrix. Whole, aligned
// 16-byte runs go by cp.async; a run that crosses an edge or is misaligned (ld not a multiple of 8) by scalar loads.
template <bool OC, int BK>
__device__ __forceinline__ void g3_stage(unsigned short* tile, const unsigned short* src, long long ld, int outer,
                                         int k, int o0, int k0) {
    constexpr int runs = G3_BM * BK / 8, per_kc_row = BK / 8, per_oc_row = G3_BM / 8;
#pragma unroll
    for (int i = 0; i < runs / G3_THREADS; i++) {
        int chunk = threadIdx.x + G3_THREADS * i;
        int r = OC ? chunk / per_oc_row : chunk / per_kc_row, seg = OC ? (chunk % per_oc_row) * 8 : (chunk % per_kc_row) * 8;
        int go = OC ? o0 + seg : o0 + r, gk = OC ? k0 + r : k0 + seg;
        unsigned short* dst = tile + (OC ? r * (G3_BM + G3_PAD) : r * (BK + G3_PAD)) + seg;
        const unsigned short* p = src + (OC ? (long long)gk * ld + go : (long long)go * ld + gk);
        bool whole = OC ? (gk < k && go + 8 <= outer) : (go < outer && gk + 8 <= k);
        if (whole && ((reinterpret_cast<unsigned long long>(p) & 15) == 0)) {
            ptx_cp_async_16(dst, p);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                bool inside = OC ? (gk < k && go + e < outer) : (go < outer && gk + e < k);
                dst[e] = inside ? p[e] : (unsigned short)0;
            }
        }
    }
}

// STAGES shared-memory stages of BK: STAGES - 1 tiles are in flight while one is multiplied. v3: BK 32, 2 stages
// (40 KB); v4: BK 16, 4 stages (48 KB): three loads ahead instead of one, for the same shared memory.
template <bool A_OC, bool B_OC, typename TOut, int BK, int STAGES>
__device__ void gemm_tc(const void* a_, long long lda, const void* b_, long long ldb, void* c, int M, int N, int K,
                        bool accumulate) {
    constexpr int SE = G3Stage<BK>::elems;
    __shared__ __align__(16) unsigned short smem[STAGES][2][SE];  // [stage][operand][tile]
    const unsigned short* a = static_cast<const unsigned short*>(a_);
    const unsigned short* b = static_cast<const unsigned short*>(b_);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, q = lane / 8;
    const int wm = warp / 4, wn = warp % 4;  // this warp's 64 x 32 piece of the tile
    const int row0 = blockIdx.y * G3_BM, col0 = blockIdx.x * G3_BN;

    FragC acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j].r[e] = 0.0f;

    const int tiles = (K + BK - 1) / BK;
    // Prologue: the first STAGES - 1 tiles, one commit group each (empty past the end, so the count stays fixed).
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < tiles) {
            g3_stage<A_OC, BK>(smem[s][0], a, lda, M, K, row0, s * BK);
            g3_stage<B_OC, BK>(smem[s][1], b, ldb, N, K, col0, s * BK);
        }
        ptx_cp_async_commit();
    }
    for (int t = 0; t < tiles; t++) {
        ptx_cp_async_wait<STAGES - 2>();  // tile t's group has landed; the later ones may still fly
        __syncthreads();                   // ...for every thread's copies, and every warp is done with tile t - 1
        {
            // Refill the stage tile t - 1 used with tile t + STAGES - 1, before multiplying tile t.
            int next = t + STAGES - 1, s = next % STAGES;
            if (next < tiles) {
                g3_stage<A_OC, BK>(smem[s][0], a, lda, M, K, row0, next * BK);
                g3_stage<B_OC, BK>(smem[s][1], b, ldb, N, K, col0, next * BK);
            }
            ptx_cp_async_commit();
        }
        const unsigned short* ta = smem[t % STAGES][0];
        const unsigned short* tb = smem[t % STAGES][1];
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            FragA fa[4];
            FragB fb[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int m = wm * 64 + i * 16;
                // Matrix q of the x4: kc (m + 8 (q % 2), k + 8 (q / 2)); oc, transposed: (k + 8 (q / 2), m + 8 (q % 2)).
                if (A_OC) ptx_ldmatrix_x4_trans(fa[i].r, ta + (kk + lane % 8 + 8 * (q / 2)) * (G3_BM + G3_PAD) + m + 8 * (q % 2));
                else ptx_ldmatrix_x4(fa[i].r, ta + (m + lane % 8 + 8 * (q % 2)) * (BK + G3_PAD) + kk + 8 * (q / 2));
            }
#pragma unroll
            for (int j = 0; j < 4; j += 2) {
                int n = wn * 32 + j * 8;
                unsigned r[4];
                // Two n8 fragments per x4: matrices (n, k), (n, k + 8), (n + 8, k), (n + 8, k + 8).
                if (B_OC) ptx_ldmatrix_x4_trans(r, tb + (kk + lane % 8 + 8 * (q % 2)) * (G3_BN + G3_PAD) + n + 8 * (q / 2));
                else ptx_ldmatrix_x4(r, tb + (n + lane % 8 + 8 * (q / 2)) * (BK + G3_PAD) + kk + 8 * (q % 2));
                fb[j].r[0] = r[0];
                fb[j].r[1] = r[1];
                fb[j + 1].r[0] = r[2];
                fb[j + 1].r[1] = r[3];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_bf16_16816(acc[i][j], fa[i], fb[j]);
        }
    }

    const int g = lane / 4, tq = lane % 4;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = row0 + wm * 64 + i * 16 + g + 8 * (e / 2);
                int cc = col0 + wn * 32 + j * 8 + 2 * tq + (e % 2);
                if (r >= M || cc >= N) continue;
                long long o = (long long)r * N + cc;
                store_f<TOut>(c, o, accumulate ? load_f<TOut>(c, o) + acc[i][j].r[e] : acc[i][j].r[e]);
            }
}

// v3 forward: c (m, n) = a (m, k) · b (n, k)ᵀ; both operands k-contiguous. Grid (ceil(n / 128), ceil(m / 128)).
// v4: the same with BK 16 and 4 stages.
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_v3_bf16_f32(MatmulArgs p) {
    gemm_tc<false, false, float, 32, 2>(p.a, p.k, p.b, p.k, p.c, p.m, p.n, p.k, false);
}
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_v3_bf16_bf16(MatmulArgs p) {
    gemm_tc<false, false, bf16, 32, 2>(p.a, p.k, p.b, p.k, p.c, p.m, p.n, p.k, false);
}
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_v4_bf16_f32(MatmulArgs p) {
    gemm_tc<false, false, float, 16, 4>(p.a, p.k, p.b, p.k, p.c, p.m, p.n, p.k, false);
}
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_v4_bf16_bf16(MatmulArgs p) {
    gemm_tc<false, false, bf16, 16, 4>(p.a, p.k, p.b, p.k, p.c, p.m, p.n, p.k, false);
}
// v2 d_x (m, k) = d_y (m, n) · W (n, k): A = d_y (kc), B = W stored (K = n, N = k) (oc). Grid (ceil(k / 128), ceil(m / 128)).
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_bwd_input_v2_bf16(MatmulBwdArgs p) {
    gemm_tc<false, true, bf16, 32, 2>(p.d_y, p.n, p.other, p.k, p.out, p.m, p.k, p.n, false);
}
// v2 d_w (n, k) (+)= d_yᵀ · x: A = d_y stored (K = m, M = n) (oc), B = x stored (K = m, N = k) (oc).
// Grid (ceil(k / 128), ceil(n / 128)).
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_bwd_weight_v2_bf16(MatmulBwdArgs p) {
    gemm_tc<true, true, bf16, 32, 2>(p.d_y, p.n, p.other, p.k, p.out, p.n, p.k, p.m, p.accumulate != 0);
}
// v3 of both: BK 16, 4 stages.
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_bwd_input_v3_bf16(MatmulBwdArgs p) {
    gemm_tc<false, true, bf16, 16, 4>(p.d_y, p.n, p.other, p.k, p.out, p.m, p.k, p.n, false);
}
extern "C" __global__ void __launch_bounds__(G3_THREADS) matmul_bwd_weight_v3_bf16(MatmulBwdArgs p) {
    gemm_tc<true, true, bf16, 16, 4>(p.d_y, p.n, p.other, p.k, p.out, p.n, p.k, p.m, p.accumulate != 0);
}
