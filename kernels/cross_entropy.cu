// Cross-entropy of logits against integer targets, with the gradient in the same launch:
//   loss[r] = logsumexp(logits[r]) - logits[r, target[r]],
//   d_logits[r, j] = grad_scale * (softmax(logits[r])[j] - (j == target[r])).
//   logits, d_logits: (rows, v), one dtype (f32 or bf16); d_logits may alias logits (in place: every element is
//   read by the thread that writes it, and the target logit is read before the first barrier). targets: i32 (rows).
//   losses: f32 (rows). A target outside [0, v) ignores its row: loss 0, d_logits row 0.
//   grad_scale is 1/N for a mean over N rows.
// Grid: one block per row (grid-stride), 256 threads.
// v1: one online pass for (max, sum) per thread (rescaling the sum when the max grows), block-combined; then one
//     pass writing d_logits. Probabilities are never stored. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

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
