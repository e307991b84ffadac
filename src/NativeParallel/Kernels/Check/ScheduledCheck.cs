using NativeParallel.Devices;

namespace NativeParallel.Kernels.Check;

/// <summary>
/// Runs a case once per fiber schedule on the emulated device (once elsewhere). Same seed, same inputs: a
/// race-free kernel gives bitwise the same output under every interleaving, so any difference in the relative
/// error is a race (typically a missing barrier) and fails the case, naming the schedules.
/// </summary>
public static class ScheduledCheck
{
    /// <summary>Runs <paramref name="kernelCase"/> under schedules 0..<paramref name="schedules"/>−1 on an emulated device.</summary>
    public static KernelCheckResult Run(KernelCase kernelCase, IDevice device, ulong seed, int schedules)
    {
        if (device is not EmuDevice emu || schedules <= 1) return kernelCase.Run(device, seed);
        var results = new List<KernelCheckResult>(schedules);
        try
        {
            for (uint s = 0; s < schedules; s++)
            {
                emu.Schedule = s;
                results.Add(kernelCase.Run(device, seed));
            }
        }
        finally
        {
            emu.Schedule = 0;
        }
        // A difference between schedules is the more specific diagnosis, so it is reported before a plain failure.
        // Bits are compared: a race-free kernel reproduces its output exactly under any interleaving.
        var first = results[0];
        for (int s = 1; s < results.Count; s++)
        {
            if (BitConverter.DoubleToInt64Bits(results[s].RelativeError) == BitConverter.DoubleToInt64Bits(first.RelativeError)) continue;
            return results[s] with
            {
                Passed = false,
                Message = $"race in {kernelCase.Op}: the output differs between fiber schedules ({ScheduleName(0)}: rel err {first.RelativeError:E6}, " +
                          $"{ScheduleName((uint)s)}: {results[s].RelativeError:E6}); a missing __syncthreads or __syncwarp?",
            };
        }
        for (int s = 0; s < results.Count; s++)
            if (!results[s].Passed) return results[s] with { Message = $"schedule {s} ({ScheduleName((uint)s)}): {results[s].Message}" };
        return first;
    }

    /// <summary>forward, reverse, or shuffle seed N.</summary>
    public static string ScheduleName(uint schedule) => schedule switch
    {
        0 => "forward",
        1 => "reverse",
        _ => $"shuffle {schedule}",
    };
}
