using System.Globalization;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Diagnostics;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>--trace FILE</c> of run, train, bench kernels and bench collectives: records while the command runs and writes
/// Chrome trace JSON when it ends (failed runs too: the trace shows how far they got). Thread ranks share one file;
/// each process of a launched job writes its own, FILE with <c>.rankN</c> before the extension, its timestamps on
/// the host's monotonic clock so the files of one host line up when merged.
/// </summary>
internal sealed class TraceFile : IDisposable
{
    private readonly TraceSession _session;

    private TraceFile(string path, TraceSession session) => (Path, _session) = (path, session);

    /// <summary>Where the trace goes.</summary>
    public string Path { get; }

    /// <summary>Starts recording for <paramref name="path"/> (null: no trace, null returned).</summary>
    public static TraceFile? Start(string? path)
    {
        if (path is null) return null;
        string full = System.IO.Path.GetFullPath(path);
        string folder = System.IO.Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new UsageException($"--trace {path}: folder {folder} does not exist");
        var launched = LaunchEnvironment.Detect();
        int rank = launched?.Rank ?? 0;
        if (launched is { WorldSize: > 1 }) full = ForRank(full, rank);
        return new TraceFile(full, Tracer.Start(rank));
    }

    /// <summary>The file of one process rank: trace.json becomes trace.rank1.json.</summary>
    public static string ForRank(string path, int rank) =>
        System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path) ?? "", $"{System.IO.Path.GetFileNameWithoutExtension(path)}.rank{rank}{System.IO.Path.GetExtension(path)}");

    /// <summary>
    /// Prints how much of the gradient buckets' all-reduce time ran during backward, per rank and over all, from the
    /// measured intervals of the recording trace; nothing when no trace records or no bucket was all-reduced.
    /// </summary>
    public static void PrintHiddenShare(TextWriter output)
    {
        if (Tracer.Current is not { } session) return;
        var shares = OverlapShare.BucketsBehindBackward(session.Events);
        if (shares.Count == 0) return;
        double bucketUs = shares.Sum(s => s.BucketUs), hiddenUs = shares.Sum(s => s.HiddenUs);
        string ranks = string.Join("; ", shares.Select(s => string.Create(CultureInfo.InvariantCulture,
            $"rank {s.Rank}: {s.Buckets} all-reduces, {s.HiddenUs / 1000:F2} of {s.BucketUs / 1000:F2} ms")));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"overlap {(bucketUs > 0 ? hiddenUs / bucketUs : 0):P1} of the gradient buckets' all-reduce time ran during backward ({ranks}; measured from the trace)"));
    }

    /// <summary>Stops recording and writes the file.</summary>
    public void Dispose()
    {
        _session.Dispose();
        _session.WriteChromeJson(Path);
        var events = _session.Events;
        int ranks = events.Select(e => e.Rank).Distinct().Count();
        Console.WriteLine($"trace   {Path}: {events.Count} events on {ranks} rank{(ranks == 1 ? "" : "s")} (open in https://ui.perfetto.dev or chrome://tracing)");
    }
}
