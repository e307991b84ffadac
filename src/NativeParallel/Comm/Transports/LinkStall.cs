using System.Buffers.Binary;
using System.Net.Sockets;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// A transport that can tell a dead network path from a slow peer. A timed-out rank often waits on the wrong
/// peer: its bytes for the peer across a dead link sit in the kernel's send buffer, counted as sent, while it
/// waits on a healthy neighbour that waits in turn. The dead connection shows itself by data the peer never
/// acknowledged, so the error can name the rank behind it.
/// </summary>
internal interface ILinkHealth
{
    /// <summary>A peer whose connection has stopped acknowledging data, and why it looks dead; null when none.</summary>
    (int Peer, string Why)? Stalled();
}

/// <summary>Reads Linux's TCP_INFO of a socket: unacknowledged segments and the time since the last acknowledgement.</summary>
internal static class TcpAcknowledgements
{
    private const int IpProtoTcp = 6, TcpInfo = 11;
    private const int UnackedOffset = 24, LastAckReceivedOffset = 56;

    /// <summary>
    /// Milliseconds since <paramref name="socket"/> last had an acknowledgement while data stays unacknowledged
    /// (with the count of unacknowledged segments); null when everything sent was acknowledged, or off Linux.
    /// </summary>
    public static (uint Segments, uint SilentMs)? Unacknowledged(Socket socket)
    {
        if (!OperatingSystem.IsLinux()) return null;
        Span<byte> info = stackalloc byte[104];
        try
        {
            int length = socket.GetRawSocketOption(IpProtoTcp, TcpInfo, info);
            if (length < LastAckReceivedOffset + 4) return null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return null;
        }
        uint unacked = BinaryPrimitives.ReadUInt32LittleEndian(info[UnackedOffset..]);
        uint silent = BinaryPrimitives.ReadUInt32LittleEndian(info[LastAckReceivedOffset..]);
        return unacked > 0 ? (unacked, silent) : null;
    }
}
