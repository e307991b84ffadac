using NativeParallel.Comm;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Devices;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Comm;

/// <summary>
/// SendRecv with both peers this rank is a local copy, as NCCL's send and recv to self in one group: exact on
/// host tensors of thread ranks (a group of one and of three, sync and async in the group's order) and of ranks
/// joined over shm and over tcp, on emulated-device tensors (device to device, nothing staged, nothing on the
/// links) and from one device to another; tags, dtype and size checked as between ranks, before anything moves;
/// a Send or Recv to itself alone, or one peer itself and the other not, still refused, the group still usable.
/// </summary>
public sealed class SendRecvToItselfTests
{
    private static readonly Lazy<EmuDevice> s_emu = new(() => new EmuDevice());

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ThreadRanksCopyToThemselvesExactlyInTheGroupsOrder(int ranks)
    {
        var groups = ProcessGroup.CreateThreadGroup(ranks, timeout: TimeSpan.FromSeconds(30));
        ExactInputs.OnThreads(groups, g =>
        {
            int r = g.Rank;
            using var send = ExactInputs.Make(DType.F32, 70_001, i => 7 * r + i % 11);
            using var receive = ExactInputs.Make(DType.F32, 70_001, _ => -1);
            long sent = g.BytesSent;
            g.SendRecv(send, r, receive, r, tag: 3);
            Assert.Equal(ExactInputs.Read(send), ExactInputs.Read(receive));
            Assert.Equal(sent, g.BytesSent); // nothing crossed a link

            // Async, after an async all-reduce of the tensor it sends: it runs once that has finished.
            using var t = ExactInputs.Make(DType.I64, 1000, i => r + i);
            using var copy = ExactInputs.Make(DType.I64, 1000, _ => -1);
            var reduce = g.AllReduceAsync(t, t, ReduceOp.Sum);
            var self = g.SendRecvAsync(t, r, copy, r, tag: 4);
            Task.WaitAll(reduce.Task, self.Task);
            Assert.Equal(Enumerable.Range(0, 1000).Select(i => (long)ranks * i + ranks * (ranks - 1) / 2), ExactInputs.Read(copy));

            // Empty, and one tensor both sent and received: nothing to do.
            using var empty = ExactInputs.Make(DType.F32, 0, _ => 0);
            using var empty2 = ExactInputs.Make(DType.F32, 0, _ => 0);
            g.SendRecv(empty, r, empty2, r);
            g.SendRecv(send, r, send, r);
            Assert.Equal(ExactInputs.Read(receive), ExactInputs.Read(send));

            // The ranks still agree on the collectives after their messages to themselves.
            g.Barrier();
        });
        foreach (var g in groups) g.Dispose();
    }

    [Fact]
    public void DeviceTensorsAreCopiedOnTheirDeviceWithNothingStaged()
    {
        var emu = s_emu.Value;
        ProcessGroup.RunOnThreadRanks(2, g =>
        {
            int r = g.Rank;
            var values = Enumerable.Range(0, 33_333).Select(i => (float)(r * 100 + i % 17)).ToArray();
            using var send = Tensor.FromFloats(emu, values, DType.F32, values.Length);
            using var receive = Tensor.FromFloats(emu, new float[values.Length], DType.F32, values.Length);
            long sent = g.BytesSent;
            g.SendRecv(send, r, receive, r, tag: 1);
            Assert.Equal(values, receive.ToFloats());
            Assert.Equal(0, g.StagedBytes);
            Assert.Equal(sent, g.BytesSent);
            // From the device to host memory: through the host, still exact.
            using var host = Tensor.FromFloats(CpuDevice.Instance, new float[values.Length], DType.F32, values.Length);
            g.SendRecvAsync(send, r, host, r).Wait();
            Assert.Equal(values, host.ToFloats());
        }, timeout: TimeSpan.FromSeconds(30));
    }

    [Theory]
    [InlineData("shm")]
    [InlineData("tcp")]
    public void RanksJoinedOverShmOrTcpSendToThemselvesAndToEachOther(string transport)
    {
        // Two ranks joined as a launcher's would be (the store on loopback), here threads of this process: each
        // sends to itself, then to the other, in one order.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var groups = new ProcessGroup[2];
        var joins = Enumerable.Range(0, 2).Select(r => Task.Run(() =>
            groups[r] = ProcessGroup.Join(new LaunchEnvironment(r, 2, r, 2, "127.0.0.1", port, "torchrun"), "self", transport))).ToArray();
        Assert.True(Task.WaitAll(joins, TimeSpan.FromMinutes(1)), "the two ranks did not join");
        try
        {
            ExactInputs.OnThreads(groups, g =>
            {
                int r = g.Rank, other = 1 - r;
                using var send = ExactInputs.Make(DType.I32, 300_001, i => 1000 * r + i % 997);
                using var mine = ExactInputs.Make(DType.I32, 300_001, _ => -1);
                using var theirs = ExactInputs.Make(DType.I32, 300_001, _ => -1);
                long sent = g.BytesSent;
                g.SendRecv(send, r, mine, r, tag: 9);
                Assert.Equal(sent, g.BytesSent);
                g.SendRecv(send, other, theirs, other, tag: 9);
                Assert.True(g.BytesSent >= sent + send.Bytes, "the message to the other rank did not cross the link");
                Assert.Equal(ExactInputs.Read(send), ExactInputs.Read(mine));
                Assert.Equal(Enumerable.Range(0, 300_001).Select(i => 1000L * other + i % 997), ExactInputs.Read(theirs));
                g.Barrier();
            });
        }
        finally
        {
            foreach (var g in groups) g?.Dispose();
        }
    }

    [Fact]
    public void MismatchesAndHalfMessagesToItselfAreRefusedBeforeAnythingMoves()
    {
        var groups = ProcessGroup.CreateThreadGroup(2, timeout: TimeSpan.FromSeconds(30));
        var g = groups[0];
        using var a = ExactInputs.Make(DType.F32, 8, i => i);
        using var b = ExactInputs.Make(DType.F32, 8, _ => -1);
        using var shorter = ExactInputs.Make(DType.F32, 7, _ => -1);
        using var ints = ExactInputs.Make(DType.I32, 8, _ => -1);
        Assert.Contains("it sends tag 1, f32 x 32 bytes but receives tag 2, f32 x 32 bytes",
            Assert.Throws<ArgumentException>(() => g.SendRecv(a, 0, 1, b, 0, 2)).Message);
        Assert.Contains("but receives tag 0, f32 x 28 bytes", Assert.Throws<ArgumentException>(() => g.SendRecv(a, 0, shorter, 0)).Message);
        Assert.Contains("but receives tag 0, i32 x 32 bytes", Assert.Throws<ArgumentException>(() => g.SendRecv(a, 0, ints, 0)).Message);
        Assert.Contains("overlap", Assert.Throws<ArgumentException>(() => g.SendRecv(a.Narrow(0, 0, 4), 0, a.Narrow(0, 2, 4), 0)).Message);
        Assert.Contains("both peers are rank 0 or neither", Assert.Throws<ArgumentException>(() => g.SendRecv(a, 0, b, 1)).Message);
        Assert.Contains("both peers are rank 0 or neither", Assert.Throws<ArgumentException>(() => g.SendRecv(a, 1, b, 0)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => g.SendRecv(a, 0, b, 2));
        Assert.Contains("a message to itself is a SendRecv with both peers 0", Assert.Throws<ArgumentOutOfRangeException>(() => g.Send(a, 0)).Message);
        Assert.Contains("a message to itself is a SendRecv with both peers 0", Assert.Throws<ArgumentOutOfRangeException>(() => g.Recv(b, 0)).Message);
        Assert.Equal(0, g.BytesSent);
        // Nothing failed the group: a message to itself still goes.
        g.SendRecv(a, 0, b, 0);
        Assert.Equal(ExactInputs.Read(a), ExactInputs.Read(b));
        foreach (var group in groups) group.Dispose();
    }
}
