using System.Diagnostics;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Comm;

/// <summary>One row of the nccl-tests table: a size, out-of-place and in-place timings, bandwidths and errors.</summary>
public sealed record CollectiveBenchmarkRow(long Bytes, long Count, string Type, string RedOp, int Root,
    double OutOfPlaceUs, double OutOfPlaceAlgBw, double OutOfPlaceBusBw, long OutOfPlaceWrong,
    double? InPlaceUs, double? InPlaceAlgBw, double? InPlaceBusBw, long? InPlaceWrong);

/// <summary>
/// nccl-tests for our collectives: sizes from min to max by a factor, warm-up then timed iterations (average
/// per iteration, the slowest rank's), algbw = bytes / time, busbw = algbw × the collective's factor
/// (2(n−1)/n all-reduce; (n−1)/n all-gather, reduce-scatter, all-to-all; 1 broadcast, reduce, sendrecv), and an
/// exact #wrong count from <see cref="ExactPattern"/> inputs, summed over ranks.
/// </summary>
public static class CollectiveBenchmark
{
    /// <summary>Options, named as nccl-tests' flags.</summary>
    public sealed record Options(string Op, long MinBytes, long MaxBytes, double Factor, int Iterations, int Warmup, bool Check,
        DType DType, ReduceOp RedOp, int Root)
    {
        /// <summary>Where the buffers live (host memory by default; a GPU or the emulated device for device-side collectives).</summary>
        public IDevice? Device { get; init; }
    }

    /// <summary>The bus-bandwidth factor of <paramref name="op"/> for <paramref name="ranks"/> ranks.</summary>
    public static double BusFactor(string op, int ranks) => op switch
    {
        "all_reduce" => 2.0 * (ranks - 1) / ranks,
        "all_gather" or "reduce_scatter" or "all_to_all" => (double)(ranks - 1) / ranks,
        _ => 1.0,
    };

    /// <summary>Runs the sweep on this rank of <paramref name="group"/>; every rank gets the same rows.</summary>
    public static IReadOnlyList<CollectiveBenchmarkRow> Run(ProcessGroup group, Options o, Action<CollectiveBenchmarkRow>? progress = null)
    {
        var rows = new List<CollectiveBenchmarkRow>();
        int n = group.Size, es = o.DType.SizeOf();
        // Element counts must split evenly into one block per rank for the block-wise collectives.
        long granule = o.Op is "all_gather" or "reduce_scatter" or "all_to_all" ? (long)n * es : es;
        for (double size = o.MinBytes; size <= o.MaxBytes; size = Math.Max(size * o.Factor, size + 1))
        {
            long bytes = (long)size / granule * granule;
            long count = bytes / es;
            var (outUs, outWrong) = Measure(group, o, count, inPlace: false);
            (double Us, long Wrong)? inPlace = o.Op is "all_to_all" or "sendrecv" ? null : Measure(group, o, count, inPlace: true);
            double factor = BusFactor(o.Op, n);
            double Alg(double us) => us > 0 ? bytes / us / 1e3 : 0;
            var row = new CollectiveBenchmarkRow(bytes, count, TypeName(o.DType), Rooted(o.Op) || !Reduces(o.Op) ? "none" : o.RedOp.ToString().ToLowerInvariant(),
                Rooted(o.Op) ? o.Root : -1, outUs, Alg(outUs), Alg(outUs) * factor, outWrong,
                inPlace?.Us, inPlace is { } a ? Alg(a.Us) : null, inPlace is { } b ? Alg(b.Us) * factor : null, inPlace?.Wrong);
            if (o.Op == "reduce") row = row with { RedOp = o.RedOp.ToString().ToLowerInvariant() };
            rows.Add(row);
            progress?.Invoke(row);
            if (o.Factor <= 1 && o.MinBytes == o.MaxBytes) break;
        }
        return rows;
    }

    /// <summary>nccl-tests' type names.</summary>
    public static string TypeName(DType d) => d switch
    {
        DType.F32 => "float",
        DType.BF16 => "bfloat16",
        DType.F16 => "half",
        DType.I32 => "int32",
        DType.I64 => "int64",
        _ => d.Name(),
    };

    private static bool Rooted(string op) => op is "broadcast" or "reduce";

    private static bool Reduces(string op) => op is "all_reduce" or "reduce_scatter" or "reduce";

    private static (double Us, long Wrong) Measure(ProcessGroup g, Options o, long count, bool inPlace)
    {
        var cpu = o.Device ?? CpuDevice.Instance;
        int n = g.Size, r = g.Rank;
        long inCount = o.Op is "reduce_scatter" or "all_to_all" ? count : o.Op == "all_gather" ? count / n : count;
        long outCount = o.Op is "all_gather" or "all_to_all" ? count : o.Op == "reduce_scatter" ? count / n : count;
        using var output = Tensor.Empty(cpu, o.DType, checked((int)outCount));
        using var separate = inPlace ? null : Tensor.Empty(cpu, o.DType, checked((int)inCount));
        // In place, the input is the output itself or this rank's block of it (all_gather), or the output is
        // this rank's block of the input (reduce_scatter), as NCCL defines it.
        using var bigInput = inPlace && o.Op == "reduce_scatter" ? Tensor.Empty(cpu, o.DType, checked((int)inCount)) : null;
        Tensor input = !inPlace ? separate! : o.Op == "all_gather" ? output.Narrow(0, (int)(r * inCount), (int)inCount) : bigInput ?? output;
        Tensor result = inPlace && o.Op == "reduce_scatter" ? bigInput!.Narrow(0, (int)(r * outCount), (int)outCount) : output;
        Fill(input, o, r, n, 0);
        void Once()
        {
            switch (o.Op)
            {
                case "all_reduce": g.AllReduce(input, result, o.RedOp); break;
                case "all_gather": g.AllGather(input, result); break;
                case "reduce_scatter": g.ReduceScatter(input, result, o.RedOp); break;
                case "broadcast": g.Broadcast(input, result, o.Root); break;
                case "reduce": g.Reduce(input, result, o.Root, o.RedOp); break;
                case "all_to_all": g.AllToAll(input, result); break;
                case "sendrecv": g.SendRecv(input, (r + 1) % n, result, (r + n - 1) % n); break;
                default: throw new ArgumentException($"unknown collective '{o.Op}'");
            }
        }
        for (int i = 0; i < o.Warmup; i++) Once();
        g.Barrier();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < o.Iterations; i++) Once();
        // Device collectives are stream-ordered: the call returns once its work is enqueued, so time until it is done.
        o.Device?.Synchronize();
        double us = clock.Elapsed.TotalMicroseconds / Math.Max(o.Iterations, 1);
        // The slowest rank's time, as nccl-tests reports it.
        using var time = Tensor.FromLongs(CpuDevice.Instance, [(long)(us * 1000)], 1);
        g.AllReduce(time, ReduceOp.Max);
        us = time.ToLongs()[0] / 1000.0;
        long wrong = 0;
        if (o.Check)
        {
            Fill(input, o, r, n, 0);
            Once();
            wrong = CountWrong(result, o, r, n, inCount);
            using var total = Tensor.FromLongs(CpuDevice.Instance, [wrong], 1);
            g.AllReduce(total, ReduceOp.Sum);
            wrong = total.ToLongs()[0];
        }
        return (us, wrong);
    }

    private static long InputValue(Options o, int rank, int ranks, long i) => ExactPattern.Value(Reduces(o.Op) ? o.RedOp : ReduceOp.Sum, rank, ranks, i);

    private static void Fill(Tensor t, Options o, int rank, int ranks, long offset)
    {
        var values = new float[t.Count];
        for (long i = 0; i < values.Length; i++) values[i] = InputValue(o, rank, ranks, offset + i);
        Write(t, values);
    }

    private static void Write(Tensor t, float[] values)
    {
        using var staged = t.DType switch
        {
            DType.I32 => Tensor.FromInts(CpuDevice.Instance, Array.ConvertAll(values, v => (int)v), values.Length),
            DType.I64 => Tensor.FromLongs(CpuDevice.Instance, Array.ConvertAll(values, v => (long)v), values.Length),
            _ => Tensor.FromFloats(CpuDevice.Instance, values, t.DType, values.Length),
        };
        if (values.Length > 0) t.Device.CopyHostToDevice(staged.ToBytes(), t.Pointer);
    }

    private static long CountWrong(Tensor result, Options o, int r, int n, long inCount)
    {
        long[] got = result.DType switch
        {
            DType.I32 => result.ToInts().Select(v => (long)v).ToArray(),
            DType.I64 => result.ToLongs(),
            _ => result.ToFloats().Select(v => float.IsFinite(v) ? (long)v : long.MinValue).ToArray(),
        };
        long block = Math.Max(inCount / (o.Op == "all_to_all" ? n : 1), 1);
        long wrong = 0;
        for (long i = 0; i < got.Length; i++)
        {
            long? expected = o.Op switch
            {
                "all_reduce" => ExactPattern.Reduced(o.RedOp, n, i),
                "reduce_scatter" => ExactPattern.Reduced(o.RedOp, n, r * got.Length + i),
                "reduce" => r == o.Root ? ExactPattern.Reduced(o.RedOp, n, i) : null,
                "all_gather" => InputValue(o, (int)(i / inCount), n, i % inCount),
                "broadcast" => InputValue(o, o.Root, n, i),
                "all_to_all" => InputValue(o, (int)(i / block), n, r * block + i % block),
                "sendrecv" => InputValue(o, (r + n - 1) % n, n, i),
                _ => null,
            };
            if (expected is { } e && got[i] != e) wrong++;
        }
        return wrong;
    }
}
