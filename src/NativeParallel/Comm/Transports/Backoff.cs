using System.Diagnostics;

namespace NativeParallel.Comm.Transports;

/// <summary>
/// The wait step of every polling loop. Shared memory: busy-poll for a bounded time (a small message's answer
/// comes within microseconds, and yielding the core on a loaded host hands it to another process for a whole
/// time slice), then yield, then sleep, so a rank waiting long on a slow peer costs almost no CPU. When the host
/// has fewer cores than ranks a spinning rank would hold the core its peer needs, so it only spins briefly
/// (as OpenMPI yields when oversubscribed). Phases are measured in time, not in polls: a poll costs tens of
/// nanoseconds in shared memory and a system call over TCP.
/// </summary>
internal sealed class Backoff
{
    private readonly long _spinTicks, _yieldTicks, _sleepZeroTicks;
    private long _idleSince;

    /// <summary>A backoff for <paramref name="ranksOnHost"/> ranks polling on this host's cores.</summary>
    public Backoff(int ranksOnHost)
    {
        bool oversubscribed = ranksOnHost > Environment.ProcessorCount;
        _spinTicks = Ticks(oversubscribed ? Math.Min(CommTunables.SpinMicroseconds, 20) : CommTunables.SpinMicroseconds);
        _yieldTicks = _spinTicks + Ticks(2_000);
        _sleepZeroTicks = _yieldTicks + Ticks(20_000);
    }

    private static long Ticks(double microseconds) => (long)(microseconds * Stopwatch.Frequency / 1e6);

    /// <summary>One idle step; <paramref name="spins"/> is 0 on the first step of a wait (it starts the clock).</summary>
    public void Idle(int spins)
    {
        long now = Stopwatch.GetTimestamp();
        if (spins == 0) _idleSince = now;
        long idle = now - _idleSince;
        if (idle < _spinTicks) Thread.SpinWait(4);
        else if (idle < _yieldTicks) Thread.Yield();
        else Thread.Sleep(idle < _sleepZeroTicks ? 0 : 1);
    }

    /// <summary>The count-based step the tcp transport uses (each poll is a system call already).</summary>
    public static void IdleByCount(int spins)
    {
        if (spins < 64) Thread.SpinWait(20);
        else if (spins < 2048) Thread.Yield();
        else Thread.Sleep(spins < 16384 ? 0 : 1);
    }
}
