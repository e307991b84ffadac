using System.Globalization;
using NativeParallel.Cli.Progress;
using NativeParallel.Comm;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>bench collectives --soak N --seed S</c> on one rank: runs the soak, prints every mismatch or failure this
/// rank sees (stderr) and, on rank 0, the header and the one summary line; exit 1 on any error.
/// </summary>
internal static class SoakCommand
{
    public static int Soak(ProcessGroup group, CollectiveSoak.Options o, bool print, string? json, CommandLine line, bool quiet)
    {
        if (print)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"# nativeparallel bench collectives --soak {o.Collectives} --seed {o.Seed}: {group.Size} ranks over {group.TransportName}, " +
                $"sizes 0 to {o.MaxBytes} bytes (MAX), up to {o.Window} async calls in flight, every result checked exactly\n" +
                $"# sizes: {CollectiveSoak.SizeRule}"));
        // Rank 0 shows how far the soak is (every rank runs the same schedule in step).
        var result = RunWithProgress(group, o, print && !quiet);
        if (result.Failure is { } failure) Console.Error.WriteLine($"soak: {failure}");
        if (print)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"# soak: {result.Collectives} collectives ({result.Async} async), {result.BytesMoved / 1e9:F3} GB moved, " +
                $"{result.Errors} errors, {result.Elapsed.TotalSeconds:F1} s: {(result.Errors == 0 ? "OK" : "FAILED")}"));
            Console.WriteLine($"# soak sizes (steps by bytes): {result.Sizes}");
            JsonReport.Write(json, "bench collectives", line, new
            {
                soak = o.Collectives, seed = o.Seed, ranks = group.Size, transport = group.TransportName, maxBytes = o.MaxBytes,
                collectives = result.Collectives, async = result.Async, bytesMoved = result.BytesMoved, errors = result.Errors,
                seconds = result.Elapsed.TotalSeconds, sizeRule = CollectiveSoak.SizeRule, stepsByDecade = result.Sizes.Decades,
                topOctaveByOp = CollectiveSoak.OpNames.Select((op, i) => (op, result.Sizes.TopOctave[i])).ToDictionary(p => p.op, p => p.Item2),
            });
        }
        return result.Errors == 0 ? 0 : 1;
    }

    private static CollectiveSoak.Result RunWithProgress(ProcessGroup group, CollectiveSoak.Options o, bool show)
    {
        using var progress = show ? WorkProgress.Start("soak", o.Collectives, "collectives", quiet: false) : null;
        return CollectiveSoak.Run(group, o, mismatch => Console.Error.WriteLine($"soak: {mismatch}"), progress is null ? null : _ => progress.Advance());
    }
}
