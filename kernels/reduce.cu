// Element-wise reduction across up to NP_MAX_REDUCE_INPUTS inputs: dst = op(src[0], ..., src[count - 1]).
// The collectives' reduction step: a ring step reduces 2 inputs, a one-shot all-reduce all ranks' buffers.
//   src[s], dst: (count); dst may be one of the sources (in place). Entry points reduce_<op>_<dtype>,
//   op in sum, prod, max, min, avg (sum / inputs); dtype in f32, bf16, f16. f32 accumulation, one rounding.
// Grid: one thread per element, grid-stride.
// v1: scalar loads, inputs combined in a fixed order (src[0] first), so results are deterministic. Default.
#include "common/dtypes.cuh"
#include "common/limits.cuh"

struct ReduceArgs {
    const void* src[NP_MAX_REDUCE_INPUTS];  // each (count)
    void* dst;                              // (count)
    long long count;
    int inputs;
};

struct OpSum  { static __device__ __forceinline__ float apply(float a, float b) { return a + b; } };
struct OpProd { static __device__ __forceinline__ float apply(float a, float b) { return a * b; } };
struct OpMax  { static __device__ __forceinline__ float apply(float a, float b) { return fmaxf(a, b); } };
struct OpMin  { static __device__ __forceinline__ float apply(float a, float b) { return fminf(a, b); } };

template <typename T, typename Op, bool Average>
__device__ void reduce(const ReduceArgs& a) {
    float inverse = 1.0f / a.inputs;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        float acc = load_f<T>(a.src[0], i);
        // Constant indices keep src[] in the parameter bank; a variable index would copy it to local memory.
#pragma unroll
        for (int s = 1; s < NP_MAX_REDUCE_INPUTS; s++) {
            if (s < a.inputs) acc = Op::apply(acc, load_f<T>(a.src[s], i));
        }
        store_f<T>(a.dst, i, Average ? acc * inverse : acc);
    }
}

#define NP_REDUCE_ENTRIES(NAME, T)                                                                      \
    extern "C" __global__ void reduce_sum_##NAME(ReduceArgs a) { reduce<T, OpSum, false>(a); }        \
    extern "C" __global__ void reduce_prod_##NAME(ReduceArgs a) { reduce<T, OpProd, false>(a); }      \
    extern "C" __global__ void reduce_max_##NAME(ReduceArgs a) { reduce<T, OpMax, false>(a); }        \
    extern "C" __global__ void reduce_min_##NAME(ReduceArgs a) { reduce<T, OpMin, false>(a); }        \
    extern "C" __global__ void reduce_avg_##NAME(ReduceArgs a) { reduce<T, OpSum, true>(a); }

NP_REDUCE_ENTRIES(f32, float)
NP_REDUCE_ENTRIES(bf16, bf16)
NP_REDUCE_ENTRIES(f16, f16)
