// AdamW step, torch.optim.AdamW's update (decoupled weight decay) in torch's order of operations:
//   g = grad * grad_scale; p *= decay (decay = 1 - lr * weight_decay); m = beta1 * m + (1 - beta1) * g;
//   v = beta2 * v + (1 - beta2) * g * g; p -= step_size * m / (sqrt(v) / sqrt_bias2 + eps),
//   with step_size = lr / (1 - beta1^t) and sqrt_bias2 = sqrt(1 - beta2^t) computed on the host in double.
//   param, m, v: f32 (count), updated in place; grad: f32 (adamw_f32) or bf16 (adamw_bf16, the gradients of a bf16
//   model), read only. param_copy: bf16 (count) or null; when
//   given it receives the updated param rounded to bf16 (the working copy of a mixed-precision model).
// Grid: one thread per element, grid-stride.
// v1: element-wise, f32 state, sqrtf (correctly rounded) and a true division. Default.
#include "common/dtypes.cuh"

struct AdamWArgs {
    float* param;         // (count)
    const void* grad;     // (count), f32 or bf16 by entry point
    float* m;             // (count)
    float* v;             // (count)
    void* param_copy;     // bf16 (count) or null
    long long count;
    float grad_scale;
    float decay;          // 1 - lr * weight_decay
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float step_size;      // lr / (1 - beta1^t)
    float sqrt_bias2;     // sqrt(1 - beta2^t)
    float eps;
};

template <typename G>
__device__ void adamw(const AdamWArgs& a) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < a.count; i += (long long)gridDim.x * blockDim.x) {
        float g = load_f<G>(a.grad, i) * a.grad_scale;
        float p = a.param[i] * a.decay;
        float m = a.beta1 * a.m[i] + a.one_minus_beta1 * g;
        float v = a.beta2 * a.v[i] + a.one_minus_beta2 * (g * g);
        float denom = sqrtf(v) / a.sqrt_bias2 + a.eps;
        p -= a.step_size * (m / denom);
        a.m[i] = m;
        a.v[i] = v;
        a.param[i] = p;
        if (a.param_copy) store_f<bf16>(a.param_copy, i, p);
    }
}

extern "C" __global__ void adamw_f32(AdamWArgs a) { adamw<float>(a); }
extern "C" __global__ void adamw_bf16(AdamWArgs a) { adamw<bf16>(a); }
