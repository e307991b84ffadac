// Inline-PTX wrappers. Every asm statement the kernels use lives here, behind a small function, so an
// emulated device can give each one a CPU meaning without touching the kernels.
#ifndef NP_PTX_CUH
#define NP_PTX_CUH

__device__ __forceinline__ float ptx_f16_bits_to_f32(unsigned short bits) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
}

__device__ __forceinline__ unsigned short ptx_f32_to_f16_bits(float v) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
    return bits;
}
#endif  // NP_PTX_CUH
