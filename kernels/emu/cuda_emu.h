// CUDA on the CPU: what kernels/*.cu need from CUDA, for the host C++ compiler. Included first (-include) when
// the emulated device builds a kernel file with -DNP_EMU. Each CUDA thread is a fiber (ucontext) of its block;
// __syncthreads() is a real block barrier and the warp intrinsics real per-warp barriers, scheduled in an order
// chosen per launch (forward, reverse, or a seeded shuffle) so that a missing barrier shows up as a difference.
// A barrier that not every live thread reaches is reported as a deadlock naming kernel, block and threads.
// Blocks are spread over OS threads; a block's fibers all run on one OS thread, so __shared__ is thread_local.
#ifndef NP_CUDA_EMU_H
#define NP_CUDA_EMU_H

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <ucontext.h>

struct dim3 {
    unsigned x, y, z;
};
typedef dim3 uint3;
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};

namespace np_emu {

enum class FiberState { Runnable, AtBlockBarrier, AtWarpBarrier, Done };

struct Block;

struct Fiber {
    ucontext_t context;
    char* stack = nullptr;
    dim3 tid;
    int linear = 0;
    int lane = 0;
    int warp = 0;
    FiberState state = FiberState::Runnable;
    unsigned warp_mask = 0;       // mask passed to the warp intrinsic this fiber waits in
    const char* waiting_in = "";  // intrinsic name, for deadlock reports
    unsigned shuffle_parity = 0;  // which exchange buffer the next warp exchange uses
    Block* block = nullptr;
    // cp.async copies not yet landed, each tagged with its commit group (the open group is async_groups).
    struct AsyncCopy { void* dst; unsigned char bytes[16]; unsigned group; };
    std::vector<AsyncCopy> async_copies;
    unsigned async_groups = 0;
};

struct Warp {
    uint64_t slots[2][32];
    alignas(16) unsigned char wide[2][32][64];  // per-lane payloads of warp_gather (fragments, row addresses)
    unsigned released = 0;  // lanes let through the last barrier of this warp (stable until they all meet again)
};

struct Launch {
    void (*entry)(const void*);
    const void* args;
    dim3 grid;
    dim3 block;
    const char* kernel;
    unsigned schedule;
    std::atomic<long long> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    std::string error;
};

struct Block {
    Launch* launch;
    dim3 bid;
    std::vector<Fiber>* fibers;
    std::vector<Warp> warps;
    ucontext_t scheduler;
};

inline thread_local Fiber* current = nullptr;

inline Fiber& self() { return *current; }

// Parks the calling fiber and returns to its block's scheduler.
inline void yield_to_scheduler() {
    Fiber& f = self();
    swapcontext(&f.context, &f.block->scheduler);
}

inline void block_barrier() {
    Fiber& f = self();
    f.state = FiberState::AtBlockBarrier;
    f.waiting_in = "__syncthreads";
    yield_to_scheduler();
}

inline void warp_barrier(unsigned mask, const char* what) {
    Fiber& f = self();
    f.state = FiberState::AtWarpBarrier;
    f.warp_mask = mask;
    f.waiting_in = what;
    yield_to_scheduler();
}

// Every lane writes its value, meets the others, then reads the source lane's value. Two buffers alternate, so a
// lane that runs ahead to the next exchange cannot overwrite a value a slower lane has still to read.
template <typename T>
inline T exchange(unsigned mask, T value, int source_lane, const char* what) {
    static_assert(sizeof(T) <= 8, "warp exchange of values wider than 8 bytes");
    Fiber& f = self();
    Warp& w = f.block->warps[f.warp];
    unsigned parity = f.shuffle_parity;
    f.shuffle_parity ^= 1u;
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    w.slots[parity][f.lane] = bits;
    warp_barrier(mask, what);
    if (source_lane < 0 || source_lane >= 32 || !((mask >> source_lane) & 1u)) return value;
    T out;
    std::memcpy(&out, &w.slots[parity][source_lane], sizeof(T));
    return out;
}

// Every lane publishes a value of up to 64 bytes and receives all 32 (lanes outside the warp or the mask
// leave their entries zeroed). The warp-wide instructions (mma.sync, ldmatrix) are built on it.
template <typename T>
inline void warp_gather(unsigned mask, const T& mine, T (&all)[32], const char* what) {
    static_assert(sizeof(T) <= 64, "warp_gather payloads are at most 64 bytes per lane");
    Fiber& f = self();
    Warp& w = f.block->warps[f.warp];
    unsigned parity = f.shuffle_parity;
    f.shuffle_parity ^= 1u;
    std::memcpy(w.wide[parity][f.lane], &mine, sizeof(T));
    warp_barrier(mask, what);
    for (int l = 0; l < 32; l++) {
        if ((w.released >> l) & 1u) std::memcpy(&all[l], w.wide[parity][l], sizeof(T));
        else std::memset(static_cast<void*>(&all[l]), 0, sizeof(T));
    }
}

}  // namespace np_emu

#define threadIdx (np_emu::current->tid)
#define blockIdx (np_emu::current->block->bid)
#define blockDim (np_emu::current->block->launch->block)
#define gridDim (np_emu::current->block->launch->grid)
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))

inline void __syncthreads() { np_emu::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { np_emu::warp_barrier(mask, "__syncwarp"); }

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = np_emu::self().lane;
    int base = lane & ~(width - 1);
    return np_emu::exchange(mask, v, base + (src & (width - 1)), "__shfl_sync");
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = np_emu::self().lane;
    int src = lane ^ lane_mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return np_emu::exchange(mask, v, src, "__shfl_xor_sync");
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = np_emu::self().lane;
    int src = lane - (int)delta;
    if (src < (lane & ~(width - 1))) src = lane;
    return np_emu::exchange(mask, v, src, "__shfl_up_sync");
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = np_emu::self().lane;
    int src = lane + (int)delta;
    if (src >= (lane & ~(width - 1)) + width) src = lane;
    return np_emu::exchange(mask, v, src, "__shfl_down_sync");
}

namespace np_emu {
// One exchange of a predicate per lane; the lanes that took part are those the barrier released.
struct Votes {
    unsigned arrived;
    unsigned set;
};
inline Votes vote(unsigned mask, int predicate, const char* what) {
    Fiber& f = self();
    Warp& w = f.block->warps[f.warp];
    unsigned parity = f.shuffle_parity;
    f.shuffle_parity ^= 1u;
    w.slots[parity][f.lane] = predicate ? 1u : 0u;
    warp_barrier(mask, what);
    Votes v{w.released & mask, 0};
    for (int l = 0; l < 32; l++)
        if (((v.arrived >> l) & 1u) && w.slots[parity][l]) v.set |= 1u << l;
    return v;
}
}  // namespace np_emu

inline unsigned __ballot_sync(unsigned mask, int predicate) { return np_emu::vote(mask, predicate, "__ballot_sync").set; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __any_sync(unsigned mask, int predicate) { return np_emu::vote(mask, predicate, "__any_sync").set != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    np_emu::Votes v = np_emu::vote(mask, predicate, "__all_sync");
    return v.set == v.arrived;
}
inline unsigned __activemask() { return np_emu::vote(0xffffffffu, 1, "__activemask").arrived; }

// Atomics: blocks run on several OS threads, so these are real atomics.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline float atomicAdd(float* p, float v) {
    uint32_t* bits = reinterpret_cast<uint32_t*>(p);
    uint32_t expected = __atomic_load_n(bits, __ATOMIC_RELAXED), desired;
    float old;
    do {
        std::memcpy(&old, &expected, 4);
        float sum = old + v;
        std::memcpy(&desired, &sum, 4);
    } while (!__atomic_compare_exchange_n(bits, &expected, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
inline int atomicMax(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline int atomicMin(int* p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline int atomicCAS(int* p, int compare, int v) {
    __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Math and bit casts the kernels use.
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; std::memcpy(&i, &v, 4); return i; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float v) { unsigned u; std::memcpy(&u, &v, 4); return u; }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float __expf(float v) { return std::exp(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

#endif  // NP_CUDA_EMU_H
