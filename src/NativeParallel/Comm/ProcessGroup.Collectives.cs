using System.Runtime.InteropServices;
using NativeParallel.Comm.Algorithms;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

// The collectives: device-direct where the ranks reach each other's device buffers, else argument checks, staging
// of off-host tensors, then the algorithm over the links.
public sealed partial class ProcessGroup
{
    // ---- all_reduce ------------------------------------------------------------------------------------------

    /// <summary>In-place all-reduce: every rank ends with op over all ranks' <paramref name="tensor"/>.</summary>
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => AllReduce(tensor, tensor, op);

    /// <summary>Out-of-place all-reduce (<paramref name="output"/> may be <paramref name="input"/>).</summary>
    public void AllReduce(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        if (DeviceDirectAllReduce(input, output, op)) return;
        // Host tensors (every small message) skip the staging helper, whose lambda would allocate on every call.
        if ((input.Device is not HostMemoryDevice || output.Device is not HostMemoryDevice) && StagedAllReduce(input, output, op)) return;
        Same(Collective.AllReduce, input, output);
        bool oneShot = Size > 1 && _algorithm switch
        {
            "ring" => false,
            "oneshot" => true,
            _ => input.Bytes <= _oneShotBytes,
        };
        // The state travels as a struct and the body is static: a small all-reduce allocates nothing.
        Run(new Call(Collective.AllReduce, input.DType, op, input.Count, -1, Handshake: !oneShot, Algorithm: oneShot ? "oneshot" : "ring"),
            (Group: this, Input: input, Output: output, Op: op, OneShot: oneShot),
            static (descriptor, c) => c.Group.HostAllReduce(descriptor, c.Input, c.Output, c.Op, c.OneShot));
    }

    private bool StagedAllReduce(Tensor input, Tensor output, ReduceOp op) => Staged([input], [output], (i, o) => AllReduce(i[0], o[0], op));

    private void HostAllReduce(Descriptor descriptor, Tensor input, Tensor output, ReduceOp op, bool oneShot)
    {
        var buffer = Bytes(output);
        // One-shot messages carry their own descriptor: the agreement check costs no extra hop.
        if (oneShot)
        {
            if (!ReferenceEquals(input, output)) Bytes(input).CopyTo(buffer);
            OneShot.AllReduce(_engine, descriptor, Disagreement, buffer, input.DType, op);
        }
        else Ring.AllReduce(_engine, Bytes(input), buffer, input.Count, input.DType, op);
    }

    /// <summary>
    /// All-reduce as an ordered async operation: it runs after every call issued before it on this group, and
    /// every later call (async or not) runs after it. The task completes when this rank's part is done; the
    /// tensors must stay untouched until then.
    /// </summary>
    public CollectiveWork AllReduceAsync(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => Async(() => AllReduce(input, output, op));

    /// <summary>In-place all-reduce as an ordered async operation.</summary>
    public CollectiveWork AllReduceAsync(Tensor tensor, ReduceOp op = ReduceOp.Sum) => AllReduceAsync(tensor, tensor, op);

    // ---- all_gather, reduce_scatter --------------------------------------------------------------------------

    /// <summary><paramref name="output"/> (Size × input.Count elements) receives every rank's input, in rank order.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        if (DeviceDirectAllGather(input, output)) return;
        if (Staged([input], [output], (i, o) => AllGather(i[0], o[0]))) return;
        Blocks(Collective.AllGather, input, output, output.Count == input.Count * Size, "output must hold Size × input elements");
        Run(Collective.AllGather, input.DType, ReduceOp.Sum, input.Count, -1, () =>
        {
            var buffer = Bytes(output);
            var chunks = new Chunks(output.Count, Size, input.DType.SizeOf());
            Bytes(input).CopyTo(chunks.Of(buffer, Rank));
            Ring.AllGather(_engine, buffer, chunks);
        });
    }

    /// <summary>All-gather as an ordered async operation.</summary>
    public CollectiveWork AllGatherAsync(Tensor input, Tensor output) => Async(() => AllGather(input, output));

    /// <summary>Block r of op over all ranks' <paramref name="input"/> (Size × output.Count elements) lands in rank r's <paramref name="output"/>.</summary>
    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        if (DeviceDirectReduceScatter(input, output, op)) return;
        if (Staged([input], [output], (i, o) => ReduceScatter(i[0], o[0], op))) return;
        Blocks(Collective.ReduceScatter, input, output, input.Count == output.Count * Size, "input must hold Size × output elements");
        Run(Collective.ReduceScatter, input.DType, op, output.Count, -1, () =>
        {
            var chunks = new Chunks(input.Count, Size, input.DType.SizeOf());
            byte[] staging = Engine.Rent((int)input.Bytes);
            try
            {
                var buffer = staging.AsSpan(0, (int)input.Bytes);
                Bytes(input).CopyTo(buffer);
                Ring.ReduceScatter(_engine, buffer, chunks, input.DType, op);
                var mine = chunks.Of(buffer, Rank);
                HostReduce.Finish(op, input.DType, mine, Size);
                mine.CopyTo(Bytes(output));
            }
            finally
            {
                Engine.Return(staging);
            }
        });
    }

    /// <summary>Reduce-scatter as an ordered async operation.</summary>
    public CollectiveWork ReduceScatterAsync(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => Async(() => ReduceScatter(input, output, op));

    // ---- broadcast, reduce -----------------------------------------------------------------------------------

    /// <summary>Every rank's <paramref name="tensor"/> becomes the root's.</summary>
    public void Broadcast(Tensor tensor, int root)
    {
        if (DeviceDirectBroadcast(tensor, tensor, root)) return;
        if (Staged([tensor], [tensor], (i, o) => Broadcast(o[0], root))) return;
        CheckRoot(root);
        Same(Collective.Broadcast, tensor, tensor);
        Run(Collective.Broadcast, tensor.DType, ReduceOp.Sum, tensor.Count, root, () => Ring.Broadcast(_engine, Bytes(tensor), root));
    }

    /// <summary>Out-of-place broadcast: every rank's <paramref name="output"/> becomes the root's <paramref name="input"/>.</summary>
    public void Broadcast(Tensor input, Tensor output, int root)
    {
        if (DeviceDirectBroadcast(input, output, root)) return;
        if (Staged([input], [output], (i, o) => Broadcast(i[0], o[0], root))) return;
        CheckRoot(root);
        Same(Collective.Broadcast, input, output);
        Run(Collective.Broadcast, output.DType, ReduceOp.Sum, output.Count, root, () =>
        {
            if (Rank == root && !ReferenceEquals(input, output)) Bytes(input).CopyTo(Bytes(output));
            Ring.Broadcast(_engine, Bytes(output), root);
        });
    }

    /// <summary>In-place broadcast as an ordered async operation.</summary>
    public CollectiveWork BroadcastAsync(Tensor tensor, int root) => Async(() => Broadcast(tensor, root));

    /// <summary>Out-of-place broadcast as an ordered async operation.</summary>
    public CollectiveWork BroadcastAsync(Tensor input, Tensor output, int root) => Async(() => Broadcast(input, output, root));

    /// <summary>The root's <paramref name="output"/> receives op over all ranks' <paramref name="input"/>; other ranks' output is left as it was.</summary>
    public void Reduce(Tensor input, Tensor output, int root, ReduceOp op = ReduceOp.Sum)
    {
        if (Staged([input], [output], (i, o) => Reduce(i[0], o[0], root, op))) return;
        CheckRoot(root);
        Same(Collective.Reduce, input, output);
        Run(Collective.Reduce, input.DType, op, input.Count, root, () =>
        {
            byte[] staging = Engine.Rent((int)input.Bytes);
            try
            {
                var buffer = staging.AsSpan(0, (int)input.Bytes);
                Bytes(input).CopyTo(buffer);
                Ring.Reduce(_engine, buffer, input.Count, input.DType, op, root);
                if (Rank == root) buffer.CopyTo(Bytes(output));
            }
            finally
            {
                Engine.Return(staging);
            }
        });
    }

    /// <summary>Reduce as an ordered async operation.</summary>
    public CollectiveWork ReduceAsync(Tensor input, Tensor output, int root, ReduceOp op = ReduceOp.Sum) => Async(() => Reduce(input, output, root, op));

    // ---- all_to_all ------------------------------------------------------------------------------------------

    /// <summary>Equal splits: block p of <paramref name="input"/> goes to rank p, block p of <paramref name="output"/> comes from rank p.</summary>
    public void AllToAll(Tensor input, Tensor output)
    {
        Blocks(Collective.AllToAll, input, output, input.Count == output.Count && input.Count % Size == 0,
            "input and output must hold the same number of elements, a multiple of Size");
        long block = input.Count / Size;
        var counts = Enumerable.Repeat(block, Size).ToArray();
        AllToAll(input, counts, output, counts);
    }

    /// <summary>Variable splits (in elements): sendCounts[p] elements to rank p, receiveCounts[p] from rank p, packed in rank order.</summary>
    public void AllToAll(Tensor input, long[] sendCounts, Tensor output, long[] receiveCounts)
    {
        if (DeviceDirectAllToAll(input, sendCounts, output, receiveCounts)) return;
        if (Staged([input], [output], (i, o) => AllToAll(i[0], sendCounts, o[0], receiveCounts))) return;
        CheckSplits(input, sendCounts, output, receiveCounts);
        int es = input.DType.SizeOf();
        // Sizes differ per rank legitimately, so only kind and dtype are checked (count −1).
        Run(Collective.AllToAll, input.DType, ReduceOp.Sum, -1, -1, () =>
        {
            long[] Offsets(long[] counts)
            {
                var offsets = new long[counts.Length];
                for (int p = 1; p < counts.Length; p++) offsets[p] = offsets[p - 1] + counts[p - 1] * es;
                return offsets;
            }
            Pairwise.AllToAll(_engine, Bytes(input), Offsets(sendCounts), sendCounts.Select(c => c * es).ToArray(),
                Bytes(output), Offsets(receiveCounts), receiveCounts.Select(c => c * es).ToArray());
        });
    }

    /// <summary>Equal-split all-to-all as an ordered async operation.</summary>
    public CollectiveWork AllToAllAsync(Tensor input, Tensor output) => Async(() => AllToAll(input, output));

    private void CheckSplits(Tensor input, long[] sendCounts, Tensor output, long[] receiveCounts) =>
        Blocks(Collective.AllToAll, input, output, sendCounts.Length == Size && receiveCounts.Length == Size &&
            sendCounts.Sum() <= input.Count && receiveCounts.Sum() <= output.Count && sendCounts.All(c => c >= 0) && receiveCounts.All(c => c >= 0),
            "sendCounts and receiveCounts need one non-negative count per rank, within the tensors");

    // ---- send / recv, barrier --------------------------------------------------------------------------------

    /// <summary>Sends <paramref name="tensor"/> to <paramref name="peer"/>; the peer's matching Recv must use the same tag and size.</summary>
    public void Send(Tensor tensor, int peer, int tag = 0)
    {
        if (Staged([tensor], [], (i, o) => Send(i[0], peer, tag))) return;
        CheckPeer(peer);
        var header = new MessageHeader(Magic, tag, (int)tensor.DType, tensor.Bytes);
        RunPointToPoint(Collective.Send, peer, () =>
        {
            _engine.SendReceive(peer, MemoryMarshal.AsBytes(new ReadOnlySpan<MessageHeader>(in header)), -1, default);
            _engine.SendReceive(peer, Bytes(tensor), -1, default);
        }, tensor.Bytes, tag);
    }

    /// <summary>Receives into <paramref name="tensor"/> from <paramref name="peer"/>, checking tag, dtype and size against the sender's.</summary>
    public void Recv(Tensor tensor, int peer, int tag = 0)
    {
        if (Staged([], [tensor], (i, o) => Recv(o[0], peer, tag))) return;
        CheckPeer(peer);
        RunPointToPoint(Collective.Recv, peer, () =>
        {
            MessageHeader header = default;
            _engine.SendReceive(-1, default, peer, MemoryMarshal.AsBytes(new Span<MessageHeader>(ref header)));
            CheckHeader(header, peer, tag, tensor);
            _engine.SendReceive(-1, default, peer, Bytes(tensor));
        }, tensor.Bytes, tag);
    }

    /// <summary>Send as an ordered async operation (point-to-point calls keep the group's one order too).</summary>
    public CollectiveWork SendAsync(Tensor tensor, int peer, int tag = 0) => Async(() => Send(tensor, peer, tag));

    /// <summary>Recv as an ordered async operation.</summary>
    public CollectiveWork RecvAsync(Tensor tensor, int peer, int tag = 0) => Async(() => Recv(tensor, peer, tag));

    /// <summary>
    /// Sends <paramref name="send"/> to <paramref name="sendPeer"/> while receiving <paramref name="receive"/> from
    /// <paramref name="receivePeer"/>, at once (a ring shift or a pipeline hop in both directions never deadlocks).
    /// Both peers may be this rank: a local copy (as NCCL's send and recv to self in one group).
    /// </summary>
    public void SendRecv(Tensor send, int sendPeer, Tensor receive, int receivePeer, int tag = 0) =>
        SendRecv(send, sendPeer, tag, receive, receivePeer, tag);

    /// <summary>
    /// <see cref="SendRecv(Tensor, int, Tensor, int, int)"/> with a tag for each direction: a pipeline stage sends one
    /// micro-batch's activations while it receives another micro-batch's gradient.
    /// </summary>
    public void SendRecv(Tensor send, int sendPeer, int sendTag, Tensor receive, int receivePeer, int receiveTag)
    {
        if (sendPeer == Rank || receivePeer == Rank)
        {
            SendRecvToItself(send, sendPeer, sendTag, receive, receivePeer, receiveTag);
            return;
        }
        if (Staged([send], [receive], (i, o) => SendRecv(i[0], sendPeer, sendTag, o[0], receivePeer, receiveTag))) return;
        CheckPeer(sendPeer);
        CheckPeer(receivePeer);
        var header = new MessageHeader(Magic, sendTag, (int)send.DType, send.Bytes);
        RunPointToPoint(Collective.Send, sendPeer, () =>
        {
            MessageHeader incoming = default;
            _engine.SendReceive(sendPeer, MemoryMarshal.AsBytes(new ReadOnlySpan<MessageHeader>(in header)), receivePeer,
                MemoryMarshal.AsBytes(new Span<MessageHeader>(ref incoming)));
            CheckHeader(incoming, receivePeer, receiveTag, receive);
            _engine.SendReceive(sendPeer, Bytes(send), receivePeer, Bytes(receive));
        }, send.Bytes + receive.Bytes, sendTag, "sendrecv");
    }

    /// <summary>
    /// A rank's message to itself, as NCCL's send and recv to self in one group: a local copy of
    /// <paramref name="send"/> into <paramref name="receive"/> on their device (through the host when they are on
    /// two devices), ordered on the current stream and in the group's order like any point-to-point call. The same
    /// rules as between ranks (tags, dtype, size) are checked before anything moves.
    /// </summary>
    private void SendRecvToItself(Tensor send, int sendPeer, int sendTag, Tensor receive, int receivePeer, int receiveTag)
    {
        if (sendPeer != receivePeer)
        {
            int other = sendPeer == Rank ? receivePeer : sendPeer;
            CheckPeer(other);
            throw new ArgumentException($"sendrecv on rank {Rank} of {Size}: a message to itself is received by the same call, so both peers are " +
                                        $"rank {Rank} or neither (got sendPeer {sendPeer}, receivePeer {receivePeer})");
        }
        send.RequireContiguous("sendrecv");
        receive.RequireContiguous("sendrecv");
        if (sendTag != receiveTag || send.DType != receive.DType || send.Bytes != receive.Bytes)
            throw new ArgumentException($"sendrecv on rank {Rank} of {Size} to itself: it sends tag {sendTag}, {send.DType.Name()} x {send.Bytes} bytes " +
                                        $"but receives tag {receiveTag}, {receive.DType.Name()} x {receive.Bytes} bytes");
        bool sameDevice = ReferenceEquals(send.Device, receive.Device);
        if (sameDevice && send.Pointer != receive.Pointer && send.Bytes > 0 &&
            send.Pointer < receive.Pointer + (ulong)receive.Bytes && receive.Pointer < send.Pointer + (ulong)send.Bytes)
            throw new ArgumentException($"sendrecv on rank {Rank} of {Size} to itself: {send} and {receive} overlap without being the same memory");
        RunPointToPoint(Collective.Send, Rank, () =>
        {
            if (send.Bytes == 0 || (sameDevice && send.Pointer == receive.Pointer)) return;
            if (sameDevice) send.Device.CopyDeviceToDevice(send.Pointer, receive.Pointer, send.Bytes);
            else receive.CopyFromHost(send.ToBytes());
        }, send.Bytes + receive.Bytes, sendTag, "sendrecv");
    }

    /// <summary>SendRecv as an ordered async operation.</summary>
    public CollectiveWork SendRecvAsync(Tensor send, int sendPeer, Tensor receive, int receivePeer, int tag = 0) =>
        Async(() => SendRecv(send, sendPeer, receive, receivePeer, tag));

    /// <summary>Returns once every rank has called it.</summary>
    public void Barrier()
    {
        int token = 1;
        Run(Collective.Barrier, DType.I32, ReduceOp.Sum, 1, -1, () =>
        {
            var bytes = MemoryMarshal.AsBytes(new Span<int>(ref token));
            Ring.AllReduce(_engine, bytes, bytes, 1, DType.I32, ReduceOp.Sum);
        });
    }
}
