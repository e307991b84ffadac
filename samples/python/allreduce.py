#!/usr/bin/env python3
"""NativeParallel's C API from Python through ctypes (no packages needed): N ranks all-reduce, all-gather,
reduce-scatter and broadcast, each result checked exactly.

    ./build.sh native                        # out/native/lib/libnativeparallel.so
    python3 samples/python/allreduce.py 3    # this process makes the id and starts 3 ranks of itself

The id travels as NCCL's ncclUniqueId would: made once, handed to every rank (here in argv, as hex). Set
NATIVEPARALLEL_LIB to the library's path when it is not in out/native/lib/.
"""
import array
import ctypes
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.environ.get("NATIVEPARALLEL_LIB") or os.path.join(HERE, "..", "..", "out", "native", "lib", "libnativeparallel.so")

NP_FLOAT32, NP_INT64 = 7, 4
NP_SUM, NP_MAX = 0, 2


class UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_char * 128)]


def load():
    lib = ctypes.CDLL(LIBRARY)
    comm = ctypes.c_void_p
    size_t, c_int, ptr = ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p
    signatures = {
        "npGetUniqueId": [ctypes.POINTER(UniqueId)],
        # npCommInitRank is an inline function of the header; its symbol takes the id by address.
        "npCommInitRankById": [ctypes.POINTER(comm), c_int, ctypes.POINTER(UniqueId), c_int],
        "npCommCount": [comm, ctypes.POINTER(c_int)],
        "npCommUserRank": [comm, ctypes.POINTER(c_int)],
        "npCommDestroy": [comm],
        "npAllReduce": [ptr, ptr, size_t, c_int, c_int, comm, ptr],
        "npAllGather": [ptr, ptr, size_t, c_int, comm, ptr],
        "npReduceScatter": [ptr, ptr, size_t, c_int, c_int, comm, ptr],
        "npBroadcast": [ptr, ptr, size_t, c_int, c_int, comm, ptr],
    }
    for name, args in signatures.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = c_int
    lib.npGetErrorString.argtypes, lib.npGetErrorString.restype = [c_int], ctypes.c_char_p
    lib.npGetLastError.argtypes, lib.npGetLastError.restype = [comm], ctypes.c_char_p
    return lib


def check(lib, rank, result, call):
    """A non-zero result is an npResult_t; the message says what went wrong and what to do."""
    if result != 0:
        raise SystemExit(f"rank {rank}: {call} failed: {lib.npGetErrorString(result).decode()}: {lib.npGetLastError(None).decode()}")


def buffer(typecode, values):
    data = array.array(typecode, values)
    address, _ = data.buffer_info()
    return data, ctypes.c_void_p(address)


def run_rank(rank, n, hex_id):
    lib = load()
    uid = UniqueId()
    ctypes.memmove(ctypes.byref(uid), bytes.fromhex(hex_id), 128)
    comm = ctypes.c_void_p()
    check(lib, rank, lib.npCommInitRankById(ctypes.byref(comm), n, ctypes.byref(uid), rank), "npCommInitRank")
    size, me = ctypes.c_int(), ctypes.c_int()
    check(lib, rank, lib.npCommCount(comm, ctypes.byref(size)), "npCommCount")
    check(lib, rank, lib.npCommUserRank(comm, ctypes.byref(me)), "npCommUserRank")
    assert (size.value, me.value) == (n, rank), (size.value, me.value)

    count = 1000
    send, send_ptr = buffer("f", [rank + 1 + i % 5 for i in range(count)])
    recv, recv_ptr = buffer("f", [0.0] * count)
    check(lib, rank, lib.npAllReduce(send_ptr, recv_ptr, count, NP_FLOAT32, NP_SUM, comm, None), "npAllReduce")
    want = [n * (n + 1) // 2 + n * (i % 5) for i in range(count)]
    assert list(recv) == want, f"rank {rank}: all_reduce sum gave {list(recv)[:8]}..., expected {want[:8]}..."
    print(f"rank {rank}: all_reduce f32 sum ok", flush=True)

    big, big_ptr = buffer("q", [(1 << 40) * rank + i for i in range(257)])
    check(lib, rank, lib.npAllReduce(big_ptr, big_ptr, 257, NP_INT64, NP_MAX, comm, None), "npAllReduce")
    assert list(big) == [(1 << 40) * (n - 1) + i for i in range(257)]
    print(f"rank {rank}: all_reduce i64 max in place ok", flush=True)

    part = 333
    mine, mine_ptr = buffer("f", [rank * 1000 + i for i in range(part)])
    gathered, gathered_ptr = buffer("f", [0.0] * (part * n))
    check(lib, rank, lib.npAllGather(mine_ptr, gathered_ptr, part, NP_FLOAT32, comm, None), "npAllGather")
    assert list(gathered) == [r * 1000 + i for r in range(n) for i in range(part)]
    print(f"rank {rank}: all_gather f32 ok", flush=True)

    block = 100
    whole, whole_ptr = buffer("f", [rank + j for j in range(block * n)])
    piece, piece_ptr = buffer("f", [0.0] * block)
    check(lib, rank, lib.npReduceScatter(whole_ptr, piece_ptr, block, NP_FLOAT32, NP_SUM, comm, None), "npReduceScatter")
    assert list(piece) == [n * (n - 1) // 2 + n * (rank * block + i) for i in range(block)]
    print(f"rank {rank}: reduce_scatter f32 sum ok", flush=True)

    root = 1 % n
    values, values_ptr = buffer("f", [7 * i + 1 if rank == root else -1 for i in range(64)])
    check(lib, rank, lib.npBroadcast(values_ptr, values_ptr, 64, NP_FLOAT32, root, comm, None), "npBroadcast")
    assert list(values) == [7 * i + 1 for i in range(64)]
    print(f"rank {rank}: broadcast f32 ok", flush=True)

    # A mistake is a result code and a message, never the end of the process.
    result = lib.npAllReduce(send_ptr, recv_ptr, count, 0, NP_SUM, comm, None)
    assert result == 4 and b"datatype 0" in lib.npGetLastError(None), (result, lib.npGetLastError(None))
    print(f"rank {rank}: bad datatype -> {lib.npGetErrorString(result).decode()}: {lib.npGetLastError(None).decode()}", flush=True)

    check(lib, rank, lib.npCommDestroy(comm), "npCommDestroy")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--rank":
        run_rank(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return 0
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lib = load()
    uid = UniqueId()
    check(lib, -1, lib.npGetUniqueId(ctypes.byref(uid)), "npGetUniqueId")
    hex_id = bytes(uid).hex()
    ranks = [subprocess.Popen([sys.executable, __file__, "--rank", str(r), str(n), hex_id]) for r in range(n)]
    failed = 0
    for rank in ranks:
        try:
            failed |= rank.wait(timeout=120) != 0
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            raise SystemExit("the ranks did not finish within 120 s")
    print("allreduce.py: FAILED" if failed else f"allreduce.py: {n} ranks ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
