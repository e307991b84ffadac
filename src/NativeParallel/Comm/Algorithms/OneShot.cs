using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm.Algorithms;

/// <summary>
/// All-reduce for small messages in one hop: every rank sends its descriptor and data to every peer at once,
/// receives all of theirs, checks every descriptor, and reduces the n buffers in rank order 0..n−1, so all ranks
/// compute the same sum in the same order (bitwise identical) with one latency instead of the ring's 2(n−1).
/// </summary>
internal static class OneShot
{
    /// <summary><paramref name="disagreement"/>(theirs, mine, peer) says why a peer's descriptor does not match, or null.</summary>
    public static void AllReduce<TDescriptor>(Engine e, TDescriptor mine, Func<TDescriptor, TDescriptor, int, string?> disagreement,
        Span<byte> buffer, DType dtype, ReduceOp op) where TDescriptor : unmanaged
    {
        int header = Unsafe.SizeOf<TDescriptor>(), slot = header + buffer.Length, n = e.Size;
        byte[] staging = Engine.Rent(slot * (n + 1));
        try
        {
            var slots = staging.AsSpan(0, slot * n);
            var outgoing = staging.AsSpan(slot * n, slot);
            MemoryMarshal.Write(outgoing, in mine);
            buffer.CopyTo(outgoing[header..]);
            outgoing.CopyTo(slots.Slice(e.Rank * slot, slot));
            e.ExchangeAll(outgoing, slots, slot);
            for (int p = 0; p < n; p++)
            {
                if (p == e.Rank) continue;
                if (disagreement(MemoryMarshal.Read<TDescriptor>(slots.Slice(p * slot, header)), mine, p) is { } why)
                    throw e.Fail(why, p, abortOthers: true);
            }
            // Rank order, the same on every rank: slot 0, then op with slots 1..n−1.
            slots.Slice(header, buffer.Length).CopyTo(buffer);
            for (int p = 1; p < n; p++) HostReduce.Apply(op, dtype, buffer, slots.Slice(p * slot + header, buffer.Length));
            HostReduce.Finish(op, dtype, buffer, n);
        }
        finally
        {
            Engine.Return(staging);
        }
    }
}
