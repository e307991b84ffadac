// Warp and block reductions (sum, max, argmax) over shuffles. Block reductions assume blockDim.x is a multiple
// of 32 and at most 1024, and that every thread of the block calls them (they contain __syncthreads()).
#ifndef NP_REDUCE_CUH
#define NP_REDUCE_CUH
#include "dtypes.cuh"

#define NP_FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(NP_FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(NP_FULL_MASK, v, offset));
    return v;
}

// Total order used by argmax and top-k: larger value first, then lower index.
__device__ __forceinline__ bool np_ranks_before(float v, int i, float best_v, int best_i) {
    return v > best_v || (v == best_v && i < best_i);
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        float other_v = __shfl_xor_sync(NP_FULL_MASK, v, offset);
        int other_i = __shfl_xor_sync(NP_FULL_MASK, i, offset);
        if (np_ranks_before(other_v, other_i, v, i)) { v = other_v; i = other_i; }
    }
}

// Sum over the block; every thread gets the result. `scratch` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : NP_NEG_INF;
    return warp_max(v);
}

// Argmax over the block by (value desc, index asc); every thread gets the result. Scratch: 32 floats, 32 ints.
__device__ __forceinline__ void block_argmax(float& v, int& i, float* scratch_v, int* scratch_i) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    warp_argmax(v, i);
    __syncthreads();
    if (lane == 0) { scratch_v[warp] = v; scratch_i[warp] = i; }
    __syncthreads();
    v = lane < warps ? scratch_v[lane] : NP_NEG_INF;
    i = lane < warps ? scratch_i[lane] : 0x7fffffff;
    warp_argmax(v, i);
}
#endif  // NP_REDUCE_CUH
