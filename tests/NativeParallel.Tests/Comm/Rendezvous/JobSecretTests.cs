using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Comm.Transports;

namespace NativeParallel.Tests.Comm.Rendezvous;

/// <summary>
/// Only the job's own ranks get in: rank 0's store and the tcp transport's listeners drop a connection with a
/// wrong secret, none, garbage, or silence (one log line each) and go on serving the ranks; the connecting
/// side of a wrong secret fails in one line; a busy store port is one clear line.
/// </summary>
public sealed class JobSecretTests
{
    private static readonly JobSecret Ours = JobSecret.FromText("our job");
    private static readonly JobSecret Theirs = JobSecret.FromText("another job");
    private static readonly TimeSpan Minute = TimeSpan.FromSeconds(60);

    [Fact]
    public void AWrongSecretIsRefusedOnBothSidesAndTheStoreGoesOn()
    {
        var log = new ConcurrentQueue<string>();
        int port = FreePort();
        using var host = TcpStore.Connect("127.0.0.1", port, host: true, Minute, Ours, refusals: log.Enqueue);
        var clock = Stopwatch.StartNew();
        var refused = Assert.Throws<AuthenticationException>(() => TcpStore.Connect("127.0.0.1", port, host: false, Minute, Theirs));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the refusal took {clock.Elapsed}; it must not wait for the rendezvous timeout");
        Assert.Contains($"rank 0's store at 127.0.0.1:{port} refused this rank's job secret", refused.Message);
        Assert.DoesNotContain('\n', refused.Message);
        AssertLogged(log, "proved another job secret");
        AssertStoreServes(port, host);
    }

    [Fact]
    public void AConnectionWithoutAHandshakeOrWithGarbageIsDroppedAndLogged()
    {
        var log = new ConcurrentQueue<string>();
        int port = FreePort();
        using var host = TcpStore.Connect("127.0.0.1", port, host: true, Minute, Ours, refusals: log.Enqueue);
        using (var silent = Connected(port)) { } // connects and closes: no handshake
        AssertLogged(log, "closed the connection without a handshake");
        // The store's own request format (op, key length, ...) without the handshake, then random bytes.
        using var oldProtocol = Connected(port);
        oldProtocol.Send([2, 3, 0, (byte)'j', (byte)'o', (byte)'b', 0, 0, 0, 0, 0, 0, 0, 0]);
        AssertLogged(log, "sent bytes that are not a NativeParallel handshake");
        using var garbage = Connected(port);
        garbage.Send(Enumerable.Range(0, 4096).Select(_ => (byte)Random.Shared.Next(256)).ToArray());
        AssertLogged(log, "not a NativeParallel handshake", count: 2);
        Assert.All(log, line => Assert.Matches($@"^rank 0's store on port {port} dropped a connection from 127\.0\.0\.1:\d+: it .*; the job goes on$", line));
        AssertStoreServes(port, host);
    }

    [Fact]
    public void ASilentConnectionDoesNotBlockTheStoreAndIsDroppedAtTheHandshakeDeadline()
    {
        var log = new ConcurrentQueue<string>();
        int port = FreePort();
        var limit = TimeSpan.FromSeconds(3);
        using var host = TcpStore.Connect("127.0.0.1", port, host: true, Minute, Ours, refusals: log.Enqueue, handshake: limit);
        using var loris = Connected(port);
        loris.Send("NP"u8); // two bytes of the magic, then nothing, ever
        using var silent = Connected(port);
        var clock = Stopwatch.StartNew();
        AssertStoreServes(port, host, limit);
        Assert.True(clock.Elapsed < limit, $"a rank waited {clock.Elapsed} behind a silent connection");
        Assert.Empty(log); // not yet: they still have time
        AssertLogged(log, "sent nothing within 3 s of connecting");
        AssertLogged(log, "sent 2 bytes of the handshake and then nothing for 3 s");
        // The store really closed them.
        loris.ReceiveTimeout = 5000;
        Assert.Equal(20, Drain(loris));
    }

    [Fact]
    public void ABusyStorePortIsOneClearLine()
    {
        using var squatter = new TcpListener(IPAddress.Any, 0);
        squatter.Start();
        int port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var e = Assert.Throws<IOException>(() => TcpStore.Connect("127.0.0.1", port, host: true, Minute, Ours));
        Assert.Equal($"rank 0 cannot host the rendezvous store on port {port}: the port is already in use, by another job or program; " +
                     "set MASTER_PORT to a free port on every rank", e.Message);
    }

    [Fact]
    public void TheTcpTransportAdmitsOnlyItsJobAndItsRanksStillConnect()
    {
        var log = new ConcurrentQueue<string>();
        int port = FreePort();
        var limit = TimeSpan.FromSeconds(3);
        using var store0 = TcpStore.Connect("127.0.0.1", port, host: true, Minute, Ours, refusals: log.Enqueue, handshake: limit);
        using var store1 = TcpStore.Connect("127.0.0.1", port, host: false, Minute, Ours, refusals: log.Enqueue, handshake: limit);
        var rank0 = Task.Run(() => TcpTransport.Create(store0, "secret-test", 0, 2, Minute));
        var parts = store1.Get("secret-test/addr/0", Minute).Split('|');
        var at = new IPEndPoint(IPAddress.Parse(parts[0]), int.Parse(parts[1]));
        // Before rank 1 arrives: a silent connection, garbage, and a rank of another job.
        using var silent = new Socket(SocketType.Stream, ProtocolType.Tcp);
        silent.Connect(at);
        using (var garbage = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            garbage.Connect(at);
            garbage.Send("GET / HTTP/1.1\r\n\r\n"u8);
            AssertLogged(log, "not a NativeParallel handshake");
        }
        using (var stranger = new Socket(SocketType.Stream, ProtocolType.Tcp))
        {
            stranger.Connect(at);
            var e = Assert.Throws<AuthenticationException>(() => JobHandshake.Prove(stranger, Theirs, "tcp", limit, "rank 0"));
            Assert.Contains("refused this rank's job secret", e.Message);
            AssertLogged(log, "proved another job secret");
        }
        Assert.False(rank0.IsCompleted);
        using var t1 = TcpTransport.Create(store1, "secret-test", 1, 2, Minute);
        Assert.True(rank0.Wait(Minute), "rank 0 never finished connecting");
        using var t0 = rank0.Result;
        Assert.All(log, line => Assert.Matches(@"^tcp rank 0 listening on \S+ dropped a connection from \S+: it .*; the job goes on$", line));
        // The real link carries bytes both ways.
        byte[] message = [1, 2, 3, 4, 5], back = new byte[5];
        Assert.Equal(5, Pump(t1.Link(0), message, t0.Link(1), back));
        Assert.Equal(message, back);
        AssertLogged(log, "sent nothing within 3 s of connecting");
    }

    [Fact]
    public void ARankOfAnotherJobCannotJoinAndTheJobRunsAsProcesses()
    {
        int port = FreePort();
        Dictionary<string, string> Rank(int rank, string secret) => new()
        {
            ["RANK"] = rank.ToString(), ["WORLD_SIZE"] = "2", ["LOCAL_RANK"] = rank.ToString(), ["LOCAL_WORLD_SIZE"] = "2",
            ["MASTER_ADDR"] = "127.0.0.1", ["MASTER_PORT"] = port.ToString(), [JobSecret.Variable] = secret,
            ["NATIVEPARALLEL_TIMEOUT_S"] = "60", ["NATIVEPARALLEL_TRANSPORT"] = "tcp",
        };
        string[] bench = ["bench", "collectives", "-b", "4K", "-e", "4K", "-n", "2", "-w", "1"];
        var rank0 = Task.Run(() => ProcessCollectiveTests.Run("dotnet", Rank(0, "job A"), [CliPath, .. bench]));
        var intruder = ProcessCollectiveTests.Run("dotnet", Rank(1, "job B"), [CliPath, .. bench]);
        Assert.Equal(1, intruder.Code);
        Assert.Matches($@"nativeparallel: AuthenticationException: rendezvous: rank 1 of 2: rank 0's store at 127\.0\.0\.1:{port} refused this rank's job secret", intruder.Output);
        Assert.Single(intruder.Output.Trim().Split('\n'));
        var member = ProcessCollectiveTests.Run("dotnet", Rank(1, "job A"), [CliPath, .. bench]);
        Assert.True(member.Code == 0, member.Output);
        var (code, output) = rank0.Result;
        Assert.True(code == 0, output);
        Assert.Contains("# Out of bounds values : 0 OK", output);
        Assert.Matches(@"NativeParallel WARN rank 0's store on port \d+ dropped a connection from 127\.0\.0\.1:\d+: it proved another job secret", output);
    }

    [Fact]
    public void LaunchGivesEachJobAFreshSecretAndUnsetIsDerivedWithAWarning()
    {
        string Secret()
        {
            var (code, output) = ProcessCollectiveTests.Cli(null, "launch", "-n", "2", "--", "sh", "-c", "echo secret=$" + JobSecret.Variable);
            Assert.True(code == 0, output);
            var lines = output.Split('\n').Where(l => l.Contains("secret=")).Select(l => l[(l.IndexOf("secret=") + 7)..].Trim()).Distinct().ToArray();
            Assert.Single(lines); // both ranks hold the same one
            return lines[0];
        }
        string first = Secret(), second = Secret();
        Assert.Matches("^[0-9a-f]{64}$", first);
        Assert.NotEqual(first, second);

        var env = new LaunchEnvironment(0, 2, 0, 2, "10.0.0.1", 29500, "torchrun");
        var derived = JobSecret.For(env, _ => null);
        Assert.True(derived.Derived);
        Assert.Equal(derived.Key, JobSecret.For(env, _ => null).Key); // every rank derives the same key
        Assert.NotEqual(derived.Key, JobSecret.For(env with { MasterPort = 29501 }, _ => null).Key);
        Assert.NotEqual(derived.Key, JobSecret.For(env, n => n == "TORCHELASTIC_RUN_ID" ? "other" : null).Key);
        Assert.False(JobSecret.For(env, n => n == JobSecret.Variable ? "s" : null).Derived);
        Assert.Contains("mpirun -x NATIVEPARALLEL_JOB_SECRET", JobSecret.DerivedWarning(env));
        // A secret the caller carries (the C API's id) comes before the environment's.
        var carried = JobSecret.For(env with { Secret = "from the id" }, n => n == JobSecret.Variable ? "s" : null);
        Assert.False(carried.Derived);
        Assert.Equal(JobSecret.FromText("from the id").Key, carried.Key);
        Assert.NotEqual(JobSecret.FromText("s").Key, carried.Key);
    }

    private static string CliPath => Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");

    // A second rank uses the store while whatever was done to it is still open: it must be served at once.
    private static void AssertStoreServes(int port, TcpStore host, TimeSpan? within = null)
    {
        using var client = TcpStore.Connect("127.0.0.1", port, host: false, Minute, Ours);
        string key = $"k{Random.Shared.Next()}";
        client.Set(key, "v");
        Assert.Equal("v", host.Get(key, within ?? Minute));
        Assert.Equal(1, client.Add(key + "/n", 1));
    }

    private static void AssertLogged(ConcurrentQueue<string> log, string what, int count = 1)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (log.Count(l => l.Contains(what)) < count)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"no log line with '{what}' (x{count}) within 30 s; got:\n{string.Join('\n', log)}");
            Thread.Sleep(20);
        }
    }

    private static Socket Connected(int port)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        socket.Connect(IPAddress.Loopback, port);
        return socket;
    }

    // Reads until the other side closes: the bytes it sent before (the 20-byte challenge).
    private static int Drain(Socket socket)
    {
        int total = 0;
        var buffer = new byte[256];
        while (socket.Receive(buffer) is var n && n > 0) total += n;
        return total;
    }

    private static int Pump(ILink from, byte[] data, ILink to, byte[] into)
    {
        int sent = 0, received = 0;
        var deadline = DateTime.UtcNow + Minute;
        while (received < into.Length && DateTime.UtcNow < deadline)
        {
            if (sent < data.Length) sent += from.TrySend(data.AsSpan(sent));
            received += to.TryReceive(into.AsSpan(received));
        }
        return received;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
