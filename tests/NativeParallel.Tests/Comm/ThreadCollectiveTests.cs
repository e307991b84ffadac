using NativeParallel.Comm;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>Every collective, dtype and op with ranks as threads, world sizes 1 to 5, exact checks.</summary>
public sealed class ThreadCollectiveTests
{
    private static readonly DType[] DTypes = [DType.F32, DType.BF16, DType.F16, DType.I32, DType.I64];
    private static readonly long[] Counts = [0, 1, 7, 1000, 300_001];

    public static TheoryData<int, DType, ReduceOp> AllReduceCases =>
        new(from n in new[] { 1, 2, 3, 4, 5 } from d in DTypes from op in Enum.GetValues<ReduceOp>() select (n, d, op));

    [Theory]
    [MemberData(nameof(AllReduceCases))]
    public void AllReduceIsExact(int ranks, DType dtype, ReduceOp op)
    {
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(60), ringBytes: 64 << 10);
        ExactInputs.OnThreads(groups, g =>
        {
            foreach (long count in Counts)
            {
                using var input = ExactInputs.Make(dtype, count, i => ExactInputs.Value(op, g.Rank, ranks, i));
                using var output = ExactInputs.Make(dtype, count, _ => 99);
                g.AllReduce(input, output, op);
                AssertExact(output, i => ExactInputs.Reduced(op, ranks, i), $"all_reduce {op} {dtype} n={ranks} count={count} rank {g.Rank}");
                g.AllReduce(input, op); // in place
                AssertExact(input, i => ExactInputs.Reduced(op, ranks, i), $"in-place all_reduce {op} {dtype} n={ranks} count={count}");
            }
        });
        foreach (var g in groups) g.Dispose();
    }

    public static TheoryData<int, DType> SizesAndTypes => new(from n in new[] { 1, 2, 3, 5 } from d in DTypes select (n, d));

    [Theory]
    [MemberData(nameof(SizesAndTypes))]
    public void GatherScatterBroadcastReduceAllToAllAreExact(int ranks, DType dtype)
    {
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(10), ringBytes: 64 << 10);
        ExactInputs.OnThreads(groups, g =>
        {
            int r = g.Rank;
            foreach (long count in new long[] { 0, 1, 33, 20_001 })
            {
                string where = $"{dtype} n={ranks} count={count} rank {r}";
                using (var input = ExactInputs.Make(dtype, count, i => r * 10 + i % 10))
                using (var gathered = ExactInputs.Make(dtype, count * ranks, _ => -1))
                {
                    g.AllGather(input, gathered);
                    AssertExact(gathered, i => i / Math.Max(count, 1) * 10 + i % Math.Max(count, 1) % 10, "all_gather " + where);
                }
                using (var input = ExactInputs.Make(dtype, count * ranks, i => ExactInputs.Value(ReduceOp.Sum, r, ranks, i)))
                using (var mine = ExactInputs.Make(dtype, count, _ => -1))
                {
                    g.ReduceScatter(input, mine, ReduceOp.Sum);
                    AssertExact(mine, i => ExactInputs.Reduced(ReduceOp.Sum, ranks, r * count + i), "reduce_scatter " + where);
                }
                int root = ranks - 1;
                using (var t = ExactInputs.Make(dtype, count, i => r == root ? i % 13 : -7))
                {
                    g.Broadcast(t, root);
                    AssertExact(t, i => i % 13, "broadcast " + where);
                }
                using (var input = ExactInputs.Make(dtype, count, i => ExactInputs.Value(ReduceOp.Max, r, ranks, i)))
                using (var output = ExactInputs.Make(dtype, count, _ => 55))
                {
                    g.Reduce(input, output, root: 0, ReduceOp.Max);
                    if (r == 0) AssertExact(output, i => ExactInputs.Reduced(ReduceOp.Max, ranks, i), "reduce " + where);
                    else AssertExact(output, _ => 55, "reduce leaves non-root outputs alone " + where);
                }
                using (var input = ExactInputs.Make(dtype, count * ranks, i => r * 8 + i / Math.Max(count, 1)))
                using (var output = ExactInputs.Make(dtype, count * ranks, _ => -1))
                {
                    g.AllToAll(input, output);
                    // Block p of the output came from rank p, which sent its block r (values stay exact in bf16).
                    AssertExact(output, i => i / Math.Max(count, 1) * 8 + r, "all_to_all " + where);
                }
            }
            g.Barrier();
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void VariableAllToAllAndTaggedSendRecv()
    {
        const int ranks = 3;
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(30));
        ExactInputs.OnThreads(groups, g =>
        {
            int r = g.Rank;
            // Rank r sends (p + 1) * (r + 1) elements to rank p, each holding the value 10 r + p.
            long[] send = Enumerable.Range(0, ranks).Select(p => (long)(p + 1) * (r + 1)).ToArray();
            long[] receive = Enumerable.Range(0, ranks).Select(p => (long)(r + 1) * (p + 1)).ToArray();
            var sendValues = Enumerable.Range(0, ranks).SelectMany(p => Enumerable.Repeat(10L * r + p, (int)send[p])).ToArray();
            using var input = ExactInputs.Make(DType.I64, sendValues.Length, i => sendValues[i]);
            using var output = ExactInputs.Make(DType.I64, receive.Sum(), _ => -1);
            g.AllToAll(input, send, output, receive);
            var expected = Enumerable.Range(0, ranks).SelectMany(p => Enumerable.Repeat(10L * p + r, (int)receive[p])).ToArray();
            Assert.Equal(expected, ExactInputs.Read(output));

            // A pipeline hop: rank r sends to r + 1 with tag r, receives from r - 1.
            using var message = ExactInputs.Make(DType.F32, 5000, i => r + i % 3);
            if (r > 0)
            {
                using var incoming = ExactInputs.Make(DType.F32, 5000, _ => 0);
                g.Recv(incoming, r - 1, tag: r - 1);
                AssertExact(incoming, i => r - 1 + i % 3, "recv");
            }
            if (r < ranks - 1) g.Send(message, r + 1, tag: r);
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void AsyncCollectivesCompleteInOrder()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(30));
        ExactInputs.OnThreads(groups, g =>
        {
            var tensors = Enumerable.Range(0, 4).Select(k => ExactInputs.Make(DType.F32, 1000, i => k + g.Rank)).ToArray();
            var tasks = tensors.Select(t => g.AllReduceAsync(t, t, ReduceOp.Sum).Task).ToArray();
            Task.WaitAll(tasks);
            for (int k = 0; k < tensors.Length; k++) AssertExact(tensors[k], _ => 2 * k + 1, $"async all_reduce {k}");
            Assert.Equal(4, g.Sequence);
        });
        foreach (var g in groups) g.Dispose();
    }

    private static void AssertExact(Tensor t, Func<long, long> expected, string what)
    {
        var got = ExactInputs.Read(t);
        for (long i = 0; i < got.Length; i++)
            if (got[i] != expected(i)) Assert.Fail($"{what}: element {i} is {got[i]}, expected {expected(i)}");
    }
}
