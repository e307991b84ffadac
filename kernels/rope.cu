// Rotary position embedding in place, Hugging Face Llama convention (rotate_half): element i of a head pairs
// with element i + d/2, rotated by angle = pos * theta^(-2i/d).
//   x: (tokens, heads, d), d even; positions: (tokens) i32.
// Grid: one thread per (token, head, i < d/2), grid-stride.
// v1: frequency and angle in f64 (an f32 angle at position 4096 is off by ~5e-4 rad), sin/cos rounded to f32. Default.
// Backward (rope_bwd): the transpose of the rotation, i.e. a rotation by -angle, in place on d_x (tokens, heads, d):
//   d_x1 = dy1 * cos + dy2 * sin, d_x2 = dy2 * cos - dy1 * sin. Same argument struct, grid and v1 as the forward.
#include "common/dtypes.cuh"

struct RopeArgs {
    void* x;               // (tokens, heads, d)
    const int* positions;  // (tokens)
    int tokens;
    int heads;
    int d;
    float theta;
};

// One rotation for both directions: sign +1 rotates by +angle (forward), -1 by -angle (backward, the transpose).
template <typename T>
__device__ void rope_rotate(const RopeArgs& a, float sign) {
    int half = a.d / 2;
    long long total = (long long)a.tokens * a.heads * half;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        long long row = idx / half;  // token * heads + head
        int t = (int)(row / a.heads);
        double angle = (double)a.positions[t] * pow((double)a.theta, -2.0 * i / a.d);
        float c = (float)cos(angle), s = sign * (float)sin(angle);
        long long base = row * a.d;
        float x1 = load_f<T>(a.x, base + i), x2 = load_f<T>(a.x, base + i + half);
        store_f<T>(a.x, base + i, x1 * c - x2 * s);
        store_f<T>(a.x, base + i + half, x2 * c + x1 * s);
    }
}

extern "C" __global__ void rope_fwd_f32(RopeArgs a) { rope_rotate<float>(a, 1.0f); }
extern "C" __global__ void rope_fwd_bf16(RopeArgs a) { rope_rotate<bf16>(a, 1.0f); }
// Backward: x holds d_y on entry and d_x on return.
extern "C" __global__ void rope_bwd_f32(RopeArgs a) { rope_rotate<float>(a, -1.0f); }
extern "C" __global__ void rope_bwd_bf16(RopeArgs a) { rope_rotate<bf16>(a, -1.0f); }
