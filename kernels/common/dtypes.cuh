// Storage types and f32 conversions for the kernels, without cuda_fp16.h / cuda_bf16.h (absent from NVRTC 11.8).
// Every kernel computes in f32: to_float() widens on load, from_float<T>() rounds on store. Rounding is to
// nearest even, bit-exact with NativeParallel.Tensors.FloatBits on the host.
#ifndef NP_DTYPES_CUH
#define NP_DTYPES_CUH
#include "ptx.cuh"

struct bf16 { unsigned short bits; };
struct f16 { unsigned short bits; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(((unsigned int)x.bits) << 16); }
__device__ __forceinline__ float to_float(f16 x) { return ptx_f16_bits_to_f32(x.bits); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float v) {
    unsigned int bits = __float_as_uint(v);
    bf16 out;
    if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it NaN (quiet), never round it into infinity
        out.bits = (unsigned short)((bits >> 16) | 0x0040u);
    } else {
        out.bits = (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
    return out;
}
template <> __device__ __forceinline__ f16 from_float<f16>(float v) {
    f16 out;
    out.bits = ptx_f32_to_f16_bits(v);
    return out;
}

// Loads and stores through untyped pointers, so one argument struct (void* fields) serves every dtype.
template <typename T> __device__ __forceinline__ float load_f(const void* p, long long i) {
    return to_float(static_cast<const T*>(p)[i]);
}
template <typename T> __device__ __forceinline__ void store_f(void* p, long long i, float v) {
    static_cast<T*>(p)[i] = from_float<T>(v);
}

#define NP_NEG_INF __int_as_float(0xff800000)
#endif  // NP_DTYPES_CUH
