using NativeParallel.Comm.Rendezvous;
using NativeParallel.Diagnostics;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// Which transport carries each pair of ranks, from the host identity every rank published at the rendezvous
/// (<see cref="HostIdentity"/>): shared memory between ranks on one host, TCP between hosts, in one group. The
/// group's name says what was chosen: shm (one host), tcp (every rank alone on its host, or forced), shm+tcp
/// (both). NATIVEPARALLEL_TRANSPORT or an explicit transport (shm, tcp) forces one for every pair.
/// </summary>
internal static class TransportChoice
{
    /// <summary>The name of the group's transports for these ranks' hosts and the override (checked).</summary>
    public static string Name(IReadOnlyList<string> hosts, string? requested, string group)
    {
        bool oneHost = hosts.All(h => h == hosts[0]);
        switch (requested?.ToLowerInvariant())
        {
            case "shm" when !oneHost:
                throw new InvalidOperationException($"transport shm was asked for, but the ranks of '{group}' span {hosts.Distinct().Count()} hosts " +
                                                    "and memory is shared only within one; use tcp, or leave the transport unset for shm+tcp");
            case "shm": return "shm";
            case "tcp": return "tcp";
            case null or "auto": break;
            case var other: throw new ArgumentException($"unknown transport '{other}' for '{group}': expected shm or tcp (or unset: chosen per pair of ranks)");
        }
        if (oneHost) return "shm";
        // Only when some host runs two or more ranks is there a pair to put on shared memory.
        return hosts.Distinct().Count() == hosts.Count ? "tcp" : "shm+tcp";
    }

    /// <summary>Connects rank <paramref name="rank"/> of a group whose rank r runs on <paramref name="hosts"/>[r]; every rank calls it.</summary>
    public static ITransport Connect(TcpStore store, string prefix, int rank, IReadOnlyList<string> hosts, string? requested, string group, TimeSpan timeout)
    {
        int size = hosts.Count;
        bool oneHost = hosts.All(h => h == hosts[0]);
        string name = Name(hosts, requested, group);
        if (name == "shm") return ShmTransport.Create(store, prefix, rank, size, CommTunables.ShmRingBytes, timeout);
        if (name == "tcp") return TcpTransport.Create(store, prefix, rank, size, timeout, acrossHosts: !oneHost);
        int[] here = Enumerable.Range(0, size).Where(r => hosts[r] == hosts[rank]).ToArray();
        int[] elsewhere = Enumerable.Range(0, size).Where(r => hosts[r] != hosts[rank]).ToArray();
        // This host's ranks meet under their own prefix (the lowest rank names it): each host's barriers count only its ranks.
        ShmTransport? local = null;
        TcpTransport? remote = null;
        try
        {
            if (here.Length > 1) local = ShmTransport.Create(store, $"{prefix}-h{here[0]}", rank, size, CommTunables.ShmRingBytes, timeout, here);
            remote = TcpTransport.Create(store, prefix, rank, size, timeout, elsewhere, acrossHosts: true);
            Log.Info($"{group}: rank {rank} of {size} links to ranks {Ranks(here.Where(r => r != rank))} over shm (same host) and to ranks {Ranks(elsewhere)} over tcp");
            return new MixedTransport(name, rank, local, remote);
        }
        catch
        {
            local?.Dispose();
            remote?.Dispose();
            throw;
        }
    }

    private static string Ranks(IEnumerable<int> ranks) => ranks.Any() ? string.Join(',', ranks) : "none";
}
