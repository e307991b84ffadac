// Tensor-core fragments for mma.sync m16n8k16 with bf16 inputs and f32 accumulation. With lane = 4 g + t
// (g = group 0..7, t = thread in group 0..3), the PTX ISA lays them out as:
//   A (16 x 16, row-major), 4 registers of two bf16:  r0 = A[g][2t..2t+1],     r1 = A[g+8][2t..2t+1],
//                                                      r2 = A[g][2t+8..2t+9],   r3 = A[g+8][2t+8..2t+9]
//   B (16 x 8, k x n, "col"), 2 registers:             r0 = B[2t..2t+1][g],     r1 = B[2t+8..2t+9][g]
//   C, D (16 x 8, f32), 4 registers:                   c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
// The instructions themselves live in ptx.cuh (and have a CPU meaning on the emulated device).
#ifndef NP_MMA_CUH
#define NP_MMA_CUH
#include "ptx.cuh"

struct FragA { unsigned r[4]; };
struct FragB { unsigned r[2]; };
struct FragC { float r[4]; };

__device__ __forceinline__ void mma_bf16_16816(FragC& acc, const FragA& a, const FragB& b) {
    ptx_mma_m16n8k16_bf16(acc.r, a.r, b.r, acc.r);
}

// A 16 x 16 bf16 tile from shared memory at `tile` (row stride `stride` elements, rows 16-byte aligned):
// lane l points at row (l % 8) + 8 ((l / 8) % 2), column 8 (l / 16), which makes ldmatrix's four matrices the
// four registers of the A fragment in order.
__device__ __forceinline__ void load_a_fragment(FragA& a, const unsigned short* tile, int stride) {
    int lane = threadIdx.x & 31;
    const unsigned short* row = tile + (lane % 8 + 8 * ((lane / 8) % 2)) * stride + 8 * (lane / 16);
    ptx_ldmatrix_x4(a.r, row);
}

// A 16 x 8 B fragment from an (n, k) tile in shared memory (k contiguous: the "col" layout mma wants).
__device__ __forceinline__ void load_b_fragment(FragB& b, const unsigned short* tile, int stride) {
    int lane = threadIdx.x & 31, g = lane / 4, t = lane % 4;
    b.r[0] = *reinterpret_cast<const unsigned*>(tile + g * stride + 2 * t);
    b.r[1] = *reinterpret_cast<const unsigned*>(tile + g * stride + 2 * t + 8);
}

#endif  // NP_MMA_CUH
