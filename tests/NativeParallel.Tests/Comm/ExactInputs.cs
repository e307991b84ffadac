using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// Collective inputs whose results are exact in every dtype and any reduction order (small integers; products of
/// ones and twos; avg inputs that are multiples of the rank count), with their expected results.
/// </summary>
internal static class ExactInputs
{
    public static long Value(ReduceOp op, int rank, int ranks, long i) => op switch
    {
        ReduceOp.Prod => (rank + i) % 3 == 0 ? 2 : 1,
        ReduceOp.Avg => ranks * ((rank + i) % 4),
        ReduceOp.Max or ReduceOp.Min => (rank * 7 + i * 3) % 11 - 5,
        _ => (rank + 2 * i) % 7 - 2,
    };

    public static long Reduced(ReduceOp op, int ranks, long i)
    {
        long acc = Value(op, 0, ranks, i);
        for (int r = 1; r < ranks; r++)
        {
            long v = Value(op, r, ranks, i);
            acc = op switch
            {
                ReduceOp.Sum or ReduceOp.Avg => acc + v,
                ReduceOp.Prod => acc * v,
                ReduceOp.Max => Math.Max(acc, v),
                _ => Math.Min(acc, v),
            };
        }
        return op == ReduceOp.Avg ? acc / ranks : acc;
    }

    public static Tensor Make(DType dtype, long count, Func<long, long> value)
    {
        var device = CpuDevice.Instance;
        int n = checked((int)count);
        if (dtype == DType.I32) return Tensor.FromInts(device, Enumerable.Range(0, n).Select(i => (int)value(i)).ToArray(), n);
        if (dtype == DType.I64) return Tensor.FromLongs(device, Enumerable.Range(0, n).Select(i => value(i)).ToArray(), n);
        return Tensor.FromFloats(device, Enumerable.Range(0, n).Select(i => (float)value(i)).ToArray(), dtype, n);
    }

    public static long[] Read(Tensor t) => t.DType switch
    {
        DType.I32 => t.ToInts().Select(v => (long)v).ToArray(),
        DType.I64 => t.ToLongs(),
        _ => t.ToFloats().Select(v => (long)v).ToArray(),
    };

    /// <summary>Runs body(group) on one thread per rank; rethrows the first failure.</summary>
    public static void OnThreads(NativeParallel.Comm.ProcessGroup[] groups, Action<NativeParallel.Comm.ProcessGroup> body)
    {
        var failures = new Exception?[groups.Length];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            try { body(g); }
            catch (Exception e) { failures[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a rank thread did not finish in 2 minutes");
        var all = failures.Where(f => f is not null).ToArray();
        if (all.Length > 0) throw new AggregateException(all!);
    }
}
