namespace NativeParallel.Comm;

/// <summary>The collective operations, by their NCCL names.</summary>
public enum Collective
{
    /// <summary>all_reduce</summary>
    AllReduce,
    /// <summary>all_gather</summary>
    AllGather,
    /// <summary>reduce_scatter</summary>
    ReduceScatter,
    /// <summary>broadcast</summary>
    Broadcast,
    /// <summary>reduce</summary>
    Reduce,
    /// <summary>all_to_all</summary>
    AllToAll,
    /// <summary>send</summary>
    Send,
    /// <summary>recv</summary>
    Recv,
    /// <summary>barrier</summary>
    Barrier,
}

/// <summary>Names of <see cref="Collective"/> values as users write them (all_reduce...).</summary>
public static class CollectiveNames
{
    /// <summary>The snake_case name.</summary>
    public static string Name(this Collective c) => c switch
    {
        Collective.AllReduce => "all_reduce",
        Collective.AllGather => "all_gather",
        Collective.ReduceScatter => "reduce_scatter",
        Collective.Broadcast => "broadcast",
        Collective.Reduce => "reduce",
        Collective.AllToAll => "all_to_all",
        Collective.Send => "send",
        Collective.Recv => "recv",
        Collective.Barrier => "barrier",
        _ => c.ToString(),
    };
}

/// <summary>
/// A collective failed: a peer died or disagreed, the group was aborted, or the timeout passed. Raised on every
/// surviving rank; names the collective, its sequence number in the group, the group, this rank and the peer.
/// </summary>
public sealed class CollectiveException(string message, Collective collective, long sequence, string group, int rank, int? peer)
    : Exception(message)
{
    /// <summary>The collective that failed.</summary>
    public Collective Collective { get; } = collective;
    /// <summary>Its sequence number in the group (0 for the group's first collective).</summary>
    public long Sequence { get; } = sequence;
    /// <summary>The group's name.</summary>
    public string Group { get; } = group;
    /// <summary>The rank that raised it.</summary>
    public int Rank { get; } = rank;
    /// <summary>The peer involved, when one is known.</summary>
    public int? Peer { get; } = peer;
}
