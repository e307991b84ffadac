// Bias add in place: x[r, j] += bias[j].
//   x: (rows, n); bias: (n).
// Grid: one thread per element, grid-stride.
// v1: element-wise, coalesced. Default.
#include "common/dtypes.cuh"

struct BiasAddArgs {
    void* x;           // (rows, n)
    const void* bias;  // (n)
    long long count;   // rows * n
    int n;
};

template <typename T>
__device__ void bias_add(const BiasAddArgs& a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        store_f<T>(a.x, i, load_f<T>(a.x, i) + load_f<T>(a.bias, i % a.n));
    }
}

extern "C" __global__ void bias_add_f32(BiasAddArgs a) { bias_add<float>(a); }
extern "C" __global__ void bias_add_bf16(BiasAddArgs a) { bias_add<bf16>(a); }
