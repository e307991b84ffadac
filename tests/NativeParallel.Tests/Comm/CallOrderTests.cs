using System.Diagnostics;
using NativeParallel.Comm;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// One order per group: synchronous and async calls mixed on one group run in the order they were issued, each
/// exact; a failed async call surfaces on its task and later calls fail at once instead of hanging.
/// </summary>
public sealed class CallOrderTests
{
    private static readonly DType[] DTypes = [DType.F32, DType.BF16, DType.F16, DType.I32, DType.I64];
    private static readonly string[] Ops = ["all_reduce", "all_gather", "broadcast", "reduce_scatter", "reduce", "all_to_all", "send_recv"];

    // Small integers: sums and extremes over up to 3 ranks are exact in every dtype.
    private static long Value(int step, int rank, long i) => (step + 3 * rank + 5 * i) % 11 - 5;

    // One issued call: what this rank expects in its output once the call has run.
    private sealed record Issued(int Step, string Op, Tensor Output, long[]? Expected, Task? Task, IDisposable[] Owned);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void SyncAndAsyncCallsOnOneGroupRunInIssueOrderExactlyUnderLoad(int ranks)
    {
        ulong seed = Hardware.Seed;
        // Small rings: most messages take many chunks, so two calls using the engine at once would interleave bytes.
        var groups = ProcessGroup.CreateThreadGroup(ranks, name: "order", timeout: TimeSpan.FromSeconds(60), ringBytes: 16 << 10);
        using var load = new BusyThreads(2);
        try
        {
            ExactInputs.OnThreads(groups, g => MixedSchedule(g, seed, steps: 160));
        }
        catch (Exception e)
        {
            throw new Exception($"reproduce with NATIVEPARALLEL_TEST_SEED={seed}", e);
        }
        finally
        {
            foreach (var g in groups) g.Dispose();
        }
    }

    private static void MixedSchedule(ProcessGroup g, ulong seed, int steps)
    {
        // The same generator on every rank: every rank issues the same calls in the same order.
        var random = new Random((int)(seed % int.MaxValue));
        int n = g.Size, r = g.Rank;
        var inFlight = new List<Issued>();
        for (int step = 0; step < steps; step++)
        {
            string op = Ops[random.Next(Ops.Length)];
            var dtype = DTypes[random.Next(DTypes.Length)];
            long count = random.Next(4) switch { 0 => random.Next(3), 1 => random.Next(1, 200), 2 => random.Next(1, 5_000), _ => random.Next(5_000, 60_000) };
            bool async = random.Next(2) == 0;
            int root = random.Next(n);
            bool waitOne = random.Next(4) == 0; // drawn on every rank, used or not, so the generators stay in step
            // null: this rank takes no part in the step (a send between two other ranks).
            if (Issue(g, step, op, dtype, count, root, async) is not { } issued) continue;
            if (issued.Task is null)
            {
                // A synchronous call returns only after every call issued before it on this group has finished.
                foreach (var earlier in inFlight)
                    Assert.True(earlier.Task!.IsCompleted, $"rank {r}: sync {op} at step {step} returned before async {earlier.Op} of step {earlier.Step}");
                Check(issued, r);
            }
            else inFlight.Add(issued);
            // Wait for the oldest async calls now and then, so some stay queued behind later sync calls.
            while (inFlight.Count > 6 || (waitOne && inFlight.Count > 0))
            {
                waitOne = false;
                var oldest = inFlight[0];
                inFlight.RemoveAt(0);
                oldest.Task!.Wait();
                Check(oldest, r);
            }
        }
        foreach (var rest in inFlight)
        {
            rest.Task!.Wait();
            Check(rest, r);
        }
    }

    private static Issued? Issue(ProcessGroup g, int step, string op, DType dtype, long count, int root, bool async)
    {
        int n = g.Size, r = g.Rank;
        Tensor Inputs(long elements, Func<long, long> value) => ExactInputs.Make(dtype, elements, value);
        Tensor Poisoned(long elements) => ExactInputs.Make(dtype, elements, _ => 99);
        long[] Host(long elements, Func<long, long> value) => Enumerable.Range(0, (int)elements).Select(i => value(i)).ToArray();
        switch (op)
        {
            case "all_reduce":
            {
                var reduce = step % 2 == 0 ? ReduceOp.Sum : ReduceOp.Max;
                var input = Inputs(count, i => Value(step, r, i));
                long Reduced(long i) => Enumerable.Range(0, n).Select(p => Value(step, p, i)).Aggregate((a, b) => reduce == ReduceOp.Sum ? a + b : Math.Max(a, b));
                // In place on even steps: the input is the output.
                var output = step % 4 < 2 ? input : Poisoned(count);
                var task = async ? g.AllReduceAsync(input, output, reduce) : Sync(() => g.AllReduce(input, output, reduce));
                return new Issued(step, op, output, Host(count, Reduced), task, [input, output]);
            }
            case "all_gather":
            {
                var input = Inputs(count, i => Value(step, r, i));
                var output = Poisoned(count * n);
                var task = async ? g.AllGatherAsync(input, output) : Sync(() => g.AllGather(input, output));
                return new Issued(step, op, output, Host(count * n, i => Value(step, (int)(i / count), i % count)), task, [input, output]);
            }
            case "broadcast":
            {
                var tensor = r == root ? Inputs(count, i => Value(step, root, i)) : Poisoned(count);
                var task = async ? g.BroadcastAsync(tensor, root) : Sync(() => g.Broadcast(tensor, root));
                return new Issued(step, op, tensor, Host(count, i => Value(step, root, i)), task, [tensor]);
            }
            case "reduce_scatter":
            {
                var input = Inputs(count * n, i => Value(step, r, i));
                var output = Poisoned(count);
                var task = async ? g.ReduceScatterAsync(input, output) : Sync(() => g.ReduceScatter(input, output));
                return new Issued(step, op, output, Host(count, i => Enumerable.Range(0, n).Sum(p => Value(step, p, r * count + i))), task, [input, output]);
            }
            case "reduce":
            {
                var input = Inputs(count, i => Value(step, r, i));
                var output = Poisoned(count);
                var task = async ? g.ReduceAsync(input, output, root) : Sync(() => g.Reduce(input, output, root));
                // Off the root the output is left as it was.
                var expected = r == root ? Host(count, i => Enumerable.Range(0, n).Sum(p => Value(step, p, i))) : Host(count, _ => 99);
                return new Issued(step, op, output, expected, task, [input, output]);
            }
            case "all_to_all":
            {
                // Block p of rank q's input goes to rank p; element j of that block is Value(step, q, p·count + j).
                var input = Inputs(count * n, i => Value(step, r, i));
                var output = Poisoned(count * n);
                var task = async ? g.AllToAllAsync(input, output) : Sync(() => g.AllToAll(input, output));
                return new Issued(step, op, output, Host(count * n, i => count == 0 ? 0 : Value(step, (int)(i / count), r * count + i % count)), task, [input, output]);
            }
            default:
            {
                // Point-to-point: rank 0 sends to the last rank; the others have nothing to do at this step.
                int last = n - 1;
                if (n == 1 || (r != 0 && r != last)) return null;
                if (r == 0)
                {
                    var sent = Inputs(count, i => Value(step, 0, i));
                    var task = async ? g.SendAsync(sent, last, tag: step) : Sync(() => g.Send(sent, last, tag: step));
                    return new Issued(step, op, sent, null, task, [sent]);
                }
                var received = Poisoned(count);
                var got = async ? g.RecvAsync(received, 0, tag: step) : Sync(() => g.Recv(received, 0, tag: step));
                return new Issued(step, op, received, Host(count, i => Value(step, 0, i)), got, [received]);
            }
        }
    }

    // A synchronous call has run by the time Issue returns; null marks it synchronous.
    private static Task? Sync(Action call)
    {
        call();
        return null;
    }

    private static void Check(Issued issued, int rank)
    {
        if (issued.Expected is { } expected)
        {
            var got = ExactInputs.Read(issued.Output);
            Assert.Equal(expected.Length, got.Length);
            for (int i = 0; i < got.Length; i++)
                if (got[i] != expected[i])
                    Assert.Fail($"rank {rank}: {issued.Op} at step {issued.Step} ({(issued.Task is null ? "sync" : "async")}), " +
                                $"{issued.Output.DType.Name()} x {got.Length}: element {i} is {got[i]}, expected {expected[i]}");
        }
        foreach (var owned in issued.Owned.Distinct()) owned.Dispose();
    }

    [Fact]
    public void AnAsyncCallWithBadArgumentsFailsOnItsTaskAndTheGroupGoesOn()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, name: "order", timeout: TimeSpan.FromSeconds(30));
        ExactInputs.OnThreads(groups, g =>
        {
            using var small = ExactInputs.Make(DType.F32, 3, i => i);
            var failed = g.AllGatherAsync(small, small); // output must hold 2 × 3 elements
            using var t = ExactInputs.Make(DType.I32, 5, i => i + g.Rank);
            g.AllReduce(t);
            Assert.True(failed.IsFaulted, "the bad call's task did not fail before the next call ran");
            Assert.Contains("Size × input", Assert.IsType<ArgumentException>(failed.Exception!.InnerException).Message);
            Assert.Equal([1, 3, 5, 7, 9], ExactInputs.Read(t));
            g.AllReduceAsync(t).Wait();
            Assert.Equal([2, 6, 10, 14, 18], ExactInputs.Read(t));
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void AFailedAsyncCollectiveFailsTheNextCallsAtOnceNamingThem()
    {
        // Timeout 60 s: everything below must end long before it, through the abort and the refusal, not the clock.
        var groups = ProcessGroup.CreateThreadGroup(3, name: "order", timeout: TimeSpan.FromSeconds(60));
        var clock = Stopwatch.StartNew();
        var refusals = new CollectiveException?[3];
        ExactInputs.OnThreads(groups, g =>
        {
            using var agreed = ExactInputs.Make(DType.F32, 100, i => i);
            g.AllReduceAsync(agreed).Wait(); // #0
            using var disagreeing = ExactInputs.Make(DType.F32, g.Rank == 1 ? 200 : 100, i => i);
            var failed = g.AllReduceAsync(disagreeing); // #1: rank 1 passes a different size
            using var gathered = ExactInputs.Make(DType.F32, 300, _ => 0);
            var queuedBehind = g.AllGatherAsync(agreed, gathered);
            var error = Assert.IsType<AggregateException>(Record.Exception(() => failed.Wait()));
            var first = Assert.IsType<CollectiveException>(error.InnerException);
            Assert.Equal(1, first.Sequence);
            // The next calls, queued or synchronous, are refused at once with what, where and what to do.
            var behind = Assert.IsType<CollectiveException>(Record.Exception(() => queuedBehind.Wait())!.InnerException);
            Assert.Equal(Collective.AllGather, behind.Collective);
            var sync = Assert.Throws<CollectiveException>(() => g.Broadcast(agreed, root: 0));
            Assert.Equal(Collective.Broadcast, sync.Collective);
            Assert.Equal(2, sync.Sequence);
            Assert.Equal(g.Rank, sync.Rank);
            Assert.Contains($"broadcast #2 in group 'order' was not run on rank {g.Rank} of 3: all_reduce #1 failed before it", sync.Message);
            Assert.Contains("dispose it and create a new one", sync.Message);
            Assert.DoesNotContain('\n', sync.Message);
            refusals[g.Rank] = sync;
        });
        foreach (var g in groups) g.Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}: something waited for the 60 s timeout");
        Assert.All(refusals, Assert.NotNull);
    }

    [Fact]
    public void DisposeWithACallQueuedForAnAbsentPeerEndsAfterTheTimeout()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, name: "order", timeout: TimeSpan.FromSeconds(2));
        using var t = ExactInputs.Make(DType.F32, 10, i => i);
        var clock = Stopwatch.StartNew();
        var never = groups[0].AllReduceAsync(t); // rank 1 never calls it
        var behind = groups[0].AllReduceAsync(t);
        var dispose = new Thread(groups[0].Dispose);
        dispose.Start();
        Assert.True(dispose.Join(TimeSpan.FromSeconds(30)), "Dispose hung with a call queued for an absent peer");
        Assert.Contains("timed out after 2 s", Assert.IsType<CollectiveException>(never.Exception!.InnerException).Message);
        Assert.Contains("was not run", Assert.IsType<CollectiveException>(behind.Exception!.InnerException).Message);
        void CallAfterDispose() => groups[0].AllReduceAsync(t);
        Assert.Throws<ObjectDisposedException>(CallAfterDispose);
        groups[1].Dispose();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
    }

    // Threads that keep the cores busy, so rank threads and queue workers are preempted at arbitrary points.
    private sealed class BusyThreads : IDisposable
    {
        private volatile bool _stop;
        private readonly Thread[] _threads;

        public BusyThreads(int count)
        {
            _threads = Enumerable.Range(0, count).Select(_ => new Thread(() =>
            {
                double x = 1;
                while (!_stop)
                {
                    for (int i = 0; i < 100_000; i++) x = Math.Sqrt(x + i);
                    Thread.Yield();
                }
                GC.KeepAlive(x);
            }) { IsBackground = true, Priority = ThreadPriority.BelowNormal }).ToArray();
            foreach (var t in _threads) t.Start();
        }

        public void Dispose()
        {
            _stop = true;
            foreach (var t in _threads) t.Join();
        }
    }
}
