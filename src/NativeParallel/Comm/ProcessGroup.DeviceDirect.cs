using System.Runtime.InteropServices;
using NativeParallel.Comm.Algorithms;
using NativeParallel.Comm.Transports;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

// All-reduce on a shared kernel device: thread ranks by address, process ranks through CUDA IPC.
public sealed partial class ProcessGroup
{
    /// <summary>
    /// Ranks whose tensors live on one kernel device reduce without the host. Thread ranks (a GPU they share, or
    /// the emulated device) publish their buffers' addresses; process ranks on one GPU exchange CUDA IPC exports.
    /// Then every rank reduces its own chunk straight out of all ranks' inputs with the reduce kernel (inputs in
    /// rank order: the same bits everywhere) and copies the other chunks from their owners' outputs, with a
    /// barrier between the phases.
    /// </summary>
    private bool DeviceDirectAllReduce(Tensor input, Tensor output, ReduceOp op)
    {
        if (Size == 1 || Size > KernelLimits.MaxReduceInputs || !ReferenceEquals(input.Device, output.Device)) return false;
        bool threads = _threadShared is not null && input.Device is CudaDevice or EmuDevice;
        bool processes = _store is not null && input.Device is CudaDevice;
        if (!threads && !processes) return false;
        Same(Collective.AllReduce, input, output);
        input.RequireContiguous("a collective");
        output.RequireContiguous("a collective");
        var device = input.Device;
        Run(Collective.AllReduce, input.DType, op, input.Count, -1, handshake: true, algorithm: "direct", body: _ =>
        {
            var (inputs, outputs) = threads ? SharedAddresses(input, output) : IpcAddresses((CudaDevice)device, input, output);
            var chunks = new Algorithms.Chunks(input.Count, Size, input.DType.SizeOf());
            int es = input.DType.SizeOf();
            Tensor Piece(ulong basePointer, int chunk) =>
                Tensor.Wrap(device, basePointer + (ulong)(chunks.Start(chunk) * es), input.DType, (int)chunks.Length(chunk));
            var sources = Enumerable.Range(0, Size).Select(p => Piece(inputs[p], Rank)).ToArray();
            if (chunks.Length(Rank) > 0) device.Kernels.Reduce(op, sources, Piece(output.Pointer, Rank));
            device.Synchronize();
            HostBarrier();
            for (int p = 0; p < Size; p++)
            {
                if (p == Rank || chunks.Length(p) == 0) continue;
                device.CopyDeviceToDevice(outputs[p] + (ulong)(chunks.Start(p) * es), output.Pointer + (ulong)(chunks.Start(p) * es), chunks.Length(p) * es);
            }
            device.Synchronize();
            HostBarrier(); // nobody reuses its buffers while a peer may still read them
        });
        return true;
    }

    // Thread ranks: addresses are valid in every rank; publish them, then meet.
    private (ulong[] Inputs, ulong[] Outputs) SharedAddresses(Tensor input, Tensor output)
    {
        var pointers = _threadShared!.DevicePointers;
        Volatile.Write(ref pointers[2 * Rank], input.Pointer);
        Volatile.Write(ref pointers[2 * Rank + 1], output.Pointer);
        HostBarrier();
        return (Enumerable.Range(0, Size).Select(p => Volatile.Read(ref pointers[2 * p])).ToArray(),
                Enumerable.Range(0, Size).Select(p => Volatile.Read(ref pointers[2 * p + 1])).ToArray());
    }

    // Process ranks on one GPU: all-gather the CUDA IPC exports of both buffers, open the peers' (cached).
    private (ulong[] Inputs, ulong[] Outputs) IpcAddresses(CudaDevice device, Tensor input, Tensor output)
    {
        _ipc ??= new CudaIpcPeers(device);
        int slot = 2 * CudaIpcPeers.ExportBytes;
        var all = new byte[slot * Size];
        var mine = all.AsSpan(Rank * slot, slot);
        _ipc.Export(input.Pointer, mine[..CudaIpcPeers.ExportBytes]);
        _ipc.Export(output.Pointer, mine[CudaIpcPeers.ExportBytes..]);
        Ring.AllGather(_engine, all, new Algorithms.Chunks(all.Length, Size, 1));
        var inputs = new ulong[Size];
        var outputs = new ulong[Size];
        for (int p = 0; p < Size; p++)
        {
            if (p == Rank)
            {
                (inputs[p], outputs[p]) = (input.Pointer, output.Pointer);
                continue;
            }
            var theirs = all.AsSpan(p * slot, slot);
            inputs[p] = _ipc.Open(theirs[..CudaIpcPeers.ExportBytes]);
            outputs[p] = _ipc.Open(theirs[CudaIpcPeers.ExportBytes..]);
        }
        return (inputs, outputs);
    }

    // A barrier inside a collective: one all-reduce of a token through the links, no sequence number of its own.
    private void HostBarrier()
    {
        int token = 1;
        var bytes = MemoryMarshal.AsBytes(new Span<int>(ref token));
        Ring.AllReduce(_engine, bytes, bytes, 1, DType.I32, ReduceOp.Sum);
    }
}
