// Sum of squares accumulated into a scalar: total[0] += sum(x[i]^2), the building block of the global gradient norm.
//   x: (count) f32 or bf16; total: f32 (1); partials: double (blocks), scratch owned by the caller.
//   Deterministic: the grid depends only on count, each thread sums a fixed strided set in order, blocks reduce
//   by a fixed shuffle tree, and the partials are summed by one block in a fixed order. No atomics.
// Grid: sum_squares_partial_<dtype>: `blocks` blocks of 256 threads, grid-stride; sum_squares_finish_f32: one block.
// v1: double accumulation throughout, one rounding to f32 when total is written. Default.
#include "common/dtypes.cuh"

struct SumSquaresArgs {
    const void* x;      // (count)
    double* partials;   // (blocks)
    float* total;       // (1)
    long long count;
    int blocks;         // gridDim.x of the partial kernel
};

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in thread 0.
__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum_f64(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0;
    return warp_sum_f64(v);
}

template <typename T>
__device__ void sum_squares_partial(const SumSquaresArgs& a) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        double x = (double)load_f<T>(a.x, i);
        acc += x * x;
    }
    double sum = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) a.partials[blockIdx.x] = sum;
}

extern "C" __global__ void sum_squares_partial_f32(SumSquaresArgs a) { sum_squares_partial<float>(a); }
extern "C" __global__ void sum_squares_partial_bf16(SumSquaresArgs a) { sum_squares_partial<bf16>(a); }

extern "C" __global__ void sum_squares_finish_f32(SumSquaresArgs a) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < a.blocks; i += blockDim.x) acc += a.partials[i];
    double sum = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) a.total[0] = (float)((double)a.total[0] + sum);
}
