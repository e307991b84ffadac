// The emulated device's launcher: included after a kernel file in the translation unit the emulated device
// generates for it (see NativeParallel.Devices.EmuCompiler). Exports np_emu_launch.
#ifndef NP_EMU_RUNTIME_H
#define NP_EMU_RUNTIME_H

#include <random>
#include <sys/mman.h>

namespace np_emu {

constexpr size_t kFiberStackBytes = 128 * 1024;

inline void fiber_main(unsigned lo, unsigned hi) {
    Fiber* f = reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo);
    f->block->launch->entry(f->block->launch->args);
    f->state = FiberState::Done;
    // Returning ends the fiber: uc_link resumes the block's scheduler.
}

inline std::string describe_threads(const std::vector<Fiber>& fibers, FiberState state, const char* what_filter) {
    // Ranges of linear thread ids in one state, e.g. "0-31, 64".
    std::string out;
    int start = -1, prev = -2;
    auto flush = [&]() {
        if (start < 0) return;
        if (!out.empty()) out += ", ";
        out += std::to_string(start);
        if (prev != start) out += "-" + std::to_string(prev);
    };
    for (const Fiber& f : fibers) {
        bool match = f.state == state && (what_filter == nullptr || std::strcmp(f.waiting_in, what_filter) == 0);
        if (!match) continue;
        if (f.linear != prev + 1) { flush(); start = f.linear; }
        prev = f.linear;
    }
    flush();
    return out;
}

inline void fail(Launch& launch, const std::string& message) {
    std::lock_guard<std::mutex> guard(launch.error_lock);
    if (!launch.failed.exchange(true)) launch.error = message;
}

// Runs one block to completion (or to a deadlock) on the calling OS thread.
inline void run_block(Launch& launch, dim3 bid, long long block_index, std::vector<Fiber>& fibers, std::vector<char*>& stacks) {
    // Seeded per (schedule, block): the same schedule interleaves the same way whichever OS thread runs the block.
    std::mt19937 rng((unsigned)(launch.schedule * 7919u + (unsigned)block_index));
    Block block;
    block.launch = &launch;
    block.bid = bid;
    block.fibers = &fibers;
    unsigned threads = launch.block.x * launch.block.y * launch.block.z;
    block.warps.assign((threads + 31) / 32, Warp{});
    fibers.resize(threads);
    for (unsigned t = 0; t < threads; t++) {
        Fiber& f = fibers[t];
        f = Fiber{};
        f.linear = (int)t;
        f.tid = dim3{t % launch.block.x, (t / launch.block.x) % launch.block.y, t / (launch.block.x * launch.block.y)};
        f.lane = (int)(t % 32);
        f.warp = (int)(t / 32);
        f.block = &block;
        f.stack = stacks[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = kFiberStackBytes;
        f.context.uc_link = &block.scheduler;
        uintptr_t p = reinterpret_cast<uintptr_t>(&f);
        makecontext(&f.context, reinterpret_cast<void (*)()>(fiber_main), 2, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32));
    }
    // The order fibers are resumed in: forward, reverse, or a fresh shuffle each round (seeded by the schedule).
    std::vector<unsigned> order(threads);
    for (unsigned t = 0; t < threads; t++) order[t] = launch.schedule == 1 ? threads - 1 - t : t;
    size_t live = threads;
    while (live > 0) {
        if (launch.schedule >= 2) std::shuffle(order.begin(), order.end(), rng);
        bool progressed = false;
        for (unsigned t : order) {
            Fiber& f = fibers[t];
            if (f.state != FiberState::Runnable) continue;
            current = &f;
            swapcontext(&block.scheduler, &f.context);
            current = nullptr;
            progressed = true;
            if (f.state == FiberState::Done) live--;
        }
        // Release barriers every live participant has reached. A block barrier waits for every live thread; a warp
        // barrier for every live lane of the warp named in the mask.
        bool all_at_block = live > 0;
        for (const Fiber& f : fibers)
            if (f.state != FiberState::Done && f.state != FiberState::AtBlockBarrier) { all_at_block = false; break; }
        if (all_at_block) {
            for (Fiber& f : fibers) if (f.state == FiberState::AtBlockBarrier) f.state = FiberState::Runnable;
            continue;
        }
        bool released_warp = false;
        for (size_t w = 0; w < block.warps.size(); w++) {
            unsigned waiting = 0, live_lanes = 0, mask = 0;
            bool any = false;
            for (size_t l = 0; l < 32 && w * 32 + l < threads; l++) {
                const Fiber& f = fibers[w * 32 + l];
                if (f.state == FiberState::Done) continue;
                live_lanes |= 1u << l;
                if (f.state == FiberState::AtWarpBarrier) { waiting |= 1u << l; mask = f.warp_mask; any = true; }
            }
            if (!any || (waiting & mask) != (live_lanes & mask) || (waiting & ~mask)) continue;
            block.warps[w].released = waiting;
            for (size_t l = 0; l < 32 && w * 32 + l < threads; l++) {
                Fiber& f = fibers[w * 32 + l];
                if (f.state == FiberState::AtWarpBarrier) f.state = FiberState::Runnable;
            }
            released_warp = true;
        }
        if (progressed || released_warp || live == 0) continue;
        // Nobody can move: report who waits where. The suspended fibers are abandoned (they hold no resources).
        std::string message = std::string("deadlock in kernel ") + launch.kernel + ", block (" + std::to_string(bid.x) + ", " +
                              std::to_string(bid.y) + ", " + std::to_string(bid.z) + "):";
        for (const char* what : {"__syncthreads", "__syncwarp", "__shfl_sync", "__shfl_xor_sync", "__shfl_up_sync",
                                 "__shfl_down_sync", "__ballot_sync", "__any_sync", "__all_sync", "__activemask"}) {
            FiberState state = std::strcmp(what, "__syncthreads") == 0 ? FiberState::AtBlockBarrier : FiberState::AtWarpBarrier;
            std::string ids = describe_threads(fibers, state, what);
            if (!ids.empty()) message += std::string(" threads ") + ids + " wait in " + what + ";";
        }
        std::string done = describe_threads(fibers, FiberState::Done, nullptr);
        message += done.empty() ? " no thread has exited" : " threads " + done + " have exited";
        message += " (a barrier not every live thread reaches: a __syncthreads or warp intrinsic under a divergent branch?)";
        fail(launch, message);
        return;
    }
}

inline void worker(Launch& launch) {
    unsigned threads = launch.block.x * launch.block.y * launch.block.z;
    std::vector<char*> stacks(threads);
    for (unsigned t = 0; t < threads; t++) {
        void* p = mmap(nullptr, kFiberStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        stacks[t] = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
        if (!stacks[t]) { fail(launch, "out of memory for fiber stacks"); break; }
    }
    std::vector<Fiber> fibers;
    long long blocks = (long long)launch.grid.x * launch.grid.y * launch.grid.z;
    while (!launch.failed.load()) {
        long long b = launch.next_block.fetch_add(1);
        if (b >= blocks) break;
        dim3 bid{(unsigned)(b % launch.grid.x), (unsigned)((b / launch.grid.x) % launch.grid.y),
                 (unsigned)(b / ((long long)launch.grid.x * launch.grid.y))};
        run_block(launch, bid, b, fibers, stacks);
    }
    for (char* s : stacks) if (s) munmap(s, kFiberStackBytes);
}

}  // namespace np_emu

// Runs a grid: blocks spread over up to max_workers OS threads. schedule 0 = forward, 1 = reverse, >= 2 = seeded
// shuffles. Returns 0, or 1 with a message in error (kernel, block and threads named).
extern "C" int np_emu_launch(void (*entry)(const void*), const void* args, const char* kernel, unsigned gx, unsigned gy,
                             unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned schedule, unsigned max_workers,
                             char* error, int error_bytes) {
    np_emu::Launch launch;
    launch.entry = entry;
    launch.args = args;
    launch.kernel = kernel;
    launch.grid = dim3{gx, gy, gz};
    launch.block = dim3{bx, by, bz};
    launch.schedule = schedule;
    long long blocks = (long long)gx * gy * gz;
    unsigned workers = (unsigned)std::max<long long>(1, std::min<long long>(blocks, std::max(1u, max_workers)));
    if (bx * by * bz == 0 || bx * by * bz > 1024) {
        std::snprintf(error, error_bytes, "kernel %s: block (%u, %u, %u) has %u threads; CUDA allows 1 to 1024", kernel, bx, by, bz, bx * by * bz);
        return 1;
    }
    // Workers are fresh OS threads, never the caller's: fibers switch stacks, which the caller's runtime (.NET)
    // need never see.
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < workers; w++) threads.emplace_back(np_emu::worker, std::ref(launch));
    for (auto& t : threads) t.join();
    if (!launch.failed) return 0;
    std::snprintf(error, error_bytes, "%s", launch.error.c_str());
    return 1;
}

#endif  // NP_EMU_RUNTIME_H
