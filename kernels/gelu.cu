// GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
//   x, out: (count); out may alias x.
// Grid: one thread per element, grid-stride.
// v1: element-wise, tanhf.
// v2: x * sigmoid(2u), the same function without the cancellation of 1 + tanh(u) for negative x (v1 lost
//     ~1e-2 relative accuracy there in f32). Default.
#include "common/dtypes.cuh"

struct GeluArgs {
    const void* x;   // (count)
    void* out;       // (count)
    long long count;
};

template <typename T>
__device__ void gelu_fwd(const GeluArgs& a) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        float x = load_f<T>(a.x, i);
        float u = c * (x + 0.044715f * x * x * x);
        store_f<T>(a.out, i, x / (1.0f + expf(-2.0f * u)));
    }
}

extern "C" __global__ void gelu_fwd_f32(GeluArgs a) { gelu_fwd<float>(a); }
extern "C" __global__ void gelu_fwd_bf16(GeluArgs a) { gelu_fwd<bf16>(a); }
