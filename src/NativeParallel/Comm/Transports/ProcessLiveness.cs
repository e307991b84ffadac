namespace NativeParallel.Comm.Transports;

/// <summary>Whether a process on this host still runs (Linux /proc: gone, or a zombie, means dead).</summary>
internal static class ProcessLiveness
{
    public static string? Failure(int pid)
    {
        if (!OperatingSystem.IsLinux() || pid <= 0) return null;
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // Field 3, after the parenthesised command name, is the state; Z and X are dead.
            int close = stat.LastIndexOf(')');
            char state = close >= 0 && close + 2 < stat.Length ? stat[close + 2] : 'R';
            return state is 'Z' or 'X' ? $"process {pid} has exited" : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"process {pid} has exited";
        }
    }
}
