using System.Net;
using System.Net.Sockets;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// How a host name in MASTER_ADDR or a Slurm node list becomes addresses: first NATIVEPARALLEL_HOSTS_FILE when set
/// (the /etc/hosts format: an address, then its names, # comments; for jobs whose node names the system resolver
/// does not know, and for tests, which must never edit /etc/hosts), then an address literal, then the system
/// resolver. A name missing from the file falls through to the resolver.
/// </summary>
public static class HostsFile
{
    /// <summary>The addresses of <paramref name="host"/>.</summary>
    /// <exception cref="SocketException">The resolver does not know the name.</exception>
    /// <exception cref="InvalidDataException">NATIVEPARALLEL_HOSTS_FILE cannot be read or has a malformed line.</exception>
    public static IPAddress[] Resolve(string host)
    {
        if (Diagnostics.Tunables.Raw("NATIVEPARALLEL_HOSTS_FILE") is { } path && Lookup(path, host) is { Length: > 0 } listed) return listed;
        if (IPAddress.TryParse(host, out var literal)) return [literal];
        return Dns.GetHostAddresses(host);
    }

    /// <summary>The addresses <paramref name="path"/> lists for <paramref name="host"/> (case-insensitive), in file order.</summary>
    public static IPAddress[] Lookup(string path, string host)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"NATIVEPARALLEL_HOSTS_FILE={path}: cannot be read ({e.Message}); point it at a hosts file or unset it", e);
        }
        var found = new List<IPAddress>();
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 0) continue;
            if (fields.Length < 2 || !IPAddress.TryParse(fields[0], out var address))
                throw new InvalidDataException($"NATIVEPARALLEL_HOSTS_FILE={path}: line {i + 1} '{lines[i].Trim()}' is not 'ADDRESS NAME [NAME...]'");
            if (fields.Skip(1).Any(name => string.Equals(name, host, StringComparison.OrdinalIgnoreCase))) found.Add(address);
        }
        return [.. found];
    }
}
