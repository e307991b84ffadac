// Mixture-of-experts token permutation: the steps between the router's top-k and the experts' GEMMs, and back,
// so a MoE layer's rows never leave the device. Only the per-bucket counts are read by the host (they size the
// experts' GEMMs and the all-to-all splits).
//
// moe_plan: a stable bucket sort of routing slots.
//   keys: (n) i32; the bucket of slot i is (keys[i] - key_base) / divisor; a slot whose bucket falls outside
//   [0, buckets) is left out (position -1, not counted). Slots of one bucket keep their index order.
//   counts: (buckets) i32; position: (n) i32, slot -> sorted row; order: (n) i32, sorted row -> slot, -1 past the
//   counted slots.
// Grid: one block (a multiple of 32 threads). For each bucket in turn the block walks the slots in chunks of
//   blockDim: a warp ballot ranks a chunk's matching slots within each warp, the warps' totals in shared memory
//   rank the warps, so positions follow slot order with no atomics (deterministic). O(buckets x n / blockDim)
//   steps; routing sizes (n = tokens x k, buckets = experts or ranks) keep one block enough.
// v1: default.
//
// gather_rows: out[p, :] = src[index[p] / divisor, :]; an index < 0, or one past src_rows, gives a zero row.
//   src: (src_rows, cols); index: (rows) i32; out: (rows, cols); elements of 2 or 4 bytes, copied bit for bit
//   (entry points gather_rows_b16, gather_rows_b32), so it serves f32, bf16, f16 and i32 alike.
// Grid: one block per output row (grid-stride), threads over cols.
//
// moe_combine: out[t, :] = sum over j = 0..k-1, in that order, of weights[t, j] * y[position[t * k + j], :],
//   computed in f32; a position < 0 (a dropped routing) contributes nothing.
//   y: (y_rows, cols); position: (tokens * k) i32; weights: (tokens, k) f32; out: (tokens, cols), y's dtype.
// Grid: one block per token (grid-stride), threads over cols.
//
// moe_combine_bwd: the combine's backward. For each token t and slot j whose row = position[t * k + j] is kept:
//   d_y[row, :] = weights[t, j] * d_out[t, :] and d_weights[t, j] = dot(d_out[t, :], y[row, :]) (f32, a block sum
//   in a fixed order); a dropped slot (position < 0 or past y_rows) gets d_weights 0. Rows of d_y that no position
//   names are left as they were. Each y row belongs to one slot, so every output has one writer: no atomics.
//   d_out: (tokens, cols); y, d_y: (y_rows, cols), one dtype; position: (tokens * k) i32; weights, d_weights:
//   (tokens, k) f32. The gather's backward needs no kernel of its own: the transpose of gather_rows by a plan is
//   moe_combine with unit weights (each token's kept slots summed in top-k order).
// Grid: one block per token (grid-stride), threads over cols (a multiple of 32: block_sum).
//
// moe_router_bwd: the router's backward through the softmax over each token's top-k logits and the pick itself:
//   d_logits[t, e] = p[t, j] * (d_weights[t, j] - sum_i p[t, i] * d_weights[t, i]) for the j with
//   experts[t, j] == e, and 0 for an expert not chosen. p, d_weights: (tokens, k) f32 (p: the forward's
//   weights); experts: (tokens, k) i32; d_logits: (tokens, n_experts), f32 or bf16.
// Grid: one thread per element of d_logits (grid-stride); each sums its token's k terms in order.
// v1 (both): default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct MoePlanArgs {
    const int* keys;  // (n)
    int* counts;      // (buckets)
    int* position;    // (n)
    int* order;       // (n)
    int n;
    int buckets;
    int key_base;
    int divisor;
};

__device__ __forceinline__ int moe_bucket(const MoePlanArgs& a, int i) {
    int shifted = a.keys[i] - a.key_base;
    if (shifted < 0) return -1;
    int b = shifted / a.divisor;
    return b < a.buckets ? b : -1;
}

extern "C" __global__ void moe_plan(MoePlanArgs a) {
    __shared__ int warp_matches[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    const unsigned below = (1u << lane) - 1u;
    int row = 0;  // the next sorted row, the same in every thread
    for (int b = 0; b < a.buckets; b++) {
        int first = row;
        for (int chunk = 0; chunk < a.n; chunk += blockDim.x) {
            int i = chunk + threadIdx.x;
            bool match = i < a.n && moe_bucket(a, i) == b;
            unsigned ballot = __ballot_sync(0xffffffffu, match);
            if (lane == 0) warp_matches[warp] = __popc(ballot);
            __syncthreads();
            int before = 0, total = 0;
            for (int w = 0; w < warps; w++) {
                if (w < warp) before += warp_matches[w];
                total += warp_matches[w];
            }
            if (match) {
                int at = row + before + __popc(ballot & below);
                a.position[i] = at;
                a.order[at] = i;
            }
            row += total;
            __syncthreads();  // warp_matches is rewritten by the next chunk
        }
        if (threadIdx.x == 0) a.counts[b] = row - first;
    }
    for (int i = threadIdx.x; i < a.n; i += blockDim.x) {
        if (moe_bucket(a, i) < 0) a.position[i] = -1;
    }
    for (int p = row + threadIdx.x; p < a.n; p += blockDim.x) a.order[p] = -1;
}

struct GatherRowsArgs {
    const void* src;   // (src_rows, cols)
    const int* index;  // (rows)
    void* out;         // (rows, cols)
    int rows;
    int cols;
    int src_rows;
    int divisor;
};

template <typename E>
__device__ void gather_rows(const GatherRowsArgs& a) {
    const E* src = static_cast<const E*>(a.src);
    E* out = static_cast<E*>(a.out);
    for (int p = blockIdx.x; p < a.rows; p += gridDim.x) {
        int index = a.index[p];
        int row = index < 0 ? -1 : index / a.divisor;
        bool valid = row >= 0 && row < a.src_rows;
        long long from = (long long)row * a.cols, to = (long long)p * a.cols;
        for (int c = threadIdx.x; c < a.cols; c += blockDim.x) out[to + c] = valid ? src[from + c] : (E)0;
    }
}

extern "C" __global__ void gather_rows_b32(GatherRowsArgs a) { gather_rows<unsigned int>(a); }
extern "C" __global__ void gather_rows_b16(GatherRowsArgs a) { gather_rows<unsigned short>(a); }

struct MoeCombineArgs {
    const void* y;         // (y_rows, cols)
    const int* position;   // (tokens * k)
    const float* weights;  // (tokens, k)
    void* out;             // (tokens, cols)
    int tokens;
    int k;
    int cols;
    int y_rows;
};

template <typename T>
__device__ void moe_combine(const MoeCombineArgs& a) {
    for (int t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
            float sum = 0.0f;
            for (int j = 0; j < a.k; j++) {
                int row = a.position[(long long)t * a.k + j];
                if (row < 0 || row >= a.y_rows) continue;
                sum += a.weights[(long long)t * a.k + j] * load_f<T>(a.y, (long long)row * a.cols + c);
            }
            store_f<T>(a.out, (long long)t * a.cols + c, sum);
        }
    }
}

extern "C" __global__ void moe_combine_f32(MoeCombineArgs a) { moe_combine<float>(a); }
extern "C" __global__ void moe_combine_bf16(MoeCombineArgs a) { moe_combine<bf16>(a); }

struct MoeCombineBwdArgs {
    const void* d_out;     // (tokens, cols)
    const void* y;         // (y_rows, cols)
    const int* position;   // (tokens * k)
    const float* weights;  // (tokens, k)
    void* d_y;             // (y_rows, cols)
    float* d_weights;      // (tokens, k)
    int tokens;
    int k;
    int cols;
    int y_rows;
};

template <typename T>
__device__ void moe_combine_bwd(const MoeCombineBwdArgs& a) {
    __shared__ float scratch[32];
    for (int t = blockIdx.x; t < a.tokens; t += gridDim.x) {
        for (int j = 0; j < a.k; j++) {
            long long slot = (long long)t * a.k + j;
            int row = a.position[slot];
            bool kept = row >= 0 && row < a.y_rows;  // the same in every thread: block_sum below is reached by all
            float w = a.weights[slot], dot = 0.0f;
            if (kept) {
                for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
                    float g = load_f<T>(a.d_out, (long long)t * a.cols + c);
                    long long at = (long long)row * a.cols + c;
                    dot += g * load_f<T>(a.y, at);
                    store_f<T>(a.d_y, at, w * g);
                }
            }
            dot = block_sum(dot, scratch);
            if (threadIdx.x == 0) a.d_weights[slot] = kept ? dot : 0.0f;
        }
    }
}

extern "C" __global__ void moe_combine_bwd_f32(MoeCombineBwdArgs a) { moe_combine_bwd<float>(a); }
extern "C" __global__ void moe_combine_bwd_bf16(MoeCombineBwdArgs a) { moe_combine_bwd<bf16>(a); }

struct MoeRouterBwdArgs {
    const float* p;          // (tokens, k)
    const float* d_weights;  // (tokens, k)
    const int* experts;      // (tokens, k)
    void* d_logits;          // (tokens, n_experts)
    long long count;         // tokens * n_experts
    int k;
    int n_experts;
};

template <typename T>
__device__ void moe_router_bwd(const MoeRouterBwdArgs& a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        long long t = i / a.n_experts;
        int e = (int)(i - t * a.n_experts);
        const float* p = a.p + t * a.k;
        const float* dw = a.d_weights + t * a.k;
        float mean = 0.0f, grad = 0.0f;
        for (int j = 0; j < a.k; j++) mean += p[j] * dw[j];
        for (int j = 0; j < a.k; j++)
            if (a.experts[t * a.k + j] == e) grad = p[j] * (dw[j] - mean);
        store_f<T>(a.d_logits, i, grad);
    }
}

extern "C" __global__ void moe_router_bwd_f32(MoeRouterBwdArgs a) { moe_router_bwd<float>(a); }
extern "C" __global__ void moe_router_bwd_bf16(MoeRouterBwdArgs a) { moe_router_bwd<bf16>(a); }
