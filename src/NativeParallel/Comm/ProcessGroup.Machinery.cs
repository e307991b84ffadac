using System.Runtime.InteropServices;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

// Sequence numbers, the order of calls, the agreement handshake, message headers, staging and argument rules.
public sealed partial class ProcessGroup
{
    /// <summary>
    /// Collectives over the links move host memory. Tensors on a device the peers cannot address (a GPU without a
    /// shared address or CUDA IPC, or calls with no device-direct form) are staged: inputs copied to host tensors,
    /// the collective run on those, outputs copied back, each copy counted in <see cref="StagedBytes"/>.
    /// </summary>
    private bool Staged(Tensor[] inputs, Tensor[] outputs, Action<Tensor[], Tensor[]> run)
    {
        if (inputs.Concat(outputs).All(t => t.Device is HostMemoryDevice)) return false;
        var map = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        Tensor Host(Tensor t)
        {
            if (map.TryGetValue(t, out var h)) return h;
            h = t.Device is HostMemoryDevice ? t : Tensor.Empty(CpuDevice.Instance, t.DType, t.Shape);
            map[t] = h;
            return h;
        }
        try
        {
            var hostInputs = inputs.Select(t =>
            {
                var h = Host(t);
                if (!ReferenceEquals(h, t))
                {
                    h.CopyFromHost(t.ToBytes());
                    Interlocked.Add(ref _stagedBytes, t.Bytes);
                }
                return h;
            }).ToArray();
            var hostOutputs = outputs.Select(t =>
            {
                var h = Host(t);
                // Outputs some ranks leave alone (reduce off the root) must come back unchanged.
                if (!ReferenceEquals(h, t) && !inputs.Contains(t, ReferenceEqualityComparer.Instance))
                {
                    h.CopyFromHost(t.ToBytes());
                    Interlocked.Add(ref _stagedBytes, t.Bytes);
                }
                return h;
            }).ToArray();
            run(hostInputs, hostOutputs);
            foreach (var t in outputs)
                if (!ReferenceEquals(map[t], t) && t.Bytes > 0)
                {
                    t.Device.CopyHostToDevice(map[t].ToBytes(), t.Pointer);
                    Interlocked.Add(ref _stagedBytes, t.Bytes);
                }
        }
        finally
        {
            foreach (var (device, host) in map) if (!ReferenceEquals(device, host)) host.Dispose();
        }
        return true;
    }

    private const int Magic = 0x4E50_4331; // "NPC1"

    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct MessageHeader(int Magic, int Tag, int DType, long Bytes);

    [StructLayout(LayoutKind.Sequential)]
    internal readonly record struct Descriptor(int Magic, int Kind, int DType, int Op, long Sequence, long Count, int Root, int Algorithm);

    private static readonly string[] Algorithms = ["ring", "oneshot", "direct", "direct-ring"];

    private void CheckHeader(MessageHeader header, int peer, int tag, Tensor tensor)
    {
        if (header.Magic == Magic && header.Tag == tag && header.DType == (int)tensor.DType && header.Bytes == tensor.Bytes) return;
        throw _engine.Fail($"rank {peer} sent tag {header.Tag}, {((DType)header.DType).Name()} x {header.Bytes} bytes; this rank expected " +
                           $"tag {tag}, {tensor.DType.Name()} x {tensor.Bytes} bytes", peer, abortOthers: true);
    }

    // An async call joins the group's one order; its exception (argument checks included) ends its task. It runs
    // on the streams that were current where it was called, as an NCCL call runs on the stream it is given.
    private CollectiveWork Async(Action operation)
    {
        var streams = CurrentStreams.Capture();
        return new CollectiveWork(_queue.Enqueue(() =>
        {
            using var scope = CurrentStreams.Restore(streams);
            operation();
        }), streams);
    }

    // Every call that moves bytes takes its turn in the group's order (OrderedQueue), so a synchronous call never
    // shares the engine with a queued async one. A failed call leaves the links in an unknown state (a peer may
    // have sent half a message, the group may be aborted), so later calls are refused at once, not left to hang.
    private void Ordered(Collective kind, bool pointToPoint, Action body) => Ordered(kind, pointToPoint, body, static b => b());

    // The same with the body's state passed along instead of captured: the small-message path allocates nothing.
    private void Ordered<T>(Collective kind, bool pointToPoint, T state, Action<T> body) =>
        _queue.Run((Group: this, Kind: kind, PointToPoint: pointToPoint, State: state, Body: body),
            static c => c.Group.Guarded(c.Kind, c.PointToPoint, c.State, c.Body));

    private void Guarded<T>(Collective kind, bool pointToPoint, T state, Action<T> body)
    {
        if (_failure is { } earlier) throw Refused(kind, pointToPoint ? Interlocked.Read(ref _messages) : Interlocked.Read(ref _sequence), earlier);
        try
        {
            body(state);
        }
        catch (Exception e)
        {
            var (failedKind, failedSequence) = _engine.Current;
            _failure ??= (failedKind, failedSequence, e.Message);
            throw;
        }
    }

    private CollectiveException Refused(Collective kind, long sequence, (Collective Kind, long Sequence, string Message) earlier) => new(
        $"{kind.Name()} #{sequence} in group '{Name}' was not run on rank {Rank} of {Size}: {earlier.Kind.Name()} #{earlier.Sequence} " +
        $"failed before it ({earlier.Message}); a group cannot be used after a failed collective: dispose it and create a new one",
        kind, sequence, Name, Rank, null);

    private void Run(Collective kind, DType dtype, ReduceOp op, long count, int root, Action body) =>
        Run(kind, dtype, op, count, root, handshake: true, algorithm: "ring", body: _ => body());

    private void Run(Collective kind, DType dtype, ReduceOp op, long count, int root, bool handshake, string algorithm, Action<Descriptor> body) =>
        Run(new Call(kind, dtype, op, count, root, handshake, algorithm), body, static (descriptor, b) => b(descriptor));

    // What one collective call is, for the agreement check and the trace.
    private readonly record struct Call(Collective Kind, DType DType, ReduceOp Op, long Count, int Root, bool Handshake, string Algorithm);

    private void Run<T>(Call call, T state, Action<Descriptor, T> body) =>
        Ordered(call.Kind, pointToPoint: false, (Group: this, Call: call, State: state, Body: body),
            static c => c.Group.RunInOrder(c.Call, c.State, c.Body));

    private void RunInOrder<T>(Call call, T state, Action<Descriptor, T> body)
    {
        var (kind, dtype, op, count, root, handshake, algorithm) = call;
        long sequence = Interlocked.Increment(ref _sequence) - 1;
        _engine.Current = (kind, sequence);
        if (_store is not null && _faultAt is { } fault && fault.Rank == Rank && fault.Sequence == sequence)
        {
            Console.Error.WriteLine($"NATIVEPARALLEL_FAULT: rank {Rank} exits at {kind.Name()} #{sequence}");
            Environment.Exit(17);
        }
        if (Log.InfoEnabled)
            Log.Info($"{Name} rank {Rank}/{Size}: {kind.Name()} #{sequence} {dtype.Name()} x {count} op {op.ToString().ToLowerInvariant()} " +
                     $"root {root} algo {algorithm} transport {_transport.Name}");
        var descriptor = new Descriptor(Magic, (int)kind, (int)dtype, (int)op, sequence, count, root, Array.IndexOf(Algorithms, algorithm));
        using var traced = Tracer.Current is null ? default : Tracer.Collective(kind.Name(), TraceRank, Name, TraceArgs(kind, dtype, op, count, root, algorithm, sequence));
        if (Size > 1 && handshake) Handshake(descriptor);
        body(descriptor, state);
    }

    // A collective's trace details (built only while a trace records): what Perfetto shows when the slice is selected.
    private List<KeyValuePair<string, object>> TraceArgs(Collective kind, DType dtype, ReduceOp op, long count, int root, string algorithm, long sequence)
    {
        int left = (Rank + Size - 1) % Size, right = (Rank + 1) % Size;
        var peers = algorithm == "ring" ? new[] { left, right }.Distinct().Where(r => r != Rank) : Enumerable.Range(0, Size).Where(r => r != Rank);
        var args = new List<KeyValuePair<string, object>>(12)
        {
            new("seq", sequence), new("group", Name), new("rank_in_group", (long)Rank), new("group_size", (long)Size),
            new("peers", string.Join(",", peers)), new("algorithm", algorithm), new("transport", _transport.Name), new("dtype", dtype.Name()),
            new("async", OrderedQueue.OnWorker),
        };
        if (count >= 0)
        {
            args.Add(new("count", count));
            args.Add(new("bytes", count * dtype.SizeOf()));
        }
        if (kind is Collective.AllReduce or Collective.ReduceScatter or Collective.Reduce) args.Add(new("op", op.ToString().ToLowerInvariant()));
        if (root >= 0) args.Add(new("root", (long)root));
        return args;
    }

    // Point-to-point operations are numbered apart from collectives: each rank of a pipeline sends and receives
    // a different number of messages, but all ranks must agree on the collectives' sequence numbers.
    private void RunPointToPoint(Collective kind, int peer, Action body, long bytes, int tag, string? traceName = null) => Ordered(kind, pointToPoint: true, () =>
    {
        long sequence = Interlocked.Increment(ref _messages) - 1;
        _engine.Current = (kind, sequence);
        using var traced = Tracer.Current is null ? default : Tracer.Collective(traceName ?? kind.Name(), TraceRank, Name,
            [new("message", sequence), new("group", Name), new("peers", peer.ToString()), new("bytes", bytes), new("tag", (long)tag),
             new("transport", _transport.Name), new("async", OrderedQueue.OnWorker)]);
        body();
    });

    // Each rank sends its descriptor right and checks the one from its left: any disagreement in the ring is
    // seen by some rank, which aborts the group so the others fail too.
    private void Handshake(Descriptor mine)
    {
        int right = (Rank + 1) % Size, left = (Rank + Size - 1) % Size;
        Descriptor theirs = default;
        _engine.SendReceive(right, MemoryMarshal.AsBytes(new ReadOnlySpan<Descriptor>(in mine)), left,
            MemoryMarshal.AsBytes(new Span<Descriptor>(ref theirs)));
        if (Disagreement(theirs, mine, left) is { } why) throw _engine.Fail(why, left, abortOthers: true);
    }

    internal static string? Disagreement(Descriptor theirs, Descriptor mine, int peer)
    {
        bool countsAgree = mine.Count < 0 || theirs.Count < 0 || mine.Count == theirs.Count;
        if (theirs.Magic == Magic && theirs.Kind == mine.Kind && theirs.DType == mine.DType && theirs.Op == mine.Op &&
            theirs.Sequence == mine.Sequence && countsAgree && theirs.Root == mine.Root && theirs.Algorithm == mine.Algorithm) return null;
        return $"ranks disagree: rank {peer} called {Describe(theirs)}, this rank called {Describe(mine)}";
    }

    private static string Describe(Descriptor d) => d.Magic != Magic
        ? "something that is not a collective (corrupt or out-of-order data)"
        : $"{((Collective)d.Kind).Name()} #{d.Sequence} ({((DType)d.DType).Name()} x {(d.Count < 0 ? "variable" : d.Count.ToString())}, " +
          $"op {((ReduceOp)d.Op).ToString().ToLowerInvariant()}{(d.Root >= 0 ? $", root {d.Root}" : "")}, " +
          $"algorithm {(d.Algorithm >= 0 && d.Algorithm < Algorithms.Length ? Algorithms[d.Algorithm] : "?")})";

    private static unsafe Span<byte> Bytes(Tensor t)
    {
        if (t.Device is not HostMemoryDevice)
            throw new InvalidOperationException($"internal: {t} on {t.Device.Name} reached a collective without staging");
        t.RequireContiguous("a collective");
        return new Span<byte>((void*)t.Pointer, checked((int)t.Bytes));
    }

    private static void Same(Collective kind, Tensor input, Tensor output) => Blocks(kind, input, output,
        input.Count == output.Count, "input and output must hold the same number of elements");

    private static void Blocks(Collective kind, Tensor input, Tensor output, bool shapesAgree, string rule)
    {
        if (input.DType != output.DType) throw new ArgumentException($"{kind.Name()}: input {input} and output {output} have different dtypes");
        if (!shapesAgree) throw new ArgumentException($"{kind.Name()}: {rule}; got input {input}, output {output}");
    }

    private void CheckRoot(int root)
    {
        if (root < 0 || root >= Size) throw new ArgumentOutOfRangeException(nameof(root), $"root {root} is not a rank of a group of {Size}");
    }

    private void CheckPeer(int peer)
    {
        if (peer < 0 || peer >= Size) throw new ArgumentOutOfRangeException(nameof(peer), $"peer {peer} is not a rank of a group of {Size}");
        // Alone, a send to itself would wait for a recv that only a later call could post (as NCCL's outside a group).
        if (peer == Rank)
            throw new ArgumentOutOfRangeException(nameof(peer), $"peer {peer} is this rank: a message to itself is a SendRecv with both peers {peer} (a local copy), " +
                                                                "never a Send or Recv alone");
    }
}
