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
