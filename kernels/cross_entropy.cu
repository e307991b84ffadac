// Cross-entropy of logits against integer targets, with the gradient in the same launch:
//   loss[r] = logsumexp(logits[r]) - logits[r, target[r]],
//   d_logits[r, j] = grad_scale * (softmax(logits[r])[j] - (j == target[r])).
//   logits, d_logits: (rows, v), one dtype (f32 or bf16); d_logits may alias logits (in place: every element is
//   read by the thread that writes it, and the target logit is read before the first barrier). targets: i32 (rows).
//   losses: f32 (rows). A target outside [0, v) ignores its row: loss 0, d_logits row 0.
//   grad_scale is 1/N for a mean over N rows.
// Grid: one block per row (grid-stride).
// v1 cross_entropy_<dtype>: 256 threads; one online pass for (max, sum) per thread (rescaling the sum when the max
//     grows), block-combined; then one pass writing d_logits. Probabilities are never stored.
//     H200, 8192 x 50257 bf16: 1.622 ms, 1.02 TB/s (24 % of copy): 2-byte loads (too few bytes in flight), and 8
//     blocks of 100 KB rows per SM (106 MB) push the row out of L2 before the second read.
// v2 cross_entropy_v2_<dtype>: blocks of up to 1024 threads (sized by the host so CE_VECS 16-byte vectors per thread
//     cover the row); the row is read once with 16-byte loads (rows of odd length start misaligned: the partial
//     first and last vectors go element by element) into registers, kept packed (2 bytes an element for bf16); max,
//     sum of exp and d_logits come from the registers; d_logits leaves through 16-byte stores. In place is safe: a
//     block reads its whole row before the first barrier. Rows over 8 * 1024 vectors (32 K f32, 64 K bf16) take
//     v1's two passes, vectorised. Default.
//     Predicted, H200 8192 x 50257 bf16: 1 read + 1 write = 1.65 GB, one 100 KB row per SM at a time, 2 exps an
//     element (about 3 us of MUFU a row, partly exposed): 0.42-0.50 ms, 3.3-3.9 TB/s (78-92 % of copy).
#include "common/dtypes.cuh"
#include "common/reduce.cuh"
#include "common/vec.cuh"

struct CrossEntropyArgs {
    const void* logits;  // (rows, v)
    const int* targets;  // (rows)
    float* losses;       // (rows)
    void* d_logits;      // (rows, v); may be logits
    int rows;
    int v;
    float grad_scale;
};

template <typename T>
__device__ void cross_entropy(const CrossEntropyArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.v;
        int t = a.targets[r];
        if (t < 0 || t >= a.v) {  // ignored row: the branch is uniform over the block, so no barrier is skipped by some
            for (int j = threadIdx.x; j < a.v; j += blockDim.x) store_f<T>(a.d_logits, base + j, 0.0f);
            if (threadIdx.x == 0) a.losses[r] = 0.0f;
            continue;
        }
        // Read before the first barrier: afterwards another thread may overwrite it (in place).
        float target_logit = load_f<T>(a.logits, base + t);
        float m = NP_NEG_INF, s = 0.0f;
        for (int j = threadIdx.x; j < a.v; j += blockDim.x) {
            float x = load_f<T>(a.logits, base + j);
            if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
            else s += expf(x - m);
        }
        float row_max = block_max(m, scratch);
        float part = (m == NP_NEG_INF) ? 0.0f : s * expf(m - row_max);
        float sum = block_sum(part, scratch);
        if (threadIdx.x == 0) a.losses[r] = row_max + logf(sum) - target_logit;
        float scale = a.grad_scale / sum;
        for (int j = threadIdx.x; j < a.v; j += blockDim.x) {
            float p = expf(load_f<T>(a.logits, base + j) - row_max) * scale;
            store_f<T>(a.d_logits, base + j, j == t ? p - a.grad_scale : p);
        }
    }
}

extern "C" __global__ void cross_entropy_f32(CrossEntropyArgs a) { cross_entropy<float>(a); }
extern "C" __global__ void cross_entropy_bf16(CrossEntropyArgs a) { cross_entropy<bf16>(a); }

#define CE_VECS 8  // 16-byte vectors a thread keeps in registers

template <typename T>
__device__ void cross_entropy_v2(const CrossEntropyArgs& a) {
    constexpr int N = VecOf<T>::N;
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        const T* row = static_cast<const T*>(a.logits) + (long long)r * a.v;
        T* drow = static_cast<T*>(a.d_logits) + (long long)r * a.v;
        const int s0 = row_vec_start<T>(row), nv = row_vec_count<T>(s0, a.v);
        const bool aligned = row_vec_start<T>(drow) == s0;
        const int t = a.targets[r];
        if (t < 0 || t >= a.v) {  // ignored row: uniform over the block
            float zero[N];
#pragma unroll
            for (int e = 0; e < N; e++) zero[e] = 0.0f;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) store_row_vec<T>(drow, s0, a.v, k, zero, aligned);
            if (threadIdx.x == 0) a.losses[r] = 0.0f;
            continue;
        }
        // Read before the first barrier: afterwards another thread may overwrite it (in place).
        const float target_logit = load_f<T>(row, t);
        if (nv <= CE_VECS * (int)blockDim.x) {
            uint4 cache[CE_VECS];
#pragma unroll
            for (int i = 0; i < CE_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k < nv) cache[i] = load_row_vec<T>(row, s0, a.v, k, NP_NEG_INF);  // -inf: outside the row adds nothing
            }
            float m = NP_NEG_INF;
#pragma unroll
            for (int i = 0; i < CE_VECS; i++) {
                if ((int)threadIdx.x + i * (int)blockDim.x >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) m = fmaxf(m, f[e]);
            }
            const float row_max = block_max(m, scratch);
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < CE_VECS; i++) {
                if ((int)threadIdx.x + i * (int)blockDim.x >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) s += expf(f[e] - row_max);
            }
            const float sum = block_sum(s, scratch);
            if (threadIdx.x == 0) a.losses[r] = row_max + logf(sum) - target_logit;
            const float scale = a.grad_scale / sum;
#pragma unroll
            for (int i = 0; i < CE_VECS; i++) {
                int k = threadIdx.x + i * blockDim.x;
                if (k >= nv) continue;
                float f[N];
                unpack(cache[i], f);
#pragma unroll
                for (int e = 0; e < N; e++) {
                    float p = expf(f[e] - row_max) * scale;
                    f[e] = s0 + N * k + e == t ? p - a.grad_scale : p;
                }
                store_row_vec<T>(drow, s0, a.v, k, f, aligned);
            }
        } else {
            // Longer rows: v1's two passes, vectorised; each vector is read and written by the same thread (in place).
            float m = NP_NEG_INF, s = 0.0f;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N];
                unpack(load_row_vec<T>(row, s0, a.v, k, NP_NEG_INF), f);
                float vm = NP_NEG_INF;
#pragma unroll
                for (int e = 0; e < N; e++) vm = fmaxf(vm, f[e]);
                if (vm == NP_NEG_INF) continue;
                if (vm > m) { s = m == NP_NEG_INF ? 0.0f : s * expf(m - vm); m = vm; }
#pragma unroll
                for (int e = 0; e < N; e++) s += expf(f[e] - m);
            }
            const float row_max = block_max(m, scratch);
            const float sum = block_sum(m == NP_NEG_INF ? 0.0f : s * expf(m - row_max), scratch);
            if (threadIdx.x == 0) a.losses[r] = row_max + logf(sum) - target_logit;
            const float scale = a.grad_scale / sum;
            for (int k = threadIdx.x; k < nv; k += blockDim.x) {
                float f[N];
                unpack(load_row_vec<T>(row, s0, a.v, k, NP_NEG_INF), f);
#pragma unroll
                for (int e = 0; e < N; e++) {
                    float p = expf(f[e] - row_max) * scale;
                    f[e] = s0 + N * k + e == t ? p - a.grad_scale : p;
                }
                store_row_vec<T>(drow, s0, a.v, k, f, aligned);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(1024) cross_entropy_v2_f32(CrossEntropyArgs a) { cross_entropy_v2<float>(a); }
extern "C" __global__ void __launch_bounds__(1024) cross_entropy_v2_bf16(CrossEntropyArgs a) { cross_entropy_v2<bf16>(a); }

// Vocabulary-parallel cross-entropy (cross_entropy_vocab): Megatron's, over a tensor-parallel group where this rank
// holds the logits of vocabulary columns [vocab_start, vocab_start + v) of vocab_total. Three launches, with two
// all-reduces over the group between them (done by the caller):
//   stats: row_max[r] = max_j logits[r, j] over this rank's columns        -> all-reduce max
//   sums:  row_sums[r] = (sum_j exp(logits[r, j] - row_max[r]),             -> all-reduce sum
//                         logits[r, target - vocab_start] if this rank holds the target, else 0)
//   grad:  loss[r] = log(row_sums[r].x) + row_max[r] - row_sums[r].y, and d_logits[r, j] =
//          grad_scale * (exp(logits[r, j] - row_max[r]) / row_sums[r].x - (vocab_start + j == target)).
//   A target outside [0, vocab_total) ignores its row: loss 0, d_logits row 0. d_logits may alias logits.
// Grid: one block per row (grid-stride), 256 threads. v1. Default.
struct CrossEntropyVocabArgs {
    const void* logits;  // (rows, v): this rank's columns
    const int* targets;  // (rows): ids in the whole vocabulary
    float* row_max;      // (rows)
    float* row_sums;     // (rows, 2): sum of exp, target logit
    float* losses;       // (rows)
    void* d_logits;      // (rows, v); may be logits
    int rows;
    int v;
    int vocab_start;
    int vocab_total;
    float grad_scale;
};

template <typename T>
__device__ void cross_entropy_vocab_stats(const CrossEntropyVocabArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.v;
        float m = NP_NEG_INF;
        for (int j = threadIdx.x; j < a.v; j += blockDim.x) m = fmaxf(m, load_f<T>(a.logits, base + j));
        m = block_max(m, scratch);
        if (threadIdx.x == 0) a.row_max[r] = m;
    }
}

template <typename T>
__device__ void cross_entropy_vocab_sums(const CrossEntropyVocabArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.v;
        float m = a.row_max[r], s = 0.0f;
        for (int j = threadIdx.x; j < a.v; j += blockDim.x) s += expf(load_f<T>(a.logits, base + j) - m);
        s = block_sum(s, scratch);
        if (threadIdx.x == 0) {
            int local = a.targets[r] - a.vocab_start;
            a.row_sums[2 * r] = s;
            a.row_sums[2 * r + 1] = (local >= 0 && local < a.v) ? load_f<T>(a.logits, base + local) : 0.0f;
        }
    }
}

template <typename T>
__device__ void cross_entropy_vocab_grad(const CrossEntropyVocabArgs& a) {
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.v;
        int t = a.targets[r];
        if (t < 0 || t >= a.vocab_total) {
            for (int j = threadIdx.x; j < a.v; j += blockDim.x) store_f<T>(a.d_logits, base + j, 0.0f);
            if (threadIdx.x == 0) a.losses[r] = 0.0f;
            continue;
        }
        float m = a.row_max[r], sum = a.row_sums[2 * r];
        if (threadIdx.x == 0) a.losses[r] = m + logf(sum) - a.row_sums[2 * r + 1];
        float scale = a.grad_scale / sum;
        int local = t - a.vocab_start;
        for (int j = threadIdx.x; j < a.v; j += blockDim.x) {
            float p = expf(load_f<T>(a.logits, base + j) - m) * scale;
            store_f<T>(a.d_logits, base + j, j == local ? p - a.grad_scale : p);
        }
    }
}

extern "C" __global__ void cross_entropy_vocab_stats_f32(CrossEntropyVocabArgs a) { cross_entropy_vocab_stats<float>(a); }
extern "C" __global__ void cross_entropy_vocab_stats_bf16(CrossEntropyVocabArgs a) { cross_entropy_vocab_stats<bf16>(a); }
extern "C" __global__ void cross_entropy_vocab_sums_f32(CrossEntropyVocabArgs a) { cross_entropy_vocab_sums<float>(a); }
extern "C" __global__ void cross_entropy_vocab_sums_bf16(CrossEntropyVocabArgs a) { cross_entropy_vocab_sums<bf16>(a); }
extern "C" __global__ void cross_entropy_vocab_grad_f32(CrossEntropyVocabArgs a) { cross_entropy_vocab_grad<float>(a); }
extern "C" __global__ void cross_entropy_vocab_grad_bf16(CrossEntropyVocabArgs a) { cross_entropy_vocab_grad<bf16>(a); }
