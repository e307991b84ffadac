using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// The rendezvous key-value store: rank 0 hosts it on MASTER_PORT, every rank is a client. Keys are set once
/// (addresses, segment names, readiness); Get waits until a key exists; Add counts (barriers); Missing lists
/// which of the keys PREFIX0..PREFIX(n-1) are absent (who has not joined). Wire format per request: op (1 byte),
/// key (u16 length + UTF-8), value (i32 length + bytes), wait in ms (i32); reply: status (1 byte: 0 ok, 1 timed
/// out), value (i32 length + bytes). Every connection starts with <see cref="JobHandshake"/>: the store serves only
/// clients that prove the job's key, drops any other (one line on the log) and goes on serving its ranks.
/// </summary>
public sealed class TcpStore : IDisposable
{
    private const byte OpSet = 1, OpGet = 2, OpAdd = 3, OpMissing = 4;
    private const int ReplyGraceMs = 10_000;
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly Server? _server;
    private readonly object _gate = new();
    private volatile bool _closed;

    private TcpStore(TcpClient client, Server? server, JobSecret secret, Action<string> refusals, TimeSpan handshake)
    {
        _client = client;
        _stream = client.GetStream();
        _server = server;
        Secret = secret;
        Refusals = refusals;
        HandshakeLimit = handshake;
    }

    /// <summary>The job's key: the tcp transport's connections prove it too.</summary>
    internal JobSecret Secret { get; }

    /// <summary>Where refused connections are reported (one line each): the store's and the tcp transport's.</summary>
    internal Action<string> Refusals { get; }

    /// <summary>How long a new connection has to complete the job handshake.</summary>
    internal TimeSpan HandshakeLimit { get; }

    /// <summary>Connections rank 0's store has dropped (no, a wrong or a garbled handshake); 0 on other ranks.</summary>
    internal int Refused => _server?.Refused ?? 0;

    /// <summary>The local address of this rank's connection to the store: an interface the master can reach.</summary>
    public IPAddress LocalAddress
    {
        get
        {
            var address = ((IPEndPoint)_client.Client.LocalEndPoint!).Address;
            return address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        }
    }

    /// <summary>
    /// Rank 0 hosts (binds <paramref name="port"/> on all interfaces); every rank connects and proves
    /// <paramref name="secret"/>, retrying until <paramref name="timeout"/>; <paramref name="retrying"/> hears each
    /// failed attempt (to report progress). <paramref name="refusals"/> gets one line per dropped connection
    /// (default: a warning on stderr); <paramref name="handshake"/> bounds each connection's handshake
    /// (default NATIVEPARALLEL_HANDSHAKE_TIMEOUT_S).
    /// </summary>
    /// <exception cref="System.Security.Authentication.AuthenticationException">What answered at the address is not this job's store.</exception>
    public static TcpStore Connect(string address, int port, bool host, TimeSpan timeout, JobSecret secret, Action<SocketException>? retrying = null,
        Action<string>? refusals = null, TimeSpan? handshake = null)
    {
        refusals ??= line => Diagnostics.Log.Warn(line);
        var limit = handshake ?? CommTunables.HandshakeTimeout;
        Server? server = host ? new Server(port, secret, refusals, limit) : null;
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            var client = new TcpClient { NoDelay = true };
            try
            {
                // Through NATIVEPARALLEL_HOSTS_FILE first: node names a test or a site lists, unknown to DNS.
                client.Connect(HostsFile.Resolve(address), port);
                JobHandshake.Prove(client.Client, secret, "store", limit, $"rank 0's store at {address}:{port}");
                return new TcpStore(client, server, secret, refusals, limit);
            }
            catch (SocketException e)
            {
                last = e;
                client.Dispose();
                retrying?.Invoke(e);
                Thread.Sleep(50);
            }
            catch (IOException e)
            {
                // Closed or silent mid-handshake (a store shedding load, or not a store): try again until the deadline.
                last = e;
                client.Dispose();
                Thread.Sleep(50);
            }
            catch
            {
                client.Dispose();
                server?.Dispose();
                throw;
            }
        }
        server?.Dispose();
        throw new TimeoutException($"could not reach the rendezvous store at {address}:{port} within {timeout.TotalSeconds:F0} s " +
                                   $"({last?.Message}); is rank 0 running, and are MASTER_ADDR/MASTER_PORT the same on every rank?");
    }

    /// <summary>Sets <paramref name="key"/>.</summary>
    public void Set(string key, string value) => Call(OpSet, key, Encoding.UTF8.GetBytes(value), 0);

    /// <summary>Waits until <paramref name="key"/> exists and returns it.</summary>
    public string Get(string key, TimeSpan timeout) =>
        TryGet(key, timeout, out string? value) ? value
            : throw new TimeoutException($"rendezvous: key '{key}' did not appear within {timeout.TotalSeconds:F0} s; a rank may have failed to start");

    /// <summary>Waits up to <paramref name="timeout"/> for <paramref name="key"/>; false when it did not appear.</summary>
    public bool TryGet(string key, TimeSpan timeout, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out string? value)
    {
        var (ok, bytes) = Call(OpGet, key, [], (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue));
        value = ok ? Encoding.UTF8.GetString(bytes) : null;
        return ok;
    }

    /// <summary>Which of <paramref name="prefix"/>0 .. <paramref name="prefix"/>(<paramref name="count"/>−1) are not set yet, in order: one round trip.</summary>
    public int[] Missing(string prefix, int count)
    {
        var request = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(request, count);
        var reply = Call(OpMissing, prefix, request, 0).Value;
        var missing = new int[reply.Length / 4];
        for (int i = 0; i < missing.Length; i++) missing[i] = BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(4 * i));
        return missing;
    }

    /// <summary>Adds <paramref name="delta"/> to a counter and returns the new value.</summary>
    public long Add(string key, long delta)
    {
        var buffer = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(buffer, delta);
        return BinaryPrimitives.ReadInt64LittleEndian(Call(OpAdd, key, buffer, 0).Value);
    }

    /// <summary>Returns when <paramref name="size"/> ranks have reached the barrier named <paramref name="name"/>.</summary>
    public void Barrier(string name, int size, TimeSpan timeout)
    {
        if (Add($"barrier/{name}", 1) == size) Set($"barrier/{name}/done", "1");
        Get($"barrier/{name}/done", timeout);
    }

    private (bool Ok, byte[] Value) Call(byte op, string key, byte[] value, int waitMs)
    {
        byte[] keyBytes = Encoding.UTF8.GetBytes(key);
        var request = new byte[1 + 2 + keyBytes.Length + 4 + value.Length + 4];
        request[0] = op;
        BinaryPrimitives.WriteUInt16LittleEndian(request.AsSpan(1), (ushort)keyBytes.Length);
        keyBytes.CopyTo(request, 3);
        BinaryPrimitives.WriteInt32LittleEndian(request.AsSpan(3 + keyBytes.Length), value.Length);
        value.CopyTo(request, 7 + keyBytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(request.AsSpan(7 + keyBytes.Length + value.Length), waitMs);
        lock (_gate)
        {
            if (_closed) throw new IOException("rendezvous store connection is closed: an earlier call to it failed, or this rank disposed it");
            try
            {
                // A store behind a dead link never answers and never resets: bound every reply by the call's own
                // wait plus a grace, so a rank failing or leaving after a network fault does not block forever.
                _client.ReceiveTimeout = (int)Math.Min(int.MaxValue, (long)waitMs + ReplyGraceMs);
                _client.SendTimeout = ReplyGraceMs;
                _stream.Write(request);
                var head = new byte[5];
                _stream.ReadExactly(head);
                var reply = new byte[BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(1))];
                _stream.ReadExactly(reply);
                return (head[0] == 0, reply);
            }
            catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or ObjectDisposedException)
            {
                // A reply may still be on its way: the stream is out of step, so no later call may use it.
                _closed = true;
                _client.Dispose();
                throw new IOException($"rendezvous store connection lost ({e.Message}): rank 0, which hosts it, may have exited, or the network to it is down", e);
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _closed = true;
        _client.Dispose();
        _server?.Dispose();
    }

    /// <summary>
    /// The store itself, in rank 0: one thread per client connection (so a connection that never completes its
    /// handshake holds only its own thread, until the handshake's deadline), waits on a monitor.
    /// </summary>
    private sealed class Server : IDisposable
    {
        // Connections still in their handshake beyond this are dropped at once: a flood cannot exhaust threads.
        private const int MaxHandshaking = 512;
        private readonly TcpListener _listener;
        private readonly Dictionary<string, byte[]> _values = new(StringComparer.Ordinal);
        private readonly List<TcpClient> _clients = [];
        private readonly JobSecret _secret;
        private readonly TimeSpan _handshake;
        private readonly RefusalLog _refusals;
        private int _handshaking;
        private volatile bool _stopped;

        public Server(int port, JobSecret secret, Action<string> refusals, TimeSpan handshake)
        {
            _secret = secret;
            _handshake = handshake;
            _refusals = new RefusalLog(refusals, $"rank 0's store on port {port}");
            _listener = new TcpListener(IPAddress.Any, port);
            try
            {
                _listener.Start(backlog: 1024);
            }
            catch (SocketException e)
            {
                string what = e.SocketErrorCode == SocketError.AddressAlreadyInUse ? "the port is already in use, by another job or program" : e.Message;
                throw new IOException($"rank 0 cannot host the rendezvous store on port {port}: {what}; set MASTER_PORT to a free port on every rank", e);
            }
            new Thread(AcceptLoop) { IsBackground = true, Name = "nativeparallel store" }.Start();
        }

        public int Refused => _refusals.Count;

        private void AcceptLoop()
        {
            while (!_stopped)
            {
                TcpClient client;
                try { client = _listener.AcceptTcpClient(); }
                catch (Exception) when (_stopped) { return; }
                catch (SocketException) { continue; }
                client.NoDelay = true;
                lock (_clients) _clients.Add(client);
                new Thread(() => Serve(client)) { IsBackground = true, Name = "nativeparallel store client" }.Start();
            }
        }

        private void Serve(TcpClient client)
        {
            string from = client.Client.RemoteEndPoint?.ToString() ?? "an unknown address";
            bool admitted;
            string why;
            if (Interlocked.Increment(ref _handshaking) > MaxHandshaking)
                (admitted, why) = (false, $"arrived while {MaxHandshaking} other connections were still in their handshake");
            else admitted = JobHandshake.Admit(client.Client, _secret, "store", _handshake, out why);
            Interlocked.Decrement(ref _handshaking);
            if (!admitted)
            {
                if (!_stopped) _refusals.Refused(from, why);
                lock (_clients) _clients.Remove(client);
                client.Dispose();
                return;
            }
            try
            {
                using var stream = client.GetStream();
                var head = new byte[3];
                while (!_stopped)
                {
                    stream.ReadExactly(head);
                    var key = new byte[BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(1))];
                    stream.ReadExactly(key);
                    var length = new byte[4];
                    stream.ReadExactly(length);
                    var value = new byte[BinaryPrimitives.ReadInt32LittleEndian(length)];
                    stream.ReadExactly(value);
                    stream.ReadExactly(length);
                    int waitMs = BinaryPrimitives.ReadInt32LittleEndian(length);
                    var (ok, reply) = Handle(head[0], Encoding.UTF8.GetString(key), value, waitMs);
                    var output = new byte[5 + reply.Length];
                    output[0] = ok ? (byte)0 : (byte)1;
                    BinaryPrimitives.WriteInt32LittleEndian(output.AsSpan(1), reply.Length);
                    reply.CopyTo(output, 5);
                    stream.Write(output);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or ObjectDisposedException)
            {
                // The client went away (it finished or died); its keys stay for the others.
            }
        }

        private (bool, byte[]) Handle(byte op, string key, byte[] value, int waitMs)
        {
            lock (_values)
            {
                switch (op)
                {
                    case OpSet:
                        _values[key] = value;
                        Monitor.PulseAll(_values);
                        return (true, []);
                    case OpAdd:
                        long current = _values.TryGetValue(key, out var old) ? BinaryPrimitives.ReadInt64LittleEndian(old) : 0;
                        current += BinaryPrimitives.ReadInt64LittleEndian(value);
                        var stored = new byte[8];
                        BinaryPrimitives.WriteInt64LittleEndian(stored, current);
                        _values[key] = stored;
                        Monitor.PulseAll(_values);
                        return (true, stored);
                    case OpMissing:
                        int count = BinaryPrimitives.ReadInt32LittleEndian(value);
                        var missing = new List<byte>();
                        Span<byte> index = stackalloc byte[4];
                        for (int i = 0; i < count; i++)
                        {
                            if (_values.ContainsKey(key + i)) continue;
                            BinaryPrimitives.WriteInt32LittleEndian(index, i);
                            missing.AddRange(index);
                        }
                        return (true, [.. missing]);
                    default:
                        var deadline = DateTime.UtcNow.AddMilliseconds(waitMs);
                        while (!_values.ContainsKey(key))
                        {
                            var left = deadline - DateTime.UtcNow;
                            if (left <= TimeSpan.Zero || _stopped) return (false, []);
                            Monitor.Wait(_values, left);
                        }
                        return (true, _values[key]);
                }
            }
        }

        public void Dispose()
        {
            _stopped = true;
            _listener.Stop();
            lock (_clients) foreach (var c in _clients) c.Dispose();
            lock (_values) Monitor.PulseAll(_values);
        }
    }
}
