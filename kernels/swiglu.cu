// SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
//   gate, up, out: (count); out may alias gate or up.
// Backward (swiglu_bwd): d_gate = d_out * up * silu'(gate), d_up = d_out * silu(gate), with
//   silu'(g) = s * (1 + g * (1 - s)), s = sigmoid(g). gate, up, d_out, d_gate, d_up: (count); d_gate may alias
//   gate and d_up may alias up (each element is read before it is written, by the same thread).
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

struct SwiGluBwdArgs {
    const void* gate;   // (count)
    const void* up;     // (count)
    const void* d_out;  // (count)
    void* d_gate;       // (count)
    void* d_up;         // (count)
    long long count;
};

template <typename T>
__device__ void swiglu_bwd(const SwiGluBwdArgs& a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        float g = load_f<T>(a.gate, i), u = load_f<T>(a.up, i), dy = load_f<T>(a.d_out, i);
        float s = 1.0f / (1.0f + expf(-g));
        store_f<T>(a.d_gate, i, dy * u * s * (1.0f + g * (1.0f - s)));
        store_f<T>(a.d_up, i, dy * g * s);
    }
}

extern "C" __global__ void swiglu_bwd_f32(SwiGluBwdArgs a) { swiglu_bwd<float>(a); }
extern "C" __global__ void swiglu_bwd_bf16(SwiGluBwdArgs a) { swiglu_bwd<bf16>(a); }
