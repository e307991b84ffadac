using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm.Algorithms;

/// <summary>
/// Ring algorithms, NCCL's way: ranks in a circle, each step sends one chunk to the right neighbour while
/// receiving one from the left, so every link is busy every step and each rank moves 2(n−1)/n of the data for an
/// all-reduce. Any group size works (chunk sizes differ by at most one element).
/// </summary>
internal static class Ring
{
    /// <summary>
    /// Reduce-scatter in place. Step s: send chunk (r−1−s) to the right, receive chunk (r−2−s) from the left and
    /// reduce it into ours. After n−1 steps chunk r has passed through every rank: rank r holds it fully reduced.
    /// </summary>
    /// <remarks>
    /// Out of place (<paramref name="source"/> is not <paramref name="buffer"/>), step 0 sends straight from the
    /// source and each chunk is copied from it just before its one reduction: every chunk but r−1 is received
    /// exactly once, and chunk r−1 is only ever sent, so no pass copies the whole input.
    /// </remarks>
    public static void ReduceScatter(Engine e, ReadOnlySpan<byte> source, Span<byte> buffer, Chunks chunks, DType dtype, ReduceOp op)
    {
        int n = e.Size, r = e.Rank, right = (r + 1) % n, left = Chunks.Mod(r - 1, n);
        bool outOfPlace = !source.Overlaps(buffer);
        if (n == 1 && outOfPlace) source.CopyTo(buffer);
        for (int s = 0; s < n - 1; s++)
        {
            int sendChunk = Chunks.Mod(r - 1 - s, n), receiveChunk = Chunks.Mod(r - 2 - s, n);
            var accumulator = chunks.Of(buffer, receiveChunk);
            if (outOfPlace) chunks.Of(source, receiveChunk).CopyTo(accumulator);
            ReadOnlySpan<byte> outgoing = s == 0 ? chunks.Of(source, sendChunk) : chunks.Of((ReadOnlySpan<byte>)buffer, sendChunk);
            e.SendReceiveReduce(right, outgoing, left, accumulator, dtype, op);
        }
    }

    /// <summary>In-place reduce-scatter.</summary>
    public static void ReduceScatter(Engine e, Span<byte> buffer, Chunks chunks, DType dtype, ReduceOp op) =>
        ReduceScatter(e, buffer, buffer, chunks, dtype, op);

    /// <summary>
    /// All-gather in place: rank r starts with chunk r. Step s: send chunk (r−s) to the right, receive chunk
    /// (r−s−1) from the left; after n−1 steps every rank holds every chunk.
    /// </summary>
    public static void AllGather(Engine e, Span<byte> buffer, Chunks chunks)
    {
        int n = e.Size, r = e.Rank, right = (r + 1) % n, left = Chunks.Mod(r - 1, n);
        for (int s = 0; s < n - 1; s++)
        {
            int sendChunk = Chunks.Mod(r - s, n), receiveChunk = Chunks.Mod(r - s - 1, n);
            e.SendReceive(right, chunks.Of(buffer, sendChunk), left, chunks.Of(buffer, receiveChunk));
        }
    }

    /// <summary>All-reduce of <paramref name="source"/> into <paramref name="buffer"/> (the same span in place): reduce-scatter, finish the owned chunk (avg divides), all-gather.</summary>
    public static void AllReduce(Engine e, ReadOnlySpan<byte> source, Span<byte> buffer, long count, DType dtype, ReduceOp op)
    {
        var chunks = new Chunks(count, e.Size, dtype.SizeOf());
        ReduceScatter(e, source, buffer, chunks, dtype, op);
        HostReduce.Finish(op, dtype, chunks.Of(buffer, e.Rank), e.Size);
        AllGather(e, buffer, chunks);
    }

    /// <summary>
    /// Broadcast as a pipelined chain around the ring from the root: each rank forwards bytes to its right
    /// neighbour as soon as they arrive from its left, so the message streams through all ranks at once.
    /// </summary>
    public static void Broadcast(Engine e, Span<byte> buffer, int root)
    {
        int n = e.Size, r = e.Rank, right = (r + 1) % n, left = Chunks.Mod(r - 1, n);
        bool receives = r != root, sends = right != root;
        e.Relay(receives ? left : -1, sends ? right : -1, buffer);
    }

    /// <summary>Reduce to the root: a ring reduce-scatter, then every rank sends its finished chunk to the root.</summary>
    public static void Reduce(Engine e, Span<byte> buffer, long count, DType dtype, ReduceOp op, int root)
    {
        var chunks = new Chunks(count, e.Size, dtype.SizeOf());
        ReduceScatter(e, buffer, chunks, dtype, op);
        HostReduce.Finish(op, dtype, chunks.Of(buffer, e.Rank), e.Size);
        if (e.Rank != root)
        {
            e.SendReceive(root, chunks.Of(buffer, e.Rank), -1, default);
            return;
        }
        for (int p = 0; p < e.Size; p++)
            if (p != root) e.SendReceive(-1, default, p, chunks.Of(buffer, p));
    }
}

/// <summary>All-to-all as n−1 pairwise exchanges: step s sends to r+s while receiving from r−s.</summary>
internal static class Pairwise
{
    public static void AllToAll(Engine e, ReadOnlySpan<byte> input, long[] sendOffsets, long[] sendBytes,
        Span<byte> output, long[] receiveOffsets, long[] receiveBytes)
    {
        int n = e.Size, r = e.Rank;
        input.Slice((int)sendOffsets[r], (int)sendBytes[r]).CopyTo(output.Slice((int)receiveOffsets[r], (int)receiveBytes[r]));
        for (int s = 1; s < n; s++)
        {
            int to = (r + s) % n, from = Chunks.Mod(r - s, n);
            e.SendReceive(to, input.Slice((int)sendOffsets[to], (int)sendBytes[to]), from,
                output.Slice((int)receiveOffsets[from], (int)receiveBytes[from]));
        }
    }
}
