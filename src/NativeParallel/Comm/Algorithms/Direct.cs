using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm.Algorithms;

/// <summary>
/// Collectives on buffers every rank can address (one device shared by thread ranks, or a GPU's memory opened by
/// CUDA IPC): each rank only writes its own output, pulling from its peers' buffers, so no rank ever writes
/// into another's memory. Before reading a peer, a rank's stream waits for that peer's progress as it stood at the
/// last meeting (<see cref="DevicePeers"/>); a meeting is the peer signalling, then the group's host barrier.
/// The caller signals and meets once before (peers' producers) and once after (nobody reuses a buffer a peer may
/// still read). One-shot variants take one step; rings and chains take one meeting per step but read each byte
/// over one link only, as NCCL's rings do between GPUs.
/// </summary>
internal sealed class Direct(DevicePeers peers, Action barrier, ulong[] inputs, ulong[] outputs, DType dtype)
{
    private readonly IDevice _device = peers.Device;
    private readonly int _rank = peers.Rank, _size = peers.Size, _es = dtype.SizeOf();

    // A step boundary: what this rank has enqueued so far becomes what peers wait for after the barrier.
    private void Meet()
    {
        peers.Signal();
        barrier();
    }

    private void Copy(ulong source, ulong destination, long elements)
    {
        if (elements > 0 && source != destination) _device.CopyDeviceToDevice(source, destination, elements * _es); // on the caller's current stream
    }

    private ulong At(ulong basePointer, long element) => basePointer + (ulong)(element * _es);

    private Tensor Wrap(ulong pointer, long elements) => Tensor.Wrap(_device, pointer, dtype, checked((int)elements));

    /// <summary>All-reduce of <paramref name="count"/> elements: reduce-scatter into each owner's output, then all-gather by copies.</summary>
    public void AllReduce(long count, ReduceOp op)
    {
        if (_size == 1)
        {
            Copy(inputs[0], outputs[0], count); // op over one rank is the identity, avg included
            return;
        }
        var chunks = new Chunks(count, _size, _es);
        // 1. Reduce this rank's chunk from every rank's input, in rank order: every rank gets the same bits.
        for (int p = 0; p < _size; p++) peers.Await(p);
        ReduceChunk(chunks.Start(_rank), chunks.Length(_rank), At(outputs[_rank], chunks.Start(_rank)), op);
        // 2. Once every owner has reduced its chunk, copy the others from their owners' outputs.
        Meet();
        for (int p = 0; p < _size; p++)
        {
            if (p == _rank) continue;
            peers.Await(p);
            Copy(At(outputs[p], chunks.Start(p)), At(outputs[_rank], chunks.Start(p)), chunks.Length(p));
        }
    }

    /// <summary>Reduce-scatter: block r (<paramref name="block"/> elements) of op over every rank's input lands in rank r's output.</summary>
    public void ReduceScatter(long block, ReduceOp op)
    {
        for (int p = 0; p < _size; p++) peers.Await(p);
        ReduceChunk(_rank * block, block, outputs[_rank], op);
    }

    private void ReduceChunk(long start, long length, ulong destination, ReduceOp op)
    {
        if (length == 0) return;
        if (_size == 1)
        {
            Copy(At(inputs[0], start), destination, length);
            return;
        }
        var sources = new Tensor[_size];
        for (int p = 0; p < _size; p++) sources[p] = Wrap(At(inputs[p], start), length);
        _device.Kernels.Reduce(op, sources, Wrap(destination, length));
    }

    /// <summary>All-gather, one shot: this rank copies every rank's input (<paramref name="block"/> elements) into its block of its output.</summary>
    public void AllGatherOneShot(long block)
    {
        for (int p = 0; p < _size; p++)
        {
            peers.Await(p);
            Copy(inputs[p], At(outputs[_rank], p * block), block);
        }
    }

    /// <summary>All-gather as a ring: at step s, rank r copies block r−s−1 from its left neighbour's output, which got it at step s−1.</summary>
    public void AllGatherRing(long block)
    {
        int left = Chunks.Mod(_rank - 1, _size);
        // Step 0: this rank's own block goes into its output (nothing to do in place), where its right neighbour reads it.
        Copy(inputs[_rank], At(outputs[_rank], _rank * block), block);
        for (int s = 0; s < _size - 1; s++)
        {
            Meet();
            int b = Chunks.Mod(_rank - s - 1, _size);
            peers.Await(left);
            Copy(At(outputs[left], b * block), At(outputs[_rank], b * block), block);
        }
    }

    /// <summary>Broadcast, one shot: every rank copies the root's input into its output.</summary>
    public void BroadcastOneShot(long count, int root)
    {
        peers.Await(root);
        Copy(inputs[root], outputs[_rank], count);
    }

    /// <summary>
    /// Broadcast as a pipelined chain from the root around the ring: the data cut into <paramref name="pieces"/>,
    /// at step t the rank k places after the root copies piece t−k+1 from its predecessor, so a piece moves one
    /// hop per step and the chain's links all work at once.
    /// </summary>
    public void BroadcastChain(long count, int root, int pieces)
    {
        int k = Chunks.Mod(_rank - root, _size), predecessor = Chunks.Mod(_rank - 1, _size);
        var cut = new Chunks(count, pieces, _es);
        // The root's successor reads the root's input; everyone else reads its predecessor's output.
        ulong source = k == 1 ? inputs[root] : outputs[predecessor];
        if (k == 0) Copy(inputs[_rank], outputs[_rank], count);
        for (int t = 0; t < _size - 1 + pieces - 1; t++)
        {
            int piece = t - k + 1;
            if (k > 0 && piece >= 0 && piece < pieces)
            {
                peers.Await(predecessor);
                Copy(At(source, cut.Start(piece)), At(outputs[_rank], cut.Start(piece)), cut.Length(piece));
            }
            Meet();
        }
    }

    /// <summary>
    /// All-to-all, one shot: <paramref name="sent"/>[p][q] elements go from rank p to rank q, packed in rank order
    /// on both sides; this rank pulls its part of every rank's input.
    /// </summary>
    public void AllToAll(long[][] sent)
    {
        long received = 0;
        for (int p = 0; p < _size; p++)
        {
            long offset = 0;
            for (int q = 0; q < _rank; q++) offset += sent[p][q];
            peers.Await(p);
            Copy(At(inputs[p], offset), At(outputs[_rank], received), sent[p][_rank]);
            received += sent[p][_rank];
        }
    }
}
