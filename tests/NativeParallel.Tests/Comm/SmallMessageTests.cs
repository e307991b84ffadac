using NativeParallel.Comm;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// The small-message path: a synchronous one-shot all_reduce allocates nothing per call once warm (out of place
/// and in place), stays exact, and still checks agreement in its one message (a disagreeing rank fails every
/// rank, naming both calls).
/// </summary>
public sealed class SmallMessageTests
{
    [Theory]
    [InlineData(2, false)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    public void ASmallAllReduceAllocatesNothingPerCallAndIsExact(int ranks, bool inPlace)
    {
        const int count = 256, calls = 200;
        var allocated = new long[ranks];
        ExactInputs.OnThreads(ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(60)), g =>
        {
            using var input = ExactInputs.Make(DType.F32, count, i => ExactInputs.Value(ReduceOp.Sum, g.Rank, ranks, i));
            using var separate = inPlace ? null : Tensor.Empty(input.Device, DType.F32, count);
            var output = separate ?? input;
            for (int i = 0; i < 50; i++) Once(g, input, output, inPlace, ranks); // warm: JIT, pools, the queue
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < calls; i++) Once(g, input, output, inPlace, ranks);
            allocated[g.Rank] = GC.GetAllocatedBytesForCurrentThread() - before;
            var got = ExactInputs.Read(output);
            for (int i = 0; i < count; i++) Assert.Equal(ExactInputs.Reduced(ReduceOp.Sum, ranks, i), got[i]);
        });
        Assert.All(allocated, bytes => Assert.Equal(0, bytes));
    }

    // In place, the input is refilled first: each call must start from the rank's own values.
    private static void Once(ProcessGroup g, Tensor input, Tensor output, bool inPlace, int ranks)
    {
        if (inPlace)
            unsafe
            {
                var values = new Span<float>((void*)input.Pointer, checked((int)input.Count));
                for (int i = 0; i < values.Length; i++) values[i] = ExactInputs.Value(ReduceOp.Sum, g.Rank, ranks, i);
            }
        g.AllReduce(input, output);
    }

    [Fact]
    public void TheAgreementCheckTravelsInTheOneShotMessage()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, name: "small", timeout: TimeSpan.FromSeconds(20));
        var errors = new Exception?[2];
        ExactInputs.OnThreads(groups, g =>
        {
            using var t = ExactInputs.Make(DType.F32, g.Rank == 0 ? 256 : 255, i => i);
            try { g.AllReduce(t); }
            catch (CollectiveException e) { errors[g.Rank] = e; }
        });
        Assert.All(errors, e => Assert.Contains("all_reduce #0 in group 'small'", Assert.IsType<CollectiveException>(e).Message));
        Assert.Contains(errors, e => e!.Message.Contains("ranks disagree") && e.Message.Contains("f32 x 255") && e.Message.Contains("f32 x 256"));
    }
}
