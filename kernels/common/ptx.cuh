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

// The shared-state-space address of a pointer into shared memory (what ldmatrix and cp.async take).
__device__ __forceinline__ unsigned ptx_shared_address(const void* p) {
    unsigned long long address;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(address) : "l"(p));
    return (unsigned)address;
}

// ldmatrix.x4: four 8x8 b16 matrices from shared memory. Lane l gives the address of row l % 8 of matrix l / 8;
// register i of lane l receives the two b16 elements at row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1 of matrix i.
__device__ __forceinline__ void ptx_ldmatrix_x4(unsigned (&r)[4], const void* shared_row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ptx_shared_address(shared_row)));
}

// ldmatrix.x4.trans: as ptx_ldmatrix_x4, each matrix transposed: register i of lane l receives the elements at rows
// 2 (l % 4) and 2 (l % 4) + 1, column l / 4 of matrix i (for operands stored with the other dimension contiguous).
__device__ __forceinline__ void ptx_ldmatrix_x4_trans(unsigned (&r)[4], const void* shared_row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(ptx_shared_address(shared_row)));
}

// cp.async: 16 bytes global -> shared without passing through registers, completing asynchronously; grouped by
// commit, awaited by wait_group (at most `pending` groups still in flight). L2 only (.cg): tiles are read once.
__device__ __forceinline__ void ptx_cp_async_16(void* shared_dst, const void* global_src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(ptx_shared_address(shared_dst)), "l"(global_src));
}

__device__ __forceinline__ void ptx_cp_async_commit() { asm volatile("cp.async.commit_group;"); }

template <int pending>
__device__ __forceinline__ void ptx_cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(pending)); }

// mma.sync m16n8k16, bf16 inputs, f32 accumulate: d = a b + c for the warp (fragment layouts in mma.cuh).
__device__ __forceinline__ void ptx_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
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

// ldmatrix.x4 on fibers: the warp gathers its 32 row addresses, then each lane reads its four words.
__device__ __forceinline__ void ptx_ldmatrix_x4(unsigned (&r)[4], const void* shared_row) {
    const void* rows[32];
    np_emu::warp_gather(0xffffffffu, shared_row, rows, "ldmatrix");
    int lane = np_emu::self().lane;
    for (int i = 0; i < 4; i++) std::memcpy(&r[i], static_cast<const char*>(rows[8 * i + lane / 4]) + 4 * (lane % 4), 4);
}

// ldmatrix.x4.trans on fibers: as ldmatrix.x4, reading each matrix down its columns.
__device__ __forceinline__ void ptx_ldmatrix_x4_trans(unsigned (&r)[4], const void* shared_row) {
    const void* rows[32];
    np_emu::warp_gather(0xffffffffu, shared_row, rows, "ldmatrix.trans");
    int lane = np_emu::self().lane;
    for (int i = 0; i < 4; i++) {
        unsigned short lo, hi;
        std::memcpy(&lo, static_cast<const char*>(rows[8 * i + 2 * (lane % 4)]) + 2 * (lane / 4), 2);
        std::memcpy(&hi, static_cast<const char*>(rows[8 * i + 2 * (lane % 4) + 1]) + 2 * (lane / 4), 2);
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
}

// cp.async on fibers: the source is read at issue (as the hardware may), but the bytes land in shared memory only
// at the wait_group that covers their commit group, so a kernel that reads a stage before waiting for it reads
// stale data and fails the suite, as it could on a GPU.
__device__ __forceinline__ void ptx_cp_async_16(void* shared_dst, const void* global_src) {
    np_emu::Fiber::AsyncCopy copy{shared_dst, {}, np_emu::self().async_groups};
    std::memcpy(copy.bytes, global_src, 16);
    np_emu::self().async_copies.push_back(copy);
}

__device__ __forceinline__ void ptx_cp_async_commit() { np_emu::self().async_groups++; }

template <int pending>
__device__ __forceinline__ void ptx_cp_async_wait() {
    np_emu::Fiber& f = np_emu::self();
    // Groups [0, async_groups) are committed; all but the newest `pending` of them land now.
    unsigned landed = f.async_groups >= (unsigned)pending ? f.async_groups - pending : 0;
    auto rest = std::stable_partition(f.async_copies.begin(), f.async_copies.end(),
                                      [&](const np_emu::Fiber::AsyncCopy& c) { return c.group >= landed; });
    for (auto it = rest; it != f.async_copies.end(); ++it) std::memcpy(it->dst, it->bytes, 16);
    f.async_copies.erase(rest, f.async_copies.end());
}

// mma.m16n8k16 on fibers: the warp gathers every lane's fragments; each lane rebuilds the rows of a and the
// columns of b its four outputs need, from the PTX fragment layouts, and accumulates in f32 in k order.
__device__ __forceinline__ void ptx_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2], const float (&c)[4]) {
    struct Fragments { unsigned a[4]; unsigned b[2]; };
    Fragments mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
    Fragments all[32];
    np_emu::warp_gather(0xffffffffu, mine, all, "mma.sync");
    auto half = [](unsigned word, int high) {
        unsigned bits = high ? (word >> 16) : (word & 0xffffu);
        return __uint_as_float(bits << 16);
    };
    int lane = np_emu::self().lane, group = lane / 4, pair = lane % 4;
    // a: lane 4g + t holds row g (regs 0, 2) and row g + 8 (regs 1, 3), columns 2t, 2t + 1 (regs 0, 1) and + 8 (regs 2, 3).
    float rows[2][16];
    for (int t = 0; t < 4; t++) {
        const Fragments& f = all[4 * group + t];
        for (int h = 0; h < 2; h++) {
            rows[0][2 * t + h] = half(f.a[0], h);
            rows[1][2 * t + h] = half(f.a[1], h);
            rows[0][2 * t + 8 + h] = half(f.a[2], h);
            rows[1][2 * t + 8 + h] = half(f.a[3], h);
        }
    }
    // b: lane 4n + t holds column n, rows 2t, 2t + 1 (reg 0) and 2t + 8, 2t + 9 (reg 1).
    float cols[2][16];
    for (int j = 0; j < 2; j++) {
        int n = 2 * pair + j;
        for (int t = 0; t < 4; t++) {
            const Fragments& f = all[4 * n + t];
            for (int h = 0; h < 2; h++) {
                cols[j][2 * t + h] = half(f.b[0], h);
                cols[j][2 * t + 8 + h] = half(f.b[1], h);
            }
        }
    }
    // d: lane 4g + t holds row g, columns 2t, 2t + 1 (d0, d1) and row g + 8 (d2, d3).
    for (int i = 0; i < 4; i++) {
        float sum = c[i];
        for (int k = 0; k < 16; k++) sum = std::fma(rows[i / 2][k], cols[i % 2][k], sum);
        d[i] = sum;
    }
}

#endif
#endif  // NP_PTX_CUH
