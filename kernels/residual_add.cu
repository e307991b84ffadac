// Residual add: out = a + b element-wise; out may alias a or b (each element is read before it is written).
//   a, b, out: (count).
// Grid: one thread per element, grid-stride.
// v1: element-wise. Default.
#include "common/dtypes.cuh"

struct ResidualAddArgs {
    const void* a;    // (count)
    const void* b;    // (count)
    void* out;        // (count)
    long long count;
};

template <typename T>
__device__ void residual_add(const ResidualAddArgs& p) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.count; i += (long long)gridDim.x * blockDim.x) {
        store_f<T>(p.out, i, load_f<T>(p.a, i) + load_f<T>(p.b, i));
    }
}

extern "C" __global__ void residual_add_f32(ResidualAddArgs p) { residual_add<float>(p); }
extern "C" __global__ void residual_add_bf16(ResidualAddArgs p) { residual_add<bf16>(p); }
