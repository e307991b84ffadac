namespace NativeParallel.Diagnostics;

/// <summary>
/// How much of one rank's gradient-bucket communication ran while its backward did: the measured intervals of the
/// async all-reduces (the buckets DDP-style training launches from backward) against the union of that rank's
/// "backward" phases. <see cref="Share"/> is hidden / total, 0 when nothing was all-reduced.
/// </summary>
public sealed record OverlapShare(int Rank, int Buckets, double BucketUs, double HiddenUs)
{
    /// <summary>The fraction of bucket all-reduce time that overlapped backward, in [0, 1].</summary>
    public double Share => BucketUs > 0 ? HiddenUs / BucketUs : 0;

    /// <summary>Per rank, from a trace's events (ranks without bucket all-reduces are left out).</summary>
    public static IReadOnlyList<OverlapShare> BucketsBehindBackward(IReadOnlyList<TraceEvent> events)
    {
        var result = new List<OverlapShare>();
        foreach (int rank in events.Select(e => e.Rank).Distinct().Order())
        {
            var backward = Union(events.Where(e => e.Rank == rank && e.Category == "phase" && e.Name == "backward"));
            var buckets = events.Where(e => e.Rank == rank && IsBucket(e)).ToList();
            if (buckets.Count == 0) continue;
            double total = 0, hidden = 0;
            foreach (var b in buckets)
            {
                total += b.DurationUs;
                foreach (var (start, end) in backward) hidden += Math.Max(0, Math.Min(end, b.EndUs) - Math.Max(start, b.StartUs));
            }
            result.Add(new OverlapShare(rank, buckets.Count, total, hidden));
        }
        return result;
    }

    /// <summary>An all-reduce issued asynchronously (a gradient bucket; the loss and norm all-reduces are synchronous).</summary>
    public static bool IsBucket(TraceEvent e) => e.Category == "collective" && e.Name == "all_reduce" && e.Arg("async") is true;

    // Phases of one lane may nest or touch; merged, no overlap is counted twice.
    private static List<(double Start, double End)> Union(IEnumerable<TraceEvent> spans)
    {
        var merged = new List<(double Start, double End)>();
        foreach (var s in spans.OrderBy(s => s.StartUs))
        {
            if (merged.Count > 0 && s.StartUs <= merged[^1].End) merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, s.EndUs));
            else merged.Add((s.StartUs, s.EndUs));
        }
        return merged;
    }
}
