// SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
//   gate, up, out: (count); out may alias gate or up.
// Grid: one thread per element, grid-stride.
// v1: element-wise, expf (not __expf: the f32 bound is 1e-5). Default.
#include "common/dtypes.cuh"

struct SwiGluArgs {
    const void* gate;  // (count)
    const void* up;    // (count)
    void* out;         // (count)
    long long count;
};

template <typename T>
__device__ void swiglu_fwd(const SwiGluArgs& a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        float g = load_f<T>(a.gate, i);
        store_f<T>(a.out, i, g / (1.0f + expf(-g)) * load_f<T>(a.up, i));
    }
}

extern "C" __global__ void swiglu_fwd_f32(SwiGluArgs a) { swiglu_fwd<float>(a); }
extern "C" __global__ void swiglu_fwd_bf16(SwiGluArgs a) { swiglu_fwd<bf16>(a); }
