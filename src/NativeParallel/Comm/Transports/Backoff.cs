namespace NativeParallel.Comm.Transports;

/// <summary>
/// The wait step of every polling loop: spin briefly (latency), then yield, then sleep (fairness on few cores).
/// A longer spin measured in time (up to 1 ms before the first yield) was tried for small messages: it did not
/// beat this on the 2-core VM, and it halved 16 MB all_reduce bandwidth there under other processes' load (a
/// spinning rank pushes that load onto its peer's core), so polls stay counted. The spin polls between single
/// pauses: Thread.SpinWait(20) took about 3 µs on that VM, so a message arriving just after an empty poll waited
/// up to 3 µs to be seen; SpinPolls polls of SpinWait(1) spin about as long in all, 20 times as finely.
/// </summary>
internal static class Backoff
{
    /// <summary>Empty polls that spin before the first yield.</summary>
    public const int SpinPolls = 1280;

    /// <summary>One idle step; <paramref name="spins"/> counts the empty polls of this wait so far.</summary>
    public static void Idle(int spins)
    {
        if (spins < SpinPolls) Thread.SpinWait(1);
        else if (spins < 2048) Thread.Yield();
        else Thread.Sleep(spins < 16384 ? 0 : 1);
    }
}
