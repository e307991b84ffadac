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
//     states merged in shared memory. Default. (Next: tile K/V in shared memory and use tensor cores.)
#include "common/dtypes.cuh"
#include "common/limits.cuh"
#include "common/reduce.cuh"

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
