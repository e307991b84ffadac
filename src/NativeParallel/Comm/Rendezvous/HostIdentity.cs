namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Which host this rank runs on, as far as the transports care: ranks with the same identity share /dev/shm and
/// talk over shared memory; others over TCP. NATIVEPARALLEL_HOST_ID when set (for setups where the default is
/// wrong: network namespaces or containers that share a kernel, the hostname and /dev/shm yet should act as
/// separate hosts, as the two-host namespace test does); else the hostname and the kernel's boot id, so two
/// machines with the same hostname (cloned images) are still told apart.
/// </summary>
public static class HostIdentity
{
    private const string BootIdFile = "/proc/sys/kernel/random/boot_id";

    /// <summary>The identity every rank publishes at the rendezvous; equal strings mean one host.</summary>
    public static string Current => Diagnostics.Tunables.Raw("NATIVEPARALLEL_HOST_ID") is { } set ? set : $"{Environment.MachineName}/{BootId()}";

    /// <summary>The name shown in logs and errors: NATIVEPARALLEL_HOST_ID when set, else the hostname.</summary>
    public static string DisplayName => Diagnostics.Tunables.Raw("NATIVEPARALLEL_HOST_ID") ?? Environment.MachineName;

    private static string BootId()
    {
        try
        {
            return File.ReadAllText(BootIdFile).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "no-boot-id"; // not Linux: the hostname alone decides
        }
    }
}
