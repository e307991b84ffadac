using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>
/// A long random run of collectives, every result checked exactly: each step's collective, dtype, reduction, size
/// (0 to <see cref="Options.MaxBytes"/>, log-uniform), root, in or out of place, sync or async, and every rank's
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
    /// (wrong elements, plus one for a failed collective), the time, and the failure that ended the run early on
    /// this rank (then the totals are this rank's own: the group cannot add them up any more).
    /// </summary>
    public sealed record Result(int Collectives, int Async, long BytesMoved, long Errors, TimeSpan Elapsed, string? Failure);

    /// <summary>One step of the schedule, the same on every rank.</summary>
    public readonly record struct Step(int Index, string Op, DType DType, ReduceOp RedOp, long Count, int Root, bool InPlace, bool Async)
    {
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
        // Log-uniform sizes: most steps small (latency paths, one-shot), some near the cap (ring, many chunks); 1 in 16 empty.
        double u = (Next() >> 11) * (1.0 / (1UL << 53));
        long bytes = Next() % 16 == 0 || maxBytes < 1 ? 0 : (long)Math.Exp(u * Math.Log(Math.Max(maxBytes, 1)));
        // Block-wise collectives move ranks × count elements in all; keep that total under the cap too.
        bool blocks = op is "all_gather" or "reduce_scatter" or "all_to_all";
        long count = bytes / es / (blocks ? ranks : 1);
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
            return new Result(issuedCount, asyncCount, group.BytesSent - sentBefore, wrong + 1, clock.Elapsed, e.Message);
        }
        var elapsed = clock.Elapsed;
        using var totals = Tensor.FromLongs(CpuDevice.Instance, [wrong, group.BytesSent - sentBefore], 2);
        group.AllReduce(totals, ReduceOp.Sum);
        var summed = totals.ToLongs();
        return new Result(issuedCount, asyncCount, summed[1], summed[0], elapsed, null);
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
            switch (s.Op)
            {
                case "all_gather":
                    var gathered = b.Own(Make(s.DType, total, i => i / count == r && s.InPlace ? Input(seed, s, null, r, n, i % count) : Poison(i)));
                    b.Input = s.InPlace ? gathered.Narrow(0, r * count, count) : b.Own(Make(s.DType, count, i => Input(seed, s, null, r, n, i)));
                    b.Result = gathered;
                    break;
                case "reduce_scatter":
                    var whole = b.Own(Make(s.DType, total, i => Input(seed, s, reduces, r, n, i)));
                    b.Input = whole;
                    b.Result = s.InPlace ? whole.Narrow(0, r * count, count) : b.Own(Make(s.DType, count, Poison));
                    break;
                case "all_to_all":
                    b.Input = b.Own(Make(s.DType, total, i => Input(seed, s, null, r, n, i)));
                    b.Result = b.Own(Make(s.DType, total, Poison));
                    break;
                case "broadcast" when s.InPlace:
                    b.Input = b.Result = b.Own(Make(s.DType, count, i => r == s.Root ? Input(seed, s, null, r, n, i) : Poison(i)));
                    break;
                default: // all_reduce, reduce, broadcast out of place, sendrecv
                    b.Input = b.Own(Make(s.DType, count, i => Input(seed, s, reduces, r, n, i)));
                    b.Result = s.InPlace ? b.Input : b.Own(Make(s.DType, count, Poison));
                    break;
            }
            if (s.Op == "reduce") b.Before = Read(b.Result);
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
    // multiples of n, extremes and plain data in [−100, 100].
    private static long Input(ulong seed, Step s, ReduceOp? op, int rank, int ranks, long i)
    {
        ulong h = Mix(seed ^ Mix(((ulong)s.Index << 20) ^ (ulong)rank) ^ Mix((ulong)i * 0xD6E8_FEB8_6659_FD93UL));
        long bound = 120 / Math.Max(ranks, 1);
        return op switch
        {
            ReduceOp.Sum => (long)(h % (ulong)(2 * bound + 1)) - bound,
            ReduceOp.Prod => h % 3 == 0 ? 2 : 1,
            ReduceOp.Avg => ranks * (long)(h % 4),
            _ => (long)(h % 201) - 100,
        };
    }

    private static long Reduced(ulong seed, Step s, int ranks, long i)
    {
        long acc = Input(seed, s, s.RedOp, 0, ranks, i);
        for (int p = 1; p < ranks; p++)
        {
            long v = Input(seed, s, s.RedOp, p, ranks, i);
            acc = s.RedOp switch
            {
                ReduceOp.Sum or ReduceOp.Avg => acc + v,
                ReduceOp.Prod => acc * v,
                ReduceOp.Max => Math.Max(acc, v),
                _ => Math.Min(acc, v),
            };
        }
        return s.RedOp == ReduceOp.Avg ? acc / ranks : acc;
    }

    // Wrong elements of this rank's result and the first one described.
    private static (long Wrong, string? First) Check(ulong seed, Step s, int r, int n, Buffers b)
    {
        var got = Read(b.Result);
        long count = s.Count, wrong = 0;
        string? first = null;
        for (long i = 0; i < got.Length; i++)
        {
            long expected = s.Op switch
            {
                "all_reduce" => Reduced(seed, s, n, i),
                "reduce_scatter" => Reduced(seed, s, n, r * count + i),
                "reduce" => r == s.Root ? Reduced(seed, s, n, i) : b.Before[i],
                "all_gather" => Input(seed, s, null, (int)(i / count), n, i % count),
                "broadcast" => Input(seed, s, null, s.Root, n, i),
                "all_to_all" => Input(seed, s, null, (int)(i / count), n, r * count + i % count),
                _ => Input(seed, s, null, (r + n - 1) % n, n, i),
            };
            if (got[i] == expected) continue;
            wrong++;
            first ??= $"element {i} is {got[i]}, expected {expected}";
        }
        return (wrong, first);
    }

    private static Tensor Make(DType dtype, int count, Func<long, long> value)
    {
        var cpu = CpuDevice.Instance;
        switch (dtype)
        {
            case DType.I32:
                var ints = new int[count];
                for (int i = 0; i < count; i++) ints[i] = (int)value(i);
                return Tensor.FromInts(cpu, ints, count);
            case DType.I64:
                var longs = new long[count];
                for (int i = 0; i < count; i++) longs[i] = value(i);
                return Tensor.FromLongs(cpu, longs, count);
            default:
                var floats = new float[count];
                for (int i = 0; i < count; i++) floats[i] = value(i);
                return Tensor.FromFloats(cpu, floats, dtype, count);
        }
    }

    private static long[] Read(Tensor t) => t.DType switch
    {
        DType.I32 => Array.ConvertAll(t.ToInts(), v => (long)v),
        DType.I64 => t.ToLongs(),
        // A non-finite or fractional float is never an expected value.
        _ => Array.ConvertAll(t.ToFloats(), v => float.IsFinite(v) && v == Math.Floor(v) ? (long)v : long.MinValue),
    };

    // The planted error of the test that proves the check works: the first element changes.
    private static void Poke(Tensor t)
    {
        var values = Read(t);
        values[0] += 1;
        using var changed = Make(t.DType, values.Length, i => values[i]);
        t.CopyFromHost(changed.ToBytes());
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }
}
