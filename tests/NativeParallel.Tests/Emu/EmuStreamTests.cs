using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Tensors;
using NativeParallel.Tests.Comm;

namespace NativeParallel.Tests.Emu;

/// <summary>
/// The emulated device's streams run apart for real: a reader or writer on one stream that does not wait for an
/// event from another sees the wrong bytes (deferred order, every time), and with the event it sees the right ones
/// in both orders. The planted bugs below are the proof that a missing event is caught, not hidden.
/// </summary>
public sealed class EmuStreamTests
{
    private const int Count = 4099; // not a multiple of any block

    private static float[] Ones(float value) => Enumerable.Repeat(value, Count).ToArray();

    [Fact]
    public void AReaderThatSkipsTheProducersEventReadsStaleBytes()
    {
        Hardware.RequireEmu();
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Deferred };
        using var side = device.CreateStream();
        using var a = Tensor.FromFloats(device, Ones(1), DType.F32, Count);
        using var sum = Tensor.FromFloats(device, Ones(-7), DType.F32, Count); // what a reader sees too early
        using (device.UseStream(side)) device.Kernels.Add(a, a, sum);

        // Planted bug: the default stream reads the sum without waiting for the side stream.
        Assert.Equal(Ones(-7), sum.ToFloats());

        // The fix: an event recorded after the producer, waited for by the reader.
        using var produced = device.CreateEvent();
        using (device.UseStream(side)) device.Kernels.Add(a, a, sum);
        produced.Record(side);
        device.DefaultStream.Wait(produced);
        Assert.Equal(Ones(2), sum.ToFloats());
    }

    [Fact]
    public void AWriterThatSkipsTheReadersEventOverwritesWhatItWasStillToRead()
    {
        Hardware.RequireEmu();
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Deferred };
        using var side = device.CreateStream();
        using var a = Tensor.FromFloats(device, Ones(1), DType.F32, Count);
        using var sum = Tensor.Empty(device, DType.F32, Count);
        var five = Tensor.FromFloats(device, Ones(5), DType.F32, Count);

        // Planted bug: the side stream is to read a, and the host overwrites a without waiting for it.
        using (device.UseStream(side)) device.Kernels.Add(a, a, sum);
        device.CopyDeviceToDevice(five.Pointer, a.Pointer, a.Bytes);
        side.Synchronize();
        Assert.Equal(Ones(10), sum.ToFloats());

        // The fix: the writer waits for an event recorded after the reader.
        device.CopyDeviceToDevice(five.Pointer, a.Pointer, a.Bytes); // a = 5 again, then read it on the side
        using var read = device.CreateEvent();
        using (device.UseStream(side)) device.Kernels.Add(a, a, sum);
        read.Record(side);
        device.DefaultStream.Wait(read);
        device.Memset(a.Pointer, 0, a.Bytes);
        Assert.Equal(Ones(10), sum.ToFloats());
        five.Dispose();
    }

    [Theory]
    [InlineData(EmuStreamOrder.Concurrent)]
    [InlineData(EmuStreamOrder.Deferred)]
    public void EventsOrderAChainOfStreamsInEitherOrder(EmuStreamOrder order)
    {
        Hardware.RequireEmu();
        using var device = new EmuDevice { StreamOrder = order };
        using var first = device.CreateStream();
        using var second = device.CreateStream();
        using var done = device.CreateEvent();
        using var a = Tensor.FromFloats(device, Ones(3), DType.F32, Count);
        using var b = Tensor.Empty(device, DType.F32, Count);
        using var c = Tensor.Empty(device, DType.F32, Count);
        for (int round = 0; round < 20; round++)
        {
            using (device.UseStream(first)) device.Kernels.Add(a, a, b);        // b = 6
            done.Record(first);
            second.Wait(done);
            using (device.UseStream(second)) device.Kernels.Add(b, a, c);       // c = 9
            done.Record(second);
            first.Wait(done);
            using (device.UseStream(first)) device.Kernels.Add(c, c, b);        // b = 18
            // A copy to the host on a stream is ordered after that stream's work.
            var host = new byte[b.Bytes];
            device.CopyDeviceToHost(b.Pointer, host, first);
            Assert.Equal(Ones(18), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(host).ToArray());
        }
        device.Synchronize();
        Assert.Equal(Ones(9), c.ToFloats());
    }

    [Fact]
    public void AFailureOnAStreamIsReportedToWhoeverWaitsForIt()
    {
        Hardware.RequireEmu();
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Concurrent };
        using var side = device.CreateStream();
        using var a = Tensor.FromFloats(device, Ones(1), DType.F32, Count);
        using var wrongShape = Tensor.Empty(device, DType.F32, Count);
        // A queued launch whose kernel file does not exist fails when the module is built, on the issuing thread.
        using (device.UseStream(side))
        {
            var ex = Assert.ThrowsAny<Exception>(() => device.Launch("no_such_kernel.cu", "f_f32", new NativeParallel.Kernels.Gpu.Dim3(1), new NativeParallel.Kernels.Gpu.Dim3(1), 0, 0));
            Assert.Contains("no_such_kernel", ex.Message);
        }
        // A missing entry point is found when the stream runs it: the stream's next wait reports it.
        using (device.UseStream(side)) device.Launch("residual_add.cu", "no_such_entry", new NativeParallel.Kernels.Gpu.Dim3(1), new NativeParallel.Kernels.Gpu.Dim3(1), 0, 0);
        var failure = Assert.ThrowsAny<Exception>(side.Synchronize);
        Assert.Contains("no_such_entry", failure.ToString());
        // Sticky, as on CUDA: later work on the stream is refused with the first error.
        var later = Assert.ThrowsAny<Exception>(() => device.Memset(a.Pointer, 0, a.Bytes, side));
        Assert.Contains("no_such_entry", later.ToString());
    }

    [Fact]
    public void CurrentStreamScopesNestAndTravelToAsyncWork()
    {
        Hardware.RequireEmu();
        using var device = new EmuDevice();
        using var s1 = device.CreateStream();
        using var s2 = device.CreateStream();
        Assert.Same(device.DefaultStream, device.CurrentStream());
        using (device.UseStream(s1))
        {
            Assert.Same(s1, device.CurrentStream());
            using (device.UseStream(s2)) Assert.Same(s2, device.CurrentStream());
            Assert.Same(s1, device.CurrentStream());
            var captured = CurrentStreams.Capture();
            IDeviceStream? seen = null;
            var thread = new Thread(() =>
            {
                using var restored = CurrentStreams.Restore(captured);
                seen = device.CurrentStream();
            });
            thread.Start();
            thread.Join();
            Assert.Same(s1, seen);
        }
        Assert.Same(device.DefaultStream, device.CurrentStream());
        using var other = new EmuDevice();
        Assert.Throws<ArgumentException>(() => device.UseStream(other.DefaultStream));
    }

    [Theory]
    [InlineData("all_reduce", false)]
    [InlineData("all_gather", false)]
    [InlineData("reduce_scatter", false)]
    [InlineData("broadcast", false)]
    [InlineData("all_reduce", true)]
    [InlineData("all_gather", true)]
    public void DeviceDirectCollectivesOnDeferredStreamsWaitForEveryPeersProducer(string op, bool oneStream)
    {
        // Each rank produces its input on its own stream, which runs only when a peer's wait (an event) needs it:
        // a collective that read a peer's buffer without waiting for that peer's event would read -7s. With one
        // stream for all ranks, the ranks skip their events and the host order of their enqueues is what orders them.
        Hardware.RequireEmu();
        const int ranks = 3, block = 1001;
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Deferred };
        using var shared = oneStream ? device.CreateStream() : null;
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(60));
        using var turns = new Barrier(ranks);
        ExactInputs.OnThreads(groups, g =>
        {
            using var own = oneStream ? null : device.CreateStream();
            var stream = shared ?? own!;
            int inCount = op == "reduce_scatter" ? block * ranks : block;
            int outCount = op == "all_gather" ? block * ranks : op == "reduce_scatter" ? block : block;
            using var seed = Tensor.FromFloats(device, Enumerable.Range(0, inCount).Select(i => (float)(g.Rank + 1 + i % 7)).ToArray(), DType.F32, inCount);
            using var input = Tensor.FromFloats(device, Enumerable.Repeat(-7f, inCount).ToArray(), DType.F32, inCount);
            using var output = Tensor.FromFloats(device, Enumerable.Repeat(-7f, outCount).ToArray(), DType.F32, outCount);
            var host = new byte[output.Bytes];
            using (device.UseStream(stream))
            {
                device.Kernels.Add(seed, seed, input); // input = 2 (rank + 1 + i % 7), queued on the rank's stream
                Task call = op switch
                {
                    "all_reduce" => g.AllReduceAsync(input, output),
                    "all_gather" => g.AllGatherAsync(input, output),
                    "reduce_scatter" => g.ReduceScatterAsync(input, output),
                    _ => g.BroadcastAsync(input, output, root: 1),
                };
                call.Wait();
                // Ranks read their results one at a time, the last rank first: its stream runs while every peer's
                // stream is still held back, so only the collective's own event waits can make its peers' inputs ready.
                for (int turn = ranks - 1; turn >= 0; turn--)
                {
                    if (turn == g.Rank) device.CopyDeviceToHost(output.Pointer, host); // on the rank's stream: after the collective
                    turns.SignalAndWait(TimeSpan.FromSeconds(60));
                }
            }
            var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(host).ToArray();
            float Input(int rank, int i) => 2f * (rank + 1 + i % 7);
            var expected = op switch
            {
                "all_reduce" => Enumerable.Range(0, block).Select(i => Enumerable.Range(0, ranks).Sum(r => Input(r, i))).ToArray(),
                "all_gather" => Enumerable.Range(0, block * ranks).Select(j => Input(j / block, j % block)).ToArray(),
                "reduce_scatter" => Enumerable.Range(0, block).Select(i => Enumerable.Range(0, ranks).Sum(r => Input(r, g.Rank * block + i))).ToArray(),
                _ => Enumerable.Range(0, block).Select(i => Input(1, i)).ToArray(),
            };
            Assert.Equal(expected, got);
            Assert.Equal(1, g.DeviceDirectCalls);
        });
        foreach (var g in groups) g.Dispose();
    }
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AnAsyncCollectivesWaitOnAStreamOrdersThatStreamAfterIt(bool waitOnTheStream)
    {
        // Each rank all-reduces on a communication stream and reads the result on a compute stream. Deferred streams
        // run only when a wait or a host read needs them, so the compute stream's copy sees the sum only if
        // work.Wait(compute) ordered it after the collective; the host-side Wait() alone leaves it reading -7s.
        Hardware.RequireEmu();
        const int ranks = 2, count = 777;
        using var device = new EmuDevice { StreamOrder = EmuStreamOrder.Deferred };
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(60));
        ExactInputs.OnThreads(groups, g =>
        {
            using var communication = device.CreateStream();
            using var compute = device.CreateStream();
            using var input = Tensor.FromFloats(device, Enumerable.Range(0, count).Select(i => (float)(g.Rank + 1 + i % 5)).ToArray(), DType.F32, count);
            using var output = Tensor.FromFloats(device, Enumerable.Repeat(-7f, count).ToArray(), DType.F32, count);
            CollectiveWork work;
            using (device.UseStream(communication)) work = g.AllReduceAsync(input, output);
            if (waitOnTheStream) work.Wait(compute);
            else work.Wait();
            var host = new byte[output.Bytes];
            device.CopyDeviceToHost(output.Pointer, host, compute);
            var got = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(host).ToArray();
            var sums = Enumerable.Range(0, count).Select(i => (float)(1 + 2 + 2 * (i % 5))).ToArray();
            if (waitOnTheStream) Assert.Equal(sums, got);
            else Assert.Contains(-7f, got);
            communication.Synchronize();
        });
        foreach (var g in groups) g.Dispose();
    }
}
