using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>Test helpers over <see cref="ExactPattern"/>: exact inputs as tensors, results back as integers, rank threads.</summary>
internal static class ExactInputs
{
    public static long Value(ReduceOp op, int rank, int ranks, long i) => ExactPattern.Value(op, rank, ranks, i);

    public static long Reduced(ReduceOp op, int ranks, long i) => ExactPattern.Reduced(op, ranks, i);

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
