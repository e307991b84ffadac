using System.Runtime.InteropServices;
using System.Buffers;
using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>
/// A long random run of collectives, every result checked exactly: each step's collective, dtype, reduction, size
/// (0 to <see cref="Options.MaxBytes"/>, by <see cref="SizeRule"/>), root, in or out of place, sync or async, and every rank's
/// inputs are functions of (seed, step, rank, element), so every rank derives the same schedule with no traffic
/// and computes on the host what each output must hold. Async calls stay in flight (up to
/// <see cref="Options.Window"/>) while later calls are issued, so the group's one order is exercised too.
/// </summary>
public static class CollectiveSoak
{
    private static readonly string[] Ops = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "sendrecv"];
    private static readonly DType[] DTypes = [DType.F32, DType.BF16, DType.F16, DType.I32, DType.I64];

    /// <summary>What to run: <paramref name="Collectives"/> steps from <paramref name="Seed"/>, sizes up to <paramref name="MaxBytes"/>.</summary>
    public sealed record Options(int Collectives, ulong Seed, long MaxBytes = 8 << 20, int Window = 4)
    {
        /// <summary>For the test that proves the check can fail: this rank's output of this step is changed before it is checked.</summary>
        internal (int Rank, int Step)? Corrupt { get; init; }
    }

    /// <summary>
    /// The run's totals over all ranks: collectives issued, async ones, bytes the ranks put on their links, errors
    /// (wrong elements, plus one for a failed collective), the time, the failure that ended the run early on
    /// this rank (then the totals are this rank's own: the group cannot add them up any more), and the sizes
    /// the schedule ran (the same on every rank).
    /// </summary>
    public sealed record Result(int Collectives, int Async, long BytesMoved, long Errors, TimeSpan Elapsed, string? Failure, Sizes Sizes);

    /// <summary>
    /// How the sizes are drawn (what --help and the summary print). A step's size is the bytes of its whole
    /// collective (all_gather's output, reduce_scatter's and all_to_all's input hold ranks blocks; the others one
    /// tensor), rounded down to whole elements (whole blocks). Step i, counted from 0: i mod 100 = 99 is the top
    /// octave, log-uniform in (MAX/2, MAX] (4 to 8 MB by default), and takes the ops in turn (all_reduce,
    /// all_gather, ..., sendrecv, all_reduce, ...), so 2,000 steps run each op there at least twice;
    /// i mod 100 = 49 is log-uniform in [MAX/32, MAX/2] (256 KB to 4 MB); any other step is 0 bytes with
    /// probability 1/16, else log-uniform in [1 B, MAX/32] (up to 256 KB). Every decade from 0 B to MAX appears in
    /// a long run, and the large steps, which cost most of the time, are 2 in 100.
    /// </summary>
    public const string SizeRule =
        "step i (from 0): i mod 100 = 99: log-uniform in (MAX/2, MAX], the ops in turn; i mod 100 = 49: log-uniform in " +
        "[MAX/32, MAX/2]; any other: 0 B with probability 1/16, else log-uniform in [1 B, MAX/32]";

    /// <summary>
    /// The sizes a schedule ran: steps per decade of bytes (<see cref="Decades"/>[0]: 0 bytes; [k], k ≥ 1: 10^(k−1)
    /// to 10^k − 1 bytes) and, per op (in <see cref="OpNames"/> order), the steps of the top octave (more than
    /// MAX/2 bytes).
    /// </summary>
    public sealed record Sizes(long[] Decades, int[] TopOctave, long MaxBytes)
    {
        /// <summary>One line: <c>0 B: 120, 1 B+: 80, ..., 1 MB+: 30; top octave (4194305 to 8388608 B): all_reduce 3, ...</c>.</summary>
        public override string ToString()
        {
            var parts = new List<string>();
            for (int k = 0; k < Decades.Length; k++) parts.Add($"{DecadeName(k)}: {Decades[k]}");
            var top = Ops.Select((op, i) => $"{op} {TopOctave[i]}");
            return $"{string.Join(", ", parts)}; top octave ({MaxBytes / 2 + 1} to {MaxBytes} B): {string.Join(", ", top)}";
        }

        private static string DecadeName(int k) => k switch
        {
            0 => "0 B",
            < 4 => $"{(long)Math.Pow(10, k - 1)} B+",
            < 7 => $"{(long)Math.Pow(10, k - 4)} kB+",
            _ => $"{(long)Math.Pow(10, k - 7)} MB+",
        };
    }

    /// <summary>The ops in the order the top octave takes them and <see cref="Sizes.TopOctave"/> counts them.</summary>
    public static IReadOnlyList<string> OpNames => Ops;

    /// <summary>The sizes of the first <paramref name="collectives"/> steps of a schedule (from the seed alone, no traffic).</summary>
    public static Sizes SizesOf(ulong seed, int collectives, int ranks, long maxBytes)
    {
        var decades = new long[Decade(Math.Max(maxBytes, 1)) + 1];
        var top = new int[Ops.Length];
        for (int s = 0; s < collectives; s++)
        {
            var step = Draw(seed, s, ranks, maxBytes);
            long bytes = step.Bytes(ranks);
            decades[Decade(bytes)]++;
            if (bytes > maxBytes / 2) top[Array.IndexOf(Ops, step.Op)]++;
        }
        return new Sizes(decades, top, maxBytes);
    }

    // 0 for 0 bytes, else the number of decimal digits: 1–9 B → 1, 10–99 B → 2, ...
    private static int Decade(long bytes) => bytes <= 0 ? 0 : bytes.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;

    /// <summary>One step of the schedule, the same on every rank.</summary>
    public readonly record struct Step(int Index, string Op, DType DType, ReduceOp RedOp, long Count, int Root, bool InPlace, bool Async)
    {
        /// <summary>The bytes of the whole collective on <paramref name="ranks"/> ranks (what <see cref="SizeRule"/> draws).</summary>
        public long Bytes(int ranks) => Count * DType.SizeOf() * (Op is "all_gather" or "reduce_scatter" or "all_to_all" ? ranks : 1);

        /// <summary>A short description for errors: <c>step 17: all_gather bf16 x 1234 (async, in place)</c>.</summary>
        public override string ToString() =>
            $"step {Index}: {Op} {DType.Name()} x {Count}{(Op is "all_reduce" or "reduce_scatter" or "reduce" ? $" op {RedOp.ToString().ToLowerInvariant()}" : "")}" +
            $"{(Op is "broadcast" or "reduce" ? $" root {Root}" : "")} ({(Async ? "async" : "sync")}, {(InPlace ? "in place" : "out of place")})";
    }

    /// <summary>Step <paramref name="index"/> of the schedule of <paramref name="seed"/> for <paramref name="ranks"/> ranks.</summary>
    public static Step Draw(ulong seed, int index, int ranks, long maxBytes)
    {
        ulong state = Mix(seed ^ Mix((ulong)index + 0x9E37_79B9_7F4A_7C15UL));
        ulong Next() => state = Mix(state + 0x9E37_79B9_7F4A_7C15UL);
        string op = Ops[(int)(Next() % (ulong)Ops.Length)];
        var dtype = DTypes[(int)(Next() % (ulong)DTypes.Length)];
        var redop = (ReduceOp)(int)(Next() % 5);
        int es = dtype.SizeOf();
        // SizeRule: the large steps, which cost the time, are 2 in 100; the top octave takes the ops in turn.
        double u = (Next() >> 11) * (1.0 / (1UL << 53));
        bool empty = Next() % 16 == 0;
        double LogUniform(double lo, double hi) => Math.Exp(Math.Log(Math.Max(lo, 1)) + u * (Math.Log(Math.Max(hi, 1)) - Math.Log(Math.Max(lo, 1))));
        if (index % 100 == 99) op = Ops[index / 100 % Ops.Length];
        // Block-wise collectives move ranks × count elements in all: the drawn size is that total.
        bool blocks = op is "all_gather" or "reduce_scatter" or "all_to_all";
        long unit = (long)es * (blocks ? ranks : 1);
        long count;
        // The top octave: whole units strictly above MAX/2 and within MAX (when a unit fits there at all).
        long most = maxBytes / unit, least = Math.Min(maxBytes / 2 / unit + 1, most);
        if (index % 100 == 99) count = Math.Clamp((long)LogUniform(maxBytes / 2.0, maxBytes) / unit, least, most);
        else if (index % 100 == 49) count = (long)LogUniform(maxBytes / 32.0, maxBytes / 2.0) / unit;
        else count = empty || maxBytes < 1 ? 0 : (long)LogUniform(1, maxBytes / 32.0) / unit;
        int root = (int)(Next() % (ulong)ranks);
        bool inPlace = op is not ("all_to_all" or "sendrecv") && Next() % 2 == 0;
        bool async = Next() % 2 == 0;
        return new Step(index, op, dtype, redop, count, root, inPlace, async);
    }

    /// <summary>
    /// Runs the soak on this rank of <paramref name="group"/>; every rank of the group must call it with the same
    /// options. <paramref name="mismatch"/> gets one line per step whose result on this rank is wrong;
    /// <paramref name="issued"/> gets the number of collectives issued so far after each one (progress).
    /// </summary>
    public static Result Run(ProcessGroup group, Options o, Action<string>? mismatch = null, Action<int>? issued = null)
    {
        int n = group.Size, r = group.Rank, asyncCount = 0, issuedCount = 0;
        long wrong = 0, sentBefore = group.BytesSent;
        var inFlight = new Queue<(Step Step, Task Task, Buffers Buffers)>();
        var clock = Stopwatch.StartNew();

        void Finish(Step step, Buffers buffers)
        {
            try
            {
                if (o.Corrupt is { } c && c.Rank == r && c.Step == step.Index && buffers.Result.Count > 0) Poke(buffers.Result);
                var (bad, what) = Check(o.Seed, step, r, n, buffers);
                wrong += bad;
                if (bad > 0) mismatch?.Invoke($"{step} on rank {r} of {n}: {bad} wrong elements, {what}");
            }
            finally
            {
                buffers.Dispose();
            }
        }

        try
        {
            for (int s = 0; s < o.Collectives; s++)
            {
                var step = Draw(o.Seed, s, n, o.MaxBytes);
                var buffers = Buffers.For(o.Seed, step, r, n);
                issuedCount++;
                if (step.Async)
                {
                    asyncCount++;
                    inFlight.Enqueue((step, Issue(group, step, buffers, async: true)!, buffers));
                    while (inFlight.Count > o.Window)
                    {
                        var (done, task, held) = inFlight.Dequeue();
                        task.GetAwaiter().GetResult();
                        Finish(done, held);
                    }
                }
                else
                {
                    Issue(group, step, buffers, async: false);
                    Finish(step, buffers);
                }
                issued?.Invoke(issuedCount);
            }
            while (inFlight.Count > 0)
            {
                var (done, task, held) = inFlight.Dequeue();
                task.GetAwaiter().GetResult();
                Finish(done, held);
            }
        }
        catch (CollectiveException e)
        {
            // The group cannot be used any more: report this rank's own count (one error for the failure itself).
            foreach (var (_, task, held) in inFlight)
            {
                try { task.Wait(); } catch (AggregateException) { }
                held.Dispose();
            }
            return new Result(issuedCount, asyncCount, group.BytesSent - sentBefore, wrong + 1, clock.Elapsed, e.Message, SizesOf(o.Seed, issuedCount, n, o.MaxBytes));
        }
        var elapsed = clock.Elapsed;
        using var totals = Tensor.FromLongs(CpuDevice.Instance, [wrong, group.BytesSent - sentBefore], 2);
        group.AllReduce(totals, ReduceOp.Sum);
        var summed = totals.ToLongs();
        return new Result(issuedCount, asyncCount, summed[1], summed[0], elapsed, null, SizesOf(o.Seed, issuedCount, n, o.MaxBytes));
    }

    private static Task? Issue(ProcessGroup g, Step step, Buffers b, bool async)
    {
        int n = g.Size, r = g.Rank;
        Task? Call(Func<Task> later, Action now)
        {
            if (async) return later();
            now();
            return null;
        }
        return step.Op switch
        {
            "all_reduce" => Call(() => g.AllReduceAsync(b.Input, b.Result, step.RedOp), () => g.AllReduce(b.Input, b.Result, step.RedOp)),
            "all_gather" => Call(() => g.AllGatherAsync(b.Input, b.Result), () => g.AllGather(b.Input, b.Result)),
            "reduce_scatter" => Call(() => g.ReduceScatterAsync(b.Input, b.Result, step.RedOp), () => g.ReduceScatter(b.Input, b.Result, step.RedOp)),
            "broadcast" when step.InPlace => Call(() => g.BroadcastAsync(b.Result, step.Root), () => g.Broadcast(b.Result, step.Root)),
            "broadcast" => Call(() => g.BroadcastAsync(b.Input, b.Result, step.Root), () => g.Broadcast(b.Input, b.Result, step.Root)),
            "reduce" => Call(() => g.ReduceAsync(b.Input, b.Result, step.Root, step.RedOp), () => g.Reduce(b.Input, b.Result, step.Root, step.RedOp)),
            "all_to_all" => Call(() => g.AllToAllAsync(b.Input, b.Result), () => g.AllToAll(b.Input, b.Result)),
            // In a group of one both neighbours are the rank itself: ProcessGroup makes it a copy.
            _ => Call(() => g.SendRecvAsync(b.Input, (r + 1) % n, b.Result, (r + n - 1) % n, tag: step.Index),
                      () => g.SendRecv(b.Input, (r + 1) % n, b.Result, (r + n - 1) % n, tag: step.Index)),
        };
    }

    /// <summary>
    /// One step's tensors on one rank. In place as NCCL defines it: all_reduce, broadcast and reduce use one
    /// tensor; all_gather's input is this rank's block of the output; reduce_scatter's output is this rank's
    /// block of the input.
    /// </summary>
    private sealed class Buffers : IDisposable
    {
        private readonly List<Tensor> _owned = [];
        public Tensor Input = null!;
        public Tensor Result = null!;
        public long[] Before = []; // the result's contents before the call (reduce leaves non-roots' alone)

        public static Buffers For(ulong seed, Step s, int r, int n)
        {
            var b = new Buffers();
            int count = checked((int)s.Count), total = checked(count * n);
            ReduceOp? reduces = s.Op is "all_reduce" or "reduce_scatter" or "reduce" ? s.RedOp : null;
            long Poison(long i) => 77 - i % 5;
            var mine = new Source(seed, s, reduces, r, n);
            switch (s.Op)
            {
                case "all_gather":
                    var gathered = b.Own(Make(s.DType, total, i => i / count == r && s.InPlace ? mine.At(i % count) : Poison(i)));
                    b.Input = s.InPlace ? gathered.Narrow(0, r * count, count) : b.Own(Make(s.DType, count, mine));
                    b.Result = gathered;
                    break;
                case "reduce_scatter":
                    var whole = b.Own(Make(s.DType, total, mine));
                    b.Input = whole;
                    b.Result = s.InPlace ? whole.Narrow(0, r * count, count) : b.Own(Make(s.DType, count, Poison));
                    break;
                case "all_to_all":
                    b.Input = b.Own(Make(s.DType, total, mine));
                    b.Result = b.Own(Make(s.DType, total, Poison));
                    break;
                case "broadcast" when s.InPlace:
                    b.Input = b.Result = b.Own(Make(s.DType, count, i => r == s.Root ? mine.At(i) : Poison(i)));
                    break;
                default: // all_reduce, reduce, broadcast out of place, sendrecv
                    b.Input = b.Own(Make(s.DType, count, mine));
                    b.Result = s.InPlace ? b.Input : b.Own(Make(s.DType, count, Poison));
                    break;
            }
            if (s.Op == "reduce") b.Before = Read(b.Result, new long[count]).ToArray();
            return b;
        }

        private Tensor Own(Tensor t)
        {
            _owned.Add(t);
            return t;
        }

        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
        }
    }

    // Element i of rank r's input at step s: exact in every dtype and any reduction order for up to 8 ranks
    // (bf16 holds integers to 256 exactly): sums of |v| ≤ 120/n, products of ones and twos, averages of
    // multiples of n, extremes and plain data in [−100, 100]. The hash of (seed, step, rank) is taken once per
    // tensor, not per element: the soak's time is mostly this host work, not the collectives.
    private readonly struct Source
    {
        private readonly ulong _key;
        private readonly long _bound, _ranks;
        private readonly ReduceOp? _op;

        public Source(ulong seed, Step s, ReduceOp? op, int rank, int ranks)
        {
            _key = Mix(seed ^ Mix(((ulong)s.Index << 20) ^ (ulong)rank));
            _bound = 120 / Math.Max(ranks, 1);
            _ranks = ranks;
            _op = op;
        }

        public long At(long i)
        {
            ulong h = Mix(_key + (ulong)i * 0x9E37_79B9_7F4A_7C15UL); // splitmix64's stream: one mix per element
            return _op switch
            {
                ReduceOp.Sum => (long)(h % (ulong)(2 * _bound + 1)) - _bound,
                ReduceOp.Prod => h % 3 == 0 ? 2 : 1,
                ReduceOp.Avg => _ranks * (long)(h % 4),
                _ => (long)(h % 201) - 100,
            };
        }

        // Elements [from, from + into.Length) into `into`.
        public void Fill(long from, Span<long> into)
        {
            for (int i = 0; i < into.Length; i++) into[i] = At(from + i);
        }

    }

    // Elements [from, from + into.Length) of the reduction over all ranks' inputs, rank by rank.
    private static void Reduced(ulong seed, Step s, int ranks, long from, Span<long> into)
    {
        new Source(seed, s, s.RedOp, 0, ranks).Fill(from, into);
        for (int p = 1; p < ranks; p++)
        {
            var source = new Source(seed, s, s.RedOp, p, ranks);
            for (int i = 0; i < into.Length; i++)
            {
                long v = source.At(from + i);
                into[i] = s.RedOp switch
                {
                    ReduceOp.Sum or ReduceOp.Avg => into[i] + v,
                    ReduceOp.Prod => into[i] * v,
                    ReduceOp.Max => Math.Max(into[i], v),
                    _ => Math.Min(into[i], v),
                };
            }
        }
        if (s.RedOp == ReduceOp.Avg) for (int i = 0; i < into.Length; i++) into[i] /= ranks;
    }

    // Wrong elements of this rank's result and the first one described.
    private static (long Wrong, string? First) Check(ulong seed, Step s, int r, int n, Buffers b)
    {
        int length = checked((int)b.Result.Count);
        long[] gotArray = ArrayPool<long>.Shared.Rent(length), expectedArray = ArrayPool<long>.Shared.Rent(length);
        try
        {
            return Compare(seed, s, r, n, b, Read(b.Result, gotArray), expectedArray.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<long>.Shared.Return(gotArray);
            ArrayPool<long>.Shared.Return(expectedArray);
        }
    }

    private static (long Wrong, string? First) Compare(ulong seed, Step s, int r, int n, Buffers b, ReadOnlySpan<long> got, Span<long> expected)
    {
        int count = (int)s.Count;
        switch (s.Op)
        {
            case "all_reduce":
                Reduced(seed, s, n, 0, expected);
                break;
            case "reduce_scatter":
                Reduced(seed, s, n, (long)r * count, expected);
                break;
            case "reduce":
                if (r == s.Root) Reduced(seed, s, n, 0, expected);
                else b.Before.CopyTo(expected);
                break;
            case "all_gather":
                for (int p = 0; p < n; p++) new Source(seed, s, null, p, n).Fill(0, expected.Slice(p * count, count));
                break;
            case "broadcast":
                new Source(seed, s, null, s.Root, n).Fill(0, expected);
                break;
            case "all_to_all":
                for (int p = 0; p < n; p++) new Source(seed, s, null, p, n).Fill((long)r * count, expected.Slice(p * count, count));
                break;
            default: // sendrecv: from the left neighbour
                new Source(seed, s, null, (r + n - 1) % n, n).Fill(0, expected);
                break;
        }
        long wrong = 0;
        string? first = null;
        for (int i = 0; i < got.Length; i++)
        {
            if (got[i] == expected[i]) continue;
            wrong++;
            first ??= $"element {i} is {got[i]}, expected {expected[i]}";
        }
        return (wrong, first);
    }

    private static Tensor Make(DType dtype, int count, Func<long, long> value)
    {
        var values = ArrayPool<long>.Shared.Rent(count);
        try
        {
            for (int i = 0; i < count; i++) values[i] = value(i);
            return Make(dtype, values.AsSpan(0, count));
        }
        finally
        {
            ArrayPool<long>.Shared.Return(values);
        }
    }

    private static Tensor Make(DType dtype, int count, Source source)
    {
        var values = ArrayPool<long>.Shared.Rent(count);
        try
        {
            source.Fill(0, values.AsSpan(0, count));
            return Make(dtype, values.AsSpan(0, count));
        }
        finally
        {
            ArrayPool<long>.Shared.Return(values);
        }
    }

    // Written straight into the tensor's host memory, from pooled arrays: the soak's time is mostly making and
    // checking tensors (fresh arrays of tens of megabytes cost page faults and collections on every large step).
    private static unsafe Tensor Make(DType dtype, ReadOnlySpan<long> values)
    {
        var t = Tensor.Empty(CpuDevice.Instance, dtype, values.Length);
        int n = values.Length;
        switch (dtype)
        {
            case DType.I32:
                var ints = new Span<int>((void*)t.Pointer, n);
                for (int i = 0; i < n; i++) ints[i] = (int)values[i];
                break;
            case DType.I64:
                values.CopyTo(new Span<long>((void*)t.Pointer, n));
                break;
            case DType.F32:
                var floats = new Span<float>((void*)t.Pointer, n);
                for (int i = 0; i < n; i++) floats[i] = values[i];
                break;
            default:
                var halves = new Span<ushort>((void*)t.Pointer, n);
                var table = Encoded(dtype);
                for (int i = 0; i < n; i++)
                {
                    long v = values[i];
                    halves[i] = v >= -EncodedRange && v <= EncodedRange ? table[v + EncodedRange] : Encode(dtype, v);
                }
                break;
        }
        return t;
    }

    // The tensor's elements as integers, into the first Count elements of `values`.
    private static unsafe Span<long> Read(Tensor t, long[] values)
    {
        int n = checked((int)t.Count);
        switch (t.DType)
        {
            case DType.I32:
                var ints = new ReadOnlySpan<int>((void*)t.Pointer, n);
                for (int i = 0; i < n; i++) values[i] = ints[i];
                break;
            case DType.I64:
                new ReadOnlySpan<long>((void*)t.Pointer, n).CopyTo(values.AsSpan(0, n));
                break;
            case DType.F32:
                var floats = new ReadOnlySpan<float>((void*)t.Pointer, n);
                for (int i = 0; i < n; i++) values[i] = Exact(floats[i]);
                break;
            default:
                var halves = new ReadOnlySpan<ushort>((void*)t.Pointer, n);
                var table = Decoded(t.DType);
                for (int i = 0; i < n; i++) values[i] = table[halves[i]];
                break;
        }
        return values.AsSpan(0, n);
    }

    // A non-finite or fractional float is never an expected value.
    private static long Exact(float v) => float.IsFinite(v) && v == MathF.Floor(v) ? (long)v : long.MinValue;

    // 16-bit floats through tables: every bit pattern decoded once, the small integers the soak uses encoded once.
    private const int EncodedRange = 1024;
    private static readonly Dictionary<DType, ushort[]> EncodedTables = [];
    private static readonly Dictionary<DType, long[]> DecodedTables = [];

    private static ushort[] Encoded(DType dtype)
    {
        lock (EncodedTables)
        {
            if (EncodedTables.TryGetValue(dtype, out var table)) return table;
            var floats = new float[2 * EncodedRange + 1];
            for (int i = 0; i < floats.Length; i++) floats[i] = i - EncodedRange;
            return EncodedTables[dtype] = MemoryMarshal.Cast<byte, ushort>(HostEncoding.Encode(floats, dtype)).ToArray();
        }
    }

    private static ushort Encode(DType dtype, long v) => MemoryMarshal.Read<ushort>(HostEncoding.Encode([v], dtype));

    private static long[] Decoded(DType dtype)
    {
        lock (DecodedTables)
        {
            if (DecodedTables.TryGetValue(dtype, out var table)) return table;
            var patterns = new ushort[1 << 16];
            for (int i = 0; i < patterns.Length; i++) patterns[i] = (ushort)i;
            var floats = HostEncoding.DecodeFloats(MemoryMarshal.AsBytes(patterns.AsSpan()), dtype);
            return DecodedTables[dtype] = Array.ConvertAll(floats, Exact);
        }
    }

    // The planted error of the test that proves the check works: the first element changes.
    private static void Poke(Tensor t)
    {
        var values = Read(t, new long[t.Count]);
        values[0] += 1;
        using var changed = Make(t.DType, values);
        t.CopyFromHost(changed.ToBytes());
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }
}
