using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace NativeParallel.Native;

/// <summary>
/// npUniqueId: 128 bytes a host broadcasts to its ranks as it would an ncclUniqueId. They name where rank 0 will
/// host the rendezvous store: "NPID", a version byte, the address's length, the port (big-endian), the address
/// (UTF-8, at most 64 bytes) and 32 random bytes reserved for the job's secret; the rest is zero.
/// </summary>
internal static class UniqueId
{
    public const int Size = 128;
    private const int MaxAddress = 64;
    private const byte Version = 1;
    private static ReadOnlySpan<byte> Magic => "NPID"u8;

    /// <summary>
    /// A new id: MASTER_ADDR when set (rank 0's host as the other hosts reach it), else 127.0.0.1 like torchrun's
    /// default, which serves every rank on this host; and a port that is free here now.
    /// </summary>
    public static void Create(Span<byte> id)
    {
        string address = Environment.GetEnvironmentVariable("MASTER_ADDR") is { } named && !string.IsNullOrWhiteSpace(named) ? named.Trim() : "127.0.0.1";
        Encode(id, address, FreePort());
        RandomNumberGenerator.Fill(id.Slice(8 + MaxAddress, 32));
    }

    /// <summary>Writes the header, port and address; the secret bytes are left as they are.</summary>
    internal static void Encode(Span<byte> id, string address, int port)
    {
        byte[] text = Encoding.UTF8.GetBytes(address);
        if (text.Length is 0 or > MaxAddress) throw new ArgumentException($"store address '{address}' must be 1 to {MaxAddress} bytes; set MASTER_ADDR to a shorter name or an IP address");
        id[..Size].Clear();
        Magic.CopyTo(id);
        id[4] = Version;
        id[5] = (byte)text.Length;
        BinaryPrimitives.WriteUInt16BigEndian(id[6..], (ushort)port);
        text.CopyTo(id[8..]);
    }

    /// <summary>The job's secret the id carries (its 32 random bytes, as hex): every rank given the id proves it to the others.</summary>
    public static string Secret(ReadOnlySpan<byte> id) => Convert.ToHexString(id.Slice(8 + MaxAddress, 32));

    /// <summary>The store's address and port; a corrupt or foreign id is an ArgumentException saying so.</summary>
    public static (string Address, int Port) Decode(ReadOnlySpan<byte> id)
    {
        if (!id[..4].SequenceEqual(Magic) || id[4] != Version || id[5] is 0 or > MaxAddress)
            throw new ArgumentException("commId is not an npUniqueId from npGetUniqueId (wrong magic, version or length): pass every rank the same 128 bytes rank 0's host made");
        int port = BinaryPrimitives.ReadUInt16BigEndian(id[6..]);
        if (port == 0) throw new ArgumentException("commId names port 0: it was not made by npGetUniqueId");
        return (Encoding.UTF8.GetString(id.Slice(8, id[5])), port);
    }

    // The kernel's choice of a free port; rank 0 binds it again moments later (a small window another program could take it in).
    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
