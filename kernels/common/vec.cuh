// 16-byte vector access for the memory-bound kernels: one uint4 load moves VecOf<T>::N elements (4 f32, 8 bf16),
// a quarter (f32) or an eighth (bf16) of the load instructions of element-wise access, so a few loads per thread
// keep enough bytes in flight to cover HBM latency.
// Rows need not start 16-byte aligned (e.g. bf16 rows of 50257): a row of n elements starting at element address p
// is covered by vectors k = 0, 1, ... starting at element row_vec_start(p) + N k, where row_vec_start(p) in
// (-N, 0] is minus p's misalignment in elements. Only the first and last vector can be partial; those go through
// element loads (out-of-row elements never read), every other vector through one aligned uint4.
#ifndef NP_VEC_CUH
#define NP_VEC_CUH
#include "dtypes.cuh"

template <typename T> struct VecOf { static constexpr int N = 16 / (int)sizeof(T); };

// Minus the misalignment of p in elements: the index (relative to p) where p's first aligned vector starts.
template <typename T> __device__ __forceinline__ int row_vec_start(const void* p) {
    return -(int)(((unsigned long long)p & 15ull) / sizeof(T));
}

// Vectors covering a row of n elements whose first aligned vector starts at index s0.
template <typename T> __device__ __forceinline__ int row_vec_count(int s0, int n) {
    return (n - s0 + VecOf<T>::N - 1) / VecOf<T>::N;
}

// Elements of a packed vector as floats.
__device__ __forceinline__ void unpack(const uint4& u, float (&f)[4]) {
    f[0] = __uint_as_float(u.x); f[1] = __uint_as_float(u.y); f[2] = __uint_as_float(u.z); f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack(const uint4& u, float (&f)[8]) {
    f[0] = __uint_as_float(u.x << 16); f[1] = __uint_as_float(u.x & 0xffff0000u);
    f[2] = __uint_as_float(u.y << 16); f[3] = __uint_as_float(u.y & 0xffff0000u);
    f[4] = __uint_as_float(u.z << 16); f[5] = __uint_as_float(u.z & 0xffff0000u);
    f[6] = __uint_as_float(u.w << 16); f[7] = __uint_as_float(u.w & 0xffff0000u);
}

template <typename T> __device__ __forceinline__ uint4 pack(const float (&f)[VecOf<T>::N]);
template <> __device__ __forceinline__ uint4 pack<float>(const float (&f)[4]) {
    uint4 u;
    u.x = __float_as_uint(f[0]); u.y = __float_as_uint(f[1]); u.z = __float_as_uint(f[2]); u.w = __float_as_uint(f[3]);
    return u;
}
template <> __device__ __forceinline__ uint4 pack<bf16>(const float (&f)[8]) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        w[i] = (unsigned)from_float<bf16>(f[2 * i]).bits | ((unsigned)from_float<bf16>(f[2 * i + 1]).bits << 16);
    uint4 u;
    u.x = w[0]; u.y = w[1]; u.z = w[2]; u.w = w[3];
    return u;
}

// Vector k of a row (elements s0 + N k ...): one uint4 load when whole, else element loads with `fill` outside
// [0, n). Returned packed, so a bf16 row kept in registers costs 2 bytes an element.
// `aligned`: row has misalignment s0 (else element loads: e.g. a weight vector beside a row of another misalignment).
template <typename T> __device__ __forceinline__ uint4 load_row_vec(const void* row, int s0, int n, int k, float fill, bool aligned = true) {
    constexpr int N = VecOf<T>::N;
    int j0 = s0 + N * k;
    if (aligned && j0 >= 0 && j0 + N <= n) return *reinterpret_cast<const uint4*>(static_cast<const T*>(row) + j0);
    float f[N];
#pragma unroll
    for (int e = 0; e < N; e++) f[e] = (j0 + e >= 0 && j0 + e < n) ? load_f<T>(row, j0 + e) : fill;
    return pack<T>(f);
}

// Stores vector k of a row; `aligned`: the destination row has the source row's misalignment (else element stores).
template <typename T> __device__ __forceinline__ void store_row_vec(void* row, int s0, int n, int k, const float (&f)[VecOf<T>::N], bool aligned) {
    constexpr int N = VecOf<T>::N;
    int j0 = s0 + N * k;
    if (aligned && j0 >= 0 && j0 + N <= n) {
        *reinterpret_cast<uint4*>(static_cast<T*>(row) + j0) = pack<T>(f);
        return;
    }
#pragma unroll
    for (int e = 0; e < N; e++)
        if (j0 + e >= 0 && j0 + e < n) store_f<T>(row, j0 + e, f[e]);
}

// Whether element index j of a vector starting at j0 lies in the row.
__device__ __forceinline__ bool in_row(int j0, int e, int n) { return j0 + e >= 0 && j0 + e < n; }
#endif  // NP_VEC_CUH
