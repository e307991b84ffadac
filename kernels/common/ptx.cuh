// Inline-PTX wrappers. Every asm statement the kernels use lives here, behind a small function, so an
// emulated device can give each one a CPU meaning without touching the kernels.
#ifndef NP_PTX_CUH
#define NP_PTX_CUH

#ifndef NP_EMU

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

#else  // the emulated device: the same conversions through the host compiler's IEEE binary16 type

__device__ __forceinline__ float ptx_f16_bits_to_f32(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return (float)h;
}

__device__ __forceinline__ unsigned short ptx_f32_to_f16_bits(float v) {
    _Float16 h = (_Float16)v;  // round to nearest even, as cvt.rn.f16.f32
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}

#endif
#endif  // NP_PTX_CUH
