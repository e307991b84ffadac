using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Text;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// The first bytes of every connection to rank 0's store and between tcp ranks: a mutual challenge-response over
/// the job's key (<see cref="JobSecret"/>), so the secret itself never crosses the wire. The accepting side sends
/// "NPJ1" and a 16-byte nonce; the connecting side answers "NPJ1", HMAC-SHA256(key, "client|purpose|" + that
/// nonce) and its own nonce; the accepting side replies 1 and HMAC-SHA256(key, "server|purpose|" + both nonces)
/// (the connecting side checks it: it is talking to its own job), or 0 and closes. The whole exchange has one
/// deadline, so a connection that sends nothing, or a byte at a time, is dropped when it passes.
/// </summary>
internal static class JobHandshake
{
    private static readonly byte[] Magic = "NPJ1"u8.ToArray();
    private const int NonceBytes = 16, MacBytes = 32;

    /// <summary>
    /// The accepting side. True when the peer proved the key; otherwise false and <paramref name="why"/> says what
    /// it did (for the one log line). Never throws on a misbehaving peer; the caller closes the socket.
    /// </summary>
    public static bool Admit(Socket socket, JobSecret secret, string purpose, TimeSpan limit, out string why)
    {
        var deadline = DateTime.UtcNow + limit;
        var serverNonce = RandomNumberGenerator.GetBytes(NonceBytes);
        var answer = new byte[Magic.Length + MacBytes + NonceBytes];
        int got = 0;
        try
        {
            Send(socket, [.. Magic, .. serverNonce], deadline);
            // The magic first: garbage is refused as soon as it shows, not after 52 bytes of it.
            Read(socket, answer.AsSpan(0, Magic.Length), deadline, ref got);
            if (!answer.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            {
                why = $"sent bytes that are not a NativeParallel handshake (0x{Convert.ToHexString(answer, 0, Magic.Length)}...: garbage or another protocol)";
                return false;
            }
            Read(socket, answer.AsSpan(Magic.Length), deadline, ref got);
            var expected = Mac(secret, "client", purpose, serverNonce, []);
            if (!CryptographicOperations.FixedTimeEquals(expected, answer.AsSpan(Magic.Length, MacBytes)))
            {
                TrySend(socket, [0]);
                why = $"proved another job secret (a rank of another job, or {JobSecret.Variable} differs from this rank's)";
                return false;
            }
            var clientNonce = answer.AsSpan(Magic.Length + MacBytes, NonceBytes).ToArray();
            Send(socket, [1, .. Mac(secret, "server", purpose, clientNonce, serverNonce)], deadline);
            Restore(socket);
            why = "";
            return true;
        }
        catch (HandshakeTimeout)
        {
            why = got == 0 ? $"sent nothing within {limit.TotalSeconds:F0} s of connecting" : $"sent {got} bytes of the handshake and then nothing for {limit.TotalSeconds:F0} s";
            return false;
        }
        catch (HandshakeClosed)
        {
            why = got == 0 ? "closed the connection without a handshake" : $"closed the connection after {got} bytes of the handshake";
            return false;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            why = $"failed during the handshake ({e.Message})";
            return false;
        }
    }

    /// <summary>
    /// The connecting side: proves the key and checks the other side's proof. Throws
    /// <see cref="AuthenticationException"/> when the other side is not this job (it refused the proof, its own
    /// proof is wrong, or it does not speak the handshake), <see cref="IOException"/> when it closed or went silent.
    /// <paramref name="what"/> names the other side in messages ("rank 0's store at 10.0.0.1:29500").
    /// </summary>
    public static void Prove(Socket socket, JobSecret secret, string purpose, TimeSpan limit, string what)
    {
        var deadline = DateTime.UtcNow + limit;
        var challenge = new byte[Magic.Length + NonceBytes];
        int got = 0;
        try
        {
            Read(socket, challenge, deadline, ref got);
            if (!challenge.AsSpan(0, Magic.Length).SequenceEqual(Magic))
                throw new AuthenticationException($"{what} answered with bytes that are not a NativeParallel handshake: another program holds that port");
            var serverNonce = challenge.AsSpan(Magic.Length).ToArray();
            var clientNonce = RandomNumberGenerator.GetBytes(NonceBytes);
            Send(socket, [.. Magic, .. Mac(secret, "client", purpose, serverNonce, []), .. clientNonce], deadline);
            var status = new byte[1];
            Read(socket, status, deadline, ref got);
            if (status[0] != 1)
                throw new AuthenticationException($"{what} refused this rank's job secret ({secret.Source}): every rank needs the same {JobSecret.Variable}, " +
                                                  "or a process of another job holds that address");
            var proof = new byte[MacBytes];
            Read(socket, proof, deadline, ref got);
            if (!CryptographicOperations.FixedTimeEquals(proof, Mac(secret, "server", purpose, clientNonce, serverNonce)))
                throw new AuthenticationException($"{what} does not hold this job's secret: a process of another job holds that address");
            Restore(socket);
        }
        catch (HandshakeTimeout)
        {
            throw new IOException($"{what} did not complete the job handshake within {limit.TotalSeconds:F0} s; is another program listening there?");
        }
        catch (HandshakeClosed)
        {
            throw new IOException($"{what} closed the connection during the job handshake");
        }
    }

    private static byte[] Mac(JobSecret secret, string side, string purpose, byte[] first, byte[] second) =>
        HMACSHA256.HashData(secret.Key, (byte[])[.. Encoding.ASCII.GetBytes($"{side}|{purpose}|"), .. first, .. second]);

    // Reads exactly destination.Length bytes before the deadline, counting each byte into total as it comes
    // (a refusal says how far a peer got).
    private static void Read(Socket socket, Span<byte> destination, DateTime deadline, ref int total)
    {
        int got = 0;
        while (got < destination.Length)
        {
            socket.ReceiveTimeout = Remaining(deadline);
            int n;
            try { n = socket.Receive(destination[got..]); }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock) { throw new HandshakeTimeout(); }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset) { throw new HandshakeClosed(); }
            if (n == 0) throw new HandshakeClosed();
            got += n;
            total += n;
        }
    }

    private static void Send(Socket socket, ReadOnlySpan<byte> data, DateTime deadline)
    {
        socket.SendTimeout = Remaining(deadline);
        try
        {
            while (data.Length > 0) data = data[socket.Send(data)..];
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock) { throw new HandshakeTimeout(); }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted) { throw new HandshakeClosed(); }
    }

    private static void TrySend(Socket socket, byte[] data)
    {
        try { socket.Send(data); } catch (SocketException) { }
    }

    private static int Remaining(DateTime deadline)
    {
        double ms = (deadline - DateTime.UtcNow).TotalMilliseconds;
        if (ms <= 0) throw new HandshakeTimeout();
        return (int)Math.Clamp(Math.Ceiling(ms), 1, int.MaxValue);
    }

    // After the handshake the connection's own protocol has no per-call timeouts (its callers bound their waits).
    private static void Restore(Socket socket)
    {
        socket.ReceiveTimeout = 0;
        socket.SendTimeout = 0;
    }

    private sealed class HandshakeTimeout : Exception;

    private sealed class HandshakeClosed : Exception;
}

/// <summary>
/// Where refused connections are reported: one line each on the job's log, naming who listened, who connected
/// and what it did; after <see cref="MaxLines"/> lines only a count is kept, so a flood cannot flood the log.
/// </summary>
internal sealed class RefusalLog(Action<string> write, string listener)
{
    public const int MaxLines = 20;
    private int _count;

    /// <summary>Refused connections so far.</summary>
    public int Count => Volatile.Read(ref _count);

    public void Refused(string from, string why)
    {
        int n = Interlocked.Increment(ref _count);
        if (n <= MaxLines) write($"{listener} dropped a connection from {from}: it {why}; the job goes on");
        if (n == MaxLines) write($"{listener}: {MaxLines} connections dropped; further ones are dropped without a line");
    }
}
