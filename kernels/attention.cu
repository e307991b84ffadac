// Causal attention with grouped-query heads (query head h reads kv head h / (hq / hkv)).
//   attention_prefill_<dtype>: q (batch, tq, hq, d); k, v (batch, tk, hkv, d); out (batch, tq, hq, d).
//     Query i sits at global position query_start + i and sees keys j <= query_start + i, j < tk; so a
//     token-split (sequence-parallel) slice of queries attends to all-gathered K/V with the right mask.
//   attention_decode_<dtype>: q (batch, hq, d); k_cache, v_cache (batch, capacity, hkv, d); lengths (batch) i32:
//     one new token per sequence over the first lengths[b] cache rows; out (batch, hq, d).
// Both use one-pass online softmax (running max and sum, rescaled accumulators), so no (tq, tk) score matrix
// is ever stored and any sequence length fits. d <= NP_MAX_HEAD_DIM: lane l holds elements l, l + 32, ...
// v1 prefill: one warp per query row, 4 rows per block, a warp-wide dot product per key. Default.
// v1 decode: one block of 4 warps per (sequence, head), keys split across warps (split-K), partial softmax
//     states merged in shared memory. The fallback of v2 (d not a multiple of 16 bytes, unaligned tensors).
//     H200, b32 cache 4096 hq32 hkv8 d128 bf16: 1.327 ms, 405 GB/s (10 % of copy): each warp walks one key at a time
//     with 2-byte loads and a 5-step shuffle reduction per key (latency-bound), and the 4 query heads of a kv head
//     each read its K/V again.
// v2 decode (flash-decoding), default when d * sizeof(T) is 64, 128, 256 or 512 bytes and q, k_cache, v_cache are
//     16-byte aligned: attention_decode_split_<dtype> then attention_decode_combine_<dtype>.
//     split: grid (batch * hkv * ceil(group / 4), splits), one warp per block. A block takes one kv head, up to 4 of
//     its query heads (so the group's K/V is read once, not once per query head) and one chunk of `chunk` keys of
//     the sequence; d / N lanes (N = 16 bytes of elements) hold one key row, 16 bytes each, so a warp reads 32 / (d / N)
//     keys per step, ATT_DEC_U = 8 steps' K and V loaded before any is used (16 16-byte loads in flight per lane). It
//     writes the chunk's online-softmax state (m, l, unnormalised acc) per query head to `partials`.
//     combine: one warp per (sequence, head) merges the splits' states in split order (deterministic).
//     The host picks splits so that the grid is one full wave: the split kernel takes 168 registers on sm_90, so
//     12 one-warp blocks fit an SM; a grid of 1.45 waves left the last wave half empty.
//     Measured on the H200 bench shape (docs/device-reports/2026-11-28-h200-decode-variants.txt), ms:
//       blocks aimed per SM    11 (one wave)   16 (1.45 waves)   32     64
//       ATT_DEC_U 2            0.299           0.386             0.325  0.281
//       ATT_DEC_U 4            0.245           0.314             0.277  0.292
//       ATT_DEC_U 8            0.218 (58 %)    0.278             0.245  0.261
//     Predicted had been 0.14-0.18 ms: the wave shape was the largest miss, then loads in flight.
// Training (attention_train, Kernels/Ops/AttentionTraining.cs): causal self-attention over whole sequences,
//   query i sees keys j <= i; q (batch, t, hq, d); k, v (batch, t, hkv, d); out, d_out, dq (batch, t, hq, d);
//   dk, dv (batch, t, hkv, d); lse, delta f32 (batch, hq, t). No (t, t) matrix is stored: probabilities are
//   recomputed from lse in the backward kernels. Every sum runs in a fixed order (no atomics): bitwise
//   deterministic run to run.
//   attention_train_fwd_<dtype>: as prefill (query_start 0), also lse = log sum_j exp(scale q.k_j) (natural log).
//     Grid: one warp per (batch, query, head) row, 4 rows per block.
//   attention_train_bwd_dq_<dtype>: delta_i = d_out_i . out_i (written for the next kernel), then over keys j <= i:
//     p = exp(scale q_i.k_j - lse_i), ds = p (d_out_i . v_j - delta_i), dq_i = scale sum_j ds k_j.
//     Grid: one warp per (batch, query, head) row, 4 rows per block.
//   attention_train_bwd_dkdv_<dtype> (after bwd_dq, reads its delta): dk_j = scale sum ds q_i, dv_j = sum p d_out_i
//     over the query heads of kv head's group in order, each over queries i >= j in order.
//     Grid: one warp per (batch, key, kv head) row, 4 rows per block.
// v1 train: SIMT, a warp-wide dot product per (query, key) pair, lane l holds elements l, l + 32, ... Default.
//     (Next: K/V and Q tiles in shared memory, tensor-core mma for the score and gradient products.)
#include "common/dtypes.cuh"
#include "common/limits.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"

#define ATT_WARPS 4
#define ATT_PER_LANE (NP_MAX_HEAD_DIM / 32)

struct AttentionPrefillArgs {
    const void* q;  // (batch, tq, hq, d)
    const void* k;  // (batch, tk, hkv, d)
    const void* v;  // (batch, tk, hkv, d)
    void* out;      // (batch, tq, hq, d)
    int batch;
    int tq;
    int tk;
    int hq;
    int hkv;
    int d;
    int query_start;
    float scale;
};

struct AttentionDecodeArgs {
    const void* q;        // (batch, hq, d)
    const void* k_cache;  // (batch, capacity, hkv, d)
    const void* v_cache;  // (batch, capacity, hkv, d)
    const int* lengths;   // (batch)
    void* out;            // (batch, hq, d)
    int batch;
    int capacity;
    int hq;
    int hkv;
    int d;
    float scale;
};

// Online-softmax state of one warp over the keys it has seen: running max m, running sum l, and the
// unnormalised output acc (this lane's elements).
struct WarpSoftmaxState {
    float m;
    float l;
    float acc[ATT_PER_LANE];
};

// Visits keys first, first + step, ... < end; key j's row starts at k + j * key_stride (same for v).
template <typename T>
__device__ void warp_attend(const float (&q)[ATT_PER_LANE], const void* k, const void* v, long long row0,
                            long long key_stride, int first, int end, int step, int d, WarpSoftmaxState& st) {
    const int lane = threadIdx.x & 31;
    for (int j = first; j < end; j += step) {
        long long row = row0 + (long long)j * key_stride;
        float partial = 0.0f;
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) {
            int c = lane + 32 * r;
            if (c < d) partial += q[r] * load_f<T>(k, row + c);
        }
        float s = warp_sum(partial);
        float m_new = fmaxf(st.m, s);
        float correction = expf(st.m - m_new);  // 0 on the first key (m = -inf)
        float p = expf(s - m_new);
        st.l = st.l * correction + p;
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) {
            int c = lane + 32 * r;
            float vv = c < d ? load_f<T>(v, row + c) : 0.0f;
            st.acc[r] = st.acc[r] * correction + p * vv;
        }
        st.m = m_new;
    }
}

template <typename T>
__device__ void load_query(const void* q, long long base, int d, float scale, float (&out)[ATT_PER_LANE]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < ATT_PER_LANE; r++) {
        int c = lane + 32 * r;
        out[r] = c < d ? load_f<T>(q, base + c) * scale : 0.0f;
    }
}

__device__ __forceinline__ void reset(WarpSoftmaxState& st) {
    st.m = NP_NEG_INF;
    st.l = 0.0f;
#pragma unroll
    for (int r = 0; r < ATT_PER_LANE; r++) st.acc[r] = 0.0f;
}

template <typename T>
__device__ void attention_prefill(const AttentionPrefillArgs& a) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = a.hq / a.hkv;
    const long long rows = (long long)a.batch * a.tq * a.hq;
    for (long long row = (long long)blockIdx.x * ATT_WARPS + warp; row < rows; row += (long long)gridDim.x * ATT_WARPS) {
        int h = (int)(row % a.hq);
        int i = (int)(row / a.hq % a.tq);
        int b = (int)(row / ((long long)a.hq * a.tq));
        int visible = min(a.tk, a.query_start + i + 1);
        long long q_base = row * a.d;
        float q[ATT_PER_LANE];
        load_query<T>(a.q, q_base, a.d, a.scale, q);
        WarpSoftmaxState st;
        reset(st);
        long long kv_base = (long long)b * a.tk * a.hkv * a.d + (long long)(h / group) * a.d;
        warp_attend<T>(q, a.k, a.v, kv_base, (long long)a.hkv * a.d, 0, visible, 1, a.d, st);
        float inv = st.l > 0.0f ? 1.0f / st.l : 0.0f;  // nothing visible: a zero row
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) {
            int c = lane + 32 * r;
            if (c < a.d) store_f<T>(a.out, q_base + c, st.acc[r] * inv);
        }
    }
}

template <typename T>
__device__ void attention_decode(const AttentionDecodeArgs& a) {
    __shared__ float part_m[ATT_WARPS];
    __shared__ float part_l[ATT_WARPS];
    __shared__ float part_acc[ATT_WARPS][NP_MAX_HEAD_DIM];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = a.hq / a.hkv;
    for (int bh = blockIdx.x; bh < a.batch * a.hq; bh += gridDim.x) {
        int h = bh % a.hq, b = bh / a.hq;
        int length = min(max(a.lengths[b], 0), a.capacity);
        long long q_base = (long long)bh * a.d;
        float q[ATT_PER_LANE];
        load_query<T>(a.q, q_base, a.d, a.scale, q);
        WarpSoftmaxState st;
        reset(st);
        long long kv_base = (long long)b * a.capacity * a.hkv * a.d + (long long)(h / group) * a.d;
        warp_attend<T>(q, a.k_cache, a.v_cache, kv_base, (long long)a.hkv * a.d, warp, length, ATT_WARPS, a.d, st);
        // Merge the warps' partial states: rescale each to the common max, then add.
        if (lane == 0) { part_m[warp] = st.m; part_l[warp] = st.l; }
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) {
            int c = lane + 32 * r;
            if (c < a.d) part_acc[warp][c] = st.acc[r];
        }
        __syncthreads();
        float m = NP_NEG_INF;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++) m = fmaxf(m, part_m[w]);
        float l = 0.0f, weight[ATT_WARPS];
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++) {
            weight[w] = part_m[w] == NP_NEG_INF ? 0.0f : expf(part_m[w] - m);
            l += part_l[w] * weight[w];
        }
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int c = threadIdx.x; c < a.d; c += blockDim.x) {
            float sum = 0.0f;
#pragma unroll
            for (int w = 0; w < ATT_WARPS; w++) sum += part_acc[w][c] * weight[w];
            store_f<T>(a.out, q_base + c, sum * inv);
        }
        __syncthreads();  // the next (sequence, head) reuses the shared partial states
    }
}

extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_prefill_f32(AttentionPrefillArgs a) { attention_prefill<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_prefill_bf16(AttentionPrefillArgs a) { attention_prefill<bf16>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_decode_f32(AttentionDecodeArgs a) { attention_decode<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_decode_bf16(AttentionDecodeArgs a) { attention_decode<bf16>(a); }

// ---- Decode v2: split the keys across blocks, then combine. ----
#define ATT_DEC_G 4  // query heads per split block
#define ATT_DEC_U 8  // key steps loaded before use: 2 * ATT_DEC_U 16-byte loads in flight per lane

struct AttentionDecodeSplitArgs {
    const void* q;        // (batch, hq, d)
    const void* k_cache;  // (batch, capacity, hkv, d)
    const void* v_cache;  // (batch, capacity, hkv, d)
    const int* lengths;   // (batch)
    void* out;            // (batch, hq, d)
    float* partials;      // (batch, hq, splits, d + 2) f32 workspace: acc[d], m, l per split
    int batch;
    int capacity;
    int hq;
    int hkv;
    int d;
    int splits;           // chunks of keys per sequence (grid.y)
    int chunk;            // keys per chunk
    float scale;
};

// Merges the online-softmax state (mo, lo, ao) into (m, l, acc).
template <int N>
__device__ __forceinline__ void merge_state(float& m, float& l, float (&acc)[N], float mo, float lo, const float (&ao)[N]) {
    float mn = fmaxf(m, mo);
    float ws = m == NP_NEG_INF ? 0.0f : expf(m - mn);
    float wo = mo == NP_NEG_INF ? 0.0f : expf(mo - mn);
    l = l * ws + lo * wo;
#pragma unroll
    for (int e = 0; e < N; e++) acc[e] = acc[e] * ws + ao[e] * wo;
    m = mn;
}

template <typename T>
__device__ void attention_decode_split(const AttentionDecodeSplitArgs& a) {
    constexpr int N = VecOf<T>::N;
    const int lane = threadIdx.x & 31;
    const int tpk = a.d / N, kpw = 32 / tpk;  // lanes per key row, keys per warp step
    const int t = lane & (tpk - 1), sub = lane / tpk;
    const int group = a.hq / a.hkv, head_chunks = (group + ATT_DEC_G - 1) / ATT_DEC_G;
    int x = blockIdx.x;
    const int hc = x % head_chunks;
    x /= head_chunks;
    const int kvh = x % a.hkv, b = x / a.hkv;
    const int h0 = kvh * group + hc * ATT_DEC_G, heads = min(ATT_DEC_G, group - hc * ATT_DEC_G);
    const int split = blockIdx.y;
    const int length = min(max(a.lengths[b], 0), a.capacity);
    const int start = split * a.chunk, end = min(length, start + a.chunk);

    float q[ATT_DEC_G][N], m[ATT_DEC_G], l[ATT_DEC_G], acc[ATT_DEC_G][N];
#pragma unroll
    for (int g = 0; g < ATT_DEC_G; g++) {
        float f[N];
        if (g < heads) {
            uint4 u = *reinterpret_cast<const uint4*>(static_cast<const T*>(a.q) + ((long long)b * a.hq + h0 + g) * a.d + t * N);
            unpack(u, f);
        } else {
#pragma unroll
            for (int e = 0; e < N; e++) f[e] = 0.0f;
        }
#pragma unroll
        for (int e = 0; e < N; e++) { q[g][e] = f[e] * a.scale; acc[g][e] = 0.0f; }
        m[g] = NP_NEG_INF;
        l[g] = 0.0f;
    }
    const long long key_stride = (long long)a.hkv * a.d;
    const long long kv0 = ((long long)b * a.capacity * a.hkv + kvh) * a.d + t * N;
    const T* kp = static_cast<const T*>(a.k_cache) + kv0;
    const T* vp = static_cast<const T*>(a.v_cache) + kv0;
    for (int j0 = start; j0 < end; j0 += kpw * ATT_DEC_U) {
        uint4 kr[ATT_DEC_U], vr[ATT_DEC_U];
#pragma unroll
        for (int u = 0; u < ATT_DEC_U; u++) {
            int j = j0 + u * kpw + sub;
            if (j < end) {
                kr[u] = *reinterpret_cast<const uint4*>(kp + j * key_stride);
                vr[u] = *reinterpret_cast<const uint4*>(vp + j * key_stride);
            } else {
                kr[u].x = kr[u].y = kr[u].z = kr[u].w = 0u;
                vr[u] = kr[u];
            }
        }
        float s[ATT_DEC_G][ATT_DEC_U];
#pragma unroll
        for (int u = 0; u < ATT_DEC_U; u++) {
            float kf[N];
            unpack(kr[u], kf);
#pragma unroll
            for (int g = 0; g < ATT_DEC_G; g++) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < N; e++) dot += q[g][e] * kf[e];
                s[g][u] = dot;
            }
        }
        // The tpk lanes of a key row (consecutive lanes) sum their slices; every one of them gets the score.
        for (int off = 1; off < tpk; off <<= 1)
#pragma unroll
            for (int g = 0; g < ATT_DEC_G; g++)
#pragma unroll
                for (int u = 0; u < ATT_DEC_U; u++) s[g][u] += __shfl_xor_sync(NP_FULL_MASK, s[g][u], off);
        float p[ATT_DEC_G][ATT_DEC_U];
#pragma unroll
        for (int g = 0; g < ATT_DEC_G; g++) {
            float mx = m[g];
#pragma unroll
            for (int u = 0; u < ATT_DEC_U; u++)
                if (j0 + u * kpw + sub < end) mx = fmaxf(mx, s[g][u]);
            // One rescale per 4 key steps, not per key. mx = -inf only before this lane's first key (l, acc still 0).
            float corr = m[g] == NP_NEG_INF ? 0.0f : expf(m[g] - mx);
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < N; e++) acc[g][e] *= corr;
#pragma unroll
            for (int u = 0; u < ATT_DEC_U; u++) {
                p[g][u] = j0 + u * kpw + sub < end ? expf(s[g][u] - mx) : 0.0f;
                l[g] += p[g][u];
            }
            m[g] = mx;
        }
#pragma unroll
        for (int u = 0; u < ATT_DEC_U; u++) {
            float vf[N];
            unpack(vr[u], vf);
#pragma unroll
            for (int g = 0; g < ATT_DEC_G; g++)
#pragma unroll
                for (int e = 0; e < N; e++) acc[g][e] += p[g][u] * vf[e];
        }
    }
    // Merge the warp's 32 / tpk key subgroups (lanes holding the same slice t), then lanes of subgroup 0 write.
    for (int off = tpk; off < 32; off <<= 1) {
#pragma unroll
        for (int g = 0; g < ATT_DEC_G; g++) {
            float mo = __shfl_xor_sync(NP_FULL_MASK, m[g], off), lo = __shfl_xor_sync(NP_FULL_MASK, l[g], off), ao[N];
#pragma unroll
            for (int e = 0; e < N; e++) ao[e] = __shfl_xor_sync(NP_FULL_MASK, acc[g][e], off);
            merge_state<N>(m[g], l[g], acc[g], mo, lo, ao);
        }
    }
    if (sub == 0) {
#pragma unroll
        for (int g = 0; g < ATT_DEC_G; g++) {
            if (g >= heads) continue;
            float* part = a.partials + (((long long)b * a.hq + h0 + g) * a.splits + split) * (a.d + 2);
#pragma unroll
            for (int e = 0; e < N; e++) part[t * N + e] = acc[g][e];
            if (t == 0) { part[a.d] = m[g]; part[a.d + 1] = l[g]; }
        }
    }
}

// One warp per (sequence, head), 4 per block, grid-stride: the splits' states rescaled to the common max, in split order.
template <typename T>
__device__ void attention_decode_combine(const AttentionDecodeSplitArgs& a) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long long rows = (long long)a.batch * a.hq, stride = a.d + 2;
    for (long long row = (long long)blockIdx.x * ATT_WARPS + warp; row < rows; row += (long long)gridDim.x * ATT_WARPS) {
        const float* part = a.partials + row * a.splits * stride;
        float mx = NP_NEG_INF;
        for (int s = lane; s < a.splits; s += 32) mx = fmaxf(mx, part[s * stride + a.d]);
        mx = warp_max(mx);
        float l = 0.0f;
        for (int s = lane; s < a.splits; s += 32) {
            float ms = part[s * stride + a.d];
            if (ms != NP_NEG_INF) l += part[s * stride + a.d + 1] * expf(ms - mx);
        }
        l = warp_sum(l);
        float inv = l > 0.0f ? 1.0f / l : 0.0f;  // length 0: a zero row
        for (int c = lane; c < a.d; c += 32) {
            float sum = 0.0f;
            for (int s = 0; s < a.splits; s++) {
                float ms = part[s * stride + a.d];
                if (ms != NP_NEG_INF) sum += part[s * stride + c] * expf(ms - mx);
            }
            store_f<T>(a.out, row * a.d + c, sum * inv);
        }
    }
}

extern "C" __global__ void __launch_bounds__(32) attention_decode_split_f32(AttentionDecodeSplitArgs a) { attention_decode_split<float>(a); }
extern "C" __global__ void __launch_bounds__(32) attention_decode_split_bf16(AttentionDecodeSplitArgs a) { attention_decode_split<bf16>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_decode_combine_f32(AttentionDecodeSplitArgs a) { attention_decode_combine<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_decode_combine_bf16(AttentionDecodeSplitArgs a) { attention_decode_combine<bf16>(a); }

// ---- Training: forward with lse, backward in two kernels (dq and delta; then dk, dv). ----

struct AttentionTrainFwdArgs {
    const void* q;  // (batch, t, hq, d)
    const void* k;  // (batch, t, hkv, d)
    const void* v;  // (batch, t, hkv, d)
    void* out;      // (batch, t, hq, d)
    float* lse;     // (batch, hq, t)
    int batch;
    int t;
    int hq;
    int hkv;
    int d;
    float scale;
};

struct AttentionTrainBwdArgs {
    const void* q;      // (batch, t, hq, d)
    const void* k;      // (batch, t, hkv, d)
    const void* v;      // (batch, t, hkv, d)
    const void* out;    // (batch, t, hq, d)
    const float* lse;   // (batch, hq, t)
    const void* d_out;  // (batch, t, hq, d)
    float* delta;       // (batch, hq, t) scratch: written by bwd_dq, read by bwd_dkdv
    void* dq;           // (batch, t, hq, d)
    void* dk;           // (batch, t, hkv, d)
    void* dv;           // (batch, t, hkv, d)
    int batch;
    int t;
    int hq;
    int hkv;
    int d;
    float scale;
};

template <typename T>
__device__ __forceinline__ void load_row(const void* p, long long base, int d, float (&out)[ATT_PER_LANE]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < ATT_PER_LANE; r++) {
        int c = lane + 32 * r;
        out[r] = c < d ? load_f<T>(p, base + c) : 0.0f;
    }
}

template <typename T>
__device__ __forceinline__ void store_row(void* p, long long base, int d, const float (&x)[ATT_PER_LANE], float factor) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < ATT_PER_LANE; r++) {
        int c = lane + 32 * r;
        if (c < d) store_f<T>(p, base + c, x[r] * factor);
    }
}

__device__ __forceinline__ float lane_dot(const float (&a)[ATT_PER_LANE], const float (&b)[ATT_PER_LANE]) {
    float partial = 0.0f;
#pragma unroll
    for (int r = 0; r < ATT_PER_LANE; r++) partial += a[r] * b[r];
    return partial;
}

template <typename T>
__device__ void attention_train_fwd(const AttentionTrainFwdArgs& a) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = a.hq / a.hkv;
    const long long rows = (long long)a.batch * a.t * a.hq;
    for (long long row = (long long)blockIdx.x * ATT_WARPS + warp; row < rows; row += (long long)gridDim.x * ATT_WARPS) {
        int h = (int)(row % a.hq);
        int i = (int)(row / a.hq % a.t);
        int b = (int)(row / ((long long)a.hq * a.t));
        long long q_base = row * a.d;
        float q[ATT_PER_LANE];
        load_query<T>(a.q, q_base, a.d, a.scale, q);
        WarpSoftmaxState st;
        reset(st);
        long long kv_base = (long long)b * a.t * a.hkv * a.d + (long long)(h / group) * a.d;
        warp_attend<T>(q, a.k, a.v, kv_base, (long long)a.hkv * a.d, 0, i + 1, 1, a.d, st);
        store_row<T>(a.out, q_base, a.d, st.acc, 1.0f / st.l);  // key i is always visible: l >= 1
        if (lane == 0) a.lse[((long long)b * a.hq + h) * a.t + i] = st.m + logf(st.l);
    }
}

template <typename T>
__device__ void attention_train_bwd_dq(const AttentionTrainBwdArgs& a) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = a.hq / a.hkv;
    const long long rows = (long long)a.batch * a.t * a.hq;
    const long long key_stride = (long long)a.hkv * a.d;
    for (long long row = (long long)blockIdx.x * ATT_WARPS + warp; row < rows; row += (long long)gridDim.x * ATT_WARPS) {
        int h = (int)(row % a.hq);
        int i = (int)(row / a.hq % a.t);
        int b = (int)(row / ((long long)a.hq * a.t));
        long long q_base = row * a.d;
        float q[ATT_PER_LANE], dout[ATT_PER_LANE], acc[ATT_PER_LANE];
        load_row<T>(a.q, q_base, a.d, q);
        load_row<T>(a.d_out, q_base, a.d, dout);
        load_row<T>(a.out, q_base, a.d, acc);
        const float delta = warp_sum(lane_dot(dout, acc));
        const long long stat = ((long long)b * a.hq + h) * a.t + i;
        if (lane == 0) a.delta[stat] = delta;
        const float lse = a.lse[stat];
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) acc[r] = 0.0f;
        long long kv_base = (long long)b * a.t * key_stride + (long long)(h / group) * a.d;
        for (int j = 0; j <= i; j++) {
            long long key = kv_base + (long long)j * key_stride;
            float kj[ATT_PER_LANE], vj[ATT_PER_LANE];
            load_row<T>(a.k, key, a.d, kj);
            load_row<T>(a.v, key, a.d, vj);
            float s = warp_sum(lane_dot(q, kj));
            float dp = warp_sum(lane_dot(dout, vj));
            float ds = expf(s * a.scale - lse) * (dp - delta);
#pragma unroll
            for (int r = 0; r < ATT_PER_LANE; r++) acc[r] += ds * kj[r];
        }
        store_row<T>(a.dq, q_base, a.d, acc, a.scale);
    }
}

template <typename T>
__device__ void attention_train_bwd_dkdv(const AttentionTrainBwdArgs& a) {
    const int warp = threadIdx.x >> 5;
    const int group = a.hq / a.hkv;
    const long long rows = (long long)a.batch * a.t * a.hkv;
    const long long query_stride = (long long)a.hq * a.d;
    for (long long row = (long long)blockIdx.x * ATT_WARPS + warp; row < rows; row += (long long)gridDim.x * ATT_WARPS) {
        int g = (int)(row % a.hkv);
        int j = (int)(row / a.hkv % a.t);
        int b = (int)(row / ((long long)a.hkv * a.t));
        long long key = row * a.d;
        float kj[ATT_PER_LANE], vj[ATT_PER_LANE], dk[ATT_PER_LANE], dv[ATT_PER_LANE];
        load_row<T>(a.k, key, a.d, kj);
        load_row<T>(a.v, key, a.d, vj);
#pragma unroll
        for (int r = 0; r < ATT_PER_LANE; r++) { dk[r] = 0.0f; dv[r] = 0.0f; }
        for (int h = g * group; h < (g + 1) * group; h++) {
            const long long stat_base = ((long long)b * a.hq + h) * a.t;
            const long long q_head = (long long)b * a.t * query_stride + (long long)h * a.d;
            for (int i = j; i < a.t; i++) {
                long long q_base = q_head + (long long)i * query_stride;
                float qi[ATT_PER_LANE], douti[ATT_PER_LANE];
                load_row<T>(a.q, q_base, a.d, qi);
                load_row<T>(a.d_out, q_base, a.d, douti);
                float s = warp_sum(lane_dot(qi, kj));
                float dp = warp_sum(lane_dot(douti, vj));
                float p = expf(s * a.scale - a.lse[stat_base + i]);
                float ds = p * (dp - a.delta[stat_base + i]);
#pragma unroll
                for (int r = 0; r < ATT_PER_LANE; r++) {
                    dk[r] += ds * qi[r];
                    dv[r] += p * douti[r];
                }
            }
        }
        store_row<T>(a.dk, key, a.d, dk, a.scale);
        store_row<T>(a.dv, key, a.d, dv, 1.0f);
    }
}

extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_fwd_f32(AttentionTrainFwdArgs a) { attention_train_fwd<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_fwd_bf16(AttentionTrainFwdArgs a) { attention_train_fwd<bf16>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_bwd_dq_f32(AttentionTrainBwdArgs a) { attention_train_bwd_dq<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_bwd_dq_bf16(AttentionTrainBwdArgs a) { attention_train_bwd_dq<bf16>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_bwd_dkdv_f32(AttentionTrainBwdArgs a) { attention_train_bwd_dkdv<float>(a); }
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32) attention_train_bwd_dkdv_bf16(AttentionTrainBwdArgs a) { attention_train_bwd_dkdv<bf16>(a); }
