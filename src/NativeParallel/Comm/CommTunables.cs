using NativeParallel.Diagnostics;

namespace NativeParallel.Comm;

/// <summary>The collective runtime's environment variables (read through <see cref="Tunables"/>'s one place).</summary>
public static class CommTunables
{
    /// <summary>NATIVEPARALLEL_TIMEOUT_S: how long a collective waits on its peers (default 300 s).</summary>
    public static TimeSpan Timeout =>
        double.TryParse(Tunables.Raw("NATIVEPARALLEL_TIMEOUT_S"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(300);

    /// <summary>
    /// NATIVEPARALLEL_RENDEZVOUS_PROGRESS_S: how often a rank waiting at the rendezvous says what it waits for
    /// (default 10 s; tests set a fraction of a second to see the line quickly).
    /// </summary>
    public static TimeSpan RendezvousProgressInterval =>
        double.TryParse(Tunables.Raw("NATIVEPARALLEL_RENDEZVOUS_PROGRESS_S"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(10);

    /// <summary>
    /// NATIVEPARALLEL_HANDSHAKE_TIMEOUT_S: how long a new connection to the store or between tcp ranks has to prove
    /// the job's secret before it is dropped (default 10 s).
    /// </summary>
    public static TimeSpan HandshakeTimeout =>
        double.TryParse(Tunables.Raw("NATIVEPARALLEL_HANDSHAKE_TIMEOUT_S"), System.Globalization.CultureInfo.InvariantCulture, out double s) && s > 0
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(10);

    /// <summary>
    /// NATIVEPARALLEL_FAULT=exit:RANK:SEQUENCE: that rank's process exits abruptly (code 17) as it starts collective
    /// SEQUENCE, so tests and users can watch the others fail cleanly on a dead peer. Null when unset.
    /// </summary>
    public static (int Rank, long Sequence)? Fault
    {
        get
        {
            var parts = Tunables.Raw("NATIVEPARALLEL_FAULT")?.Split(':');
            if (parts is not ["exit", var rank, var sequence]) return null;
            return int.TryParse(rank, out int r) && long.TryParse(sequence, out long s) ? (r, s)
                : throw new ArgumentException($"NATIVEPARALLEL_FAULT={string.Join(':', parts)}: expected exit:RANK:SEQUENCE");
        }
    }

    /// <summary>NATIVEPARALLEL_ALGO: ring or oneshot forces the all-reduce algorithm (and the device-direct all-gather's and broadcast's); unset picks by size.</summary>
    public static string Algorithm => Tunables.Raw("NATIVEPARALLEL_ALGO")?.ToLowerInvariant() switch
    {
        null => "auto",
        "ring" => "ring",
        "oneshot" => "oneshot",
        var other => throw new ArgumentException($"NATIVEPARALLEL_ALGO={other}: expected ring or oneshot"),
    };

    /// <summary>NATIVEPARALLEL_ONESHOT_BYTES: all-reduces up to this size (inclusive) go one-shot (default 64 KiB).</summary>
    public static long OneShotBytes => long.TryParse(Tunables.Raw("NATIVEPARALLEL_ONESHOT_BYTES"), out long b) && b >= 0 ? b : 64 << 10;

    /// <summary>NATIVEPARALLEL_SOCKETS: TCP connections per peer, striped (default 1: on loopback more did not help; at most 64).</summary>
    public static int SocketsPerPeer => int.TryParse(Tunables.Raw("NATIVEPARALLEL_SOCKETS"), out int n) && n >= 1 ? Math.Min(n, 64) : 1;

    /// <summary>NATIVEPARALLEL_TRANSPORT: shm or tcp, or null to choose by topology.</summary>
    public static string? Transport => Tunables.Raw("NATIVEPARALLEL_TRANSPORT");

    /// <summary>NATIVEPARALLEL_SHM_BUFFER: bytes of each shared-memory ring (default 4 MiB).</summary>
    public static long ShmRingBytes => long.TryParse(Tunables.Raw("NATIVEPARALLEL_SHM_BUFFER"), out long b) && b >= 4096 ? b : 4L << 20;
}
