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
}
