// Size limits the kernels are built for; mirrored by NativeParallel.Kernels.KernelLimits (a test checks both).
#ifndef NP_LIMITS_CUH
#define NP_LIMITS_CUH

#define NP_MAX_HEAD_DIM 256      // attention: each lane of a warp holds NP_MAX_HEAD_DIM / 32 values in registers
#define NP_MAX_TOPK 64
#define NP_MAX_REDUCE_INPUTS 8   // one-shot all-reduce over up to 8 ranks
#endif  // NP_LIMITS_CUH
