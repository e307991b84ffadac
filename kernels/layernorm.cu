// LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance).
//   x, y: (rows, d); weight, bias: (d).
// Grid: one block per row (grid-stride), 256 threads.
// v1: mean pass, then a centred variance pass (numerically safer than E[x^2] - mean^2), then write. Default.
#include "common/dtypes.cuh"
#include "common/reduce.cuh"

struct LayerNormArgs {
    const void* x;       // (rows, d)
    const void* weight;  // (d)
    const void* bias;    // (d)
    void* y;             // (rows, d)
    int rows;
    int d;
    float eps;
};

template <typename T>
__device__ void layernorm_fwd(const LayerNormArgs& a) {
    __shared__ float scratch[32];
    for (int r = blockIdx.x; r < a.rows; r += gridDim.x) {
        long long base = (long long)r * a.d;
        float sum = 0.0f;
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) sum += load_f<T>(a.x, base + j);
        float mean = block_sum(sum, scratch) / a.d;
        float squares = 0.0f;
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            float c = load_f<T>(a.x, base + j) - mean;
            squares += c * c;
        }
        float inv = rsqrtf(block_sum(squares, scratch) / a.d + a.eps);
        for (int j = threadIdx.x; j < a.d; j += blockDim.x) {
            float c = load_f<T>(a.x, base + j) - mean;
            store_f<T>(a.y, base + j, c * inv * load_f<T>(a.weight, j) + load_f<T>(a.bias, j));
        }
    }
}

extern "C" __global__ void layernorm_fwd_f32(LayerNormArgs a) { layernorm_fwd<float>(a); }
extern "C" __global__ void layernorm_fwd_bf16(LayerNormArgs a) { layernorm_fwd<bf16>(a); }
