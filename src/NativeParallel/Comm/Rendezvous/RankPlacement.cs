namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Which node runs which rank, as the launcher laid them out: so a rendezvous that times out can say where a
/// missing rank should have come from. Nodes are in the launcher's order with their task counts; ranks are dealt
/// to them in blocks (Slurm's default and torchrun's node_rank layout) or round-robin (Slurm's cyclic).
/// </summary>
public sealed class RankPlacement
{
    private readonly string[] _nodeOfRank;

    private RankPlacement(string[] nodeOfRank) => _nodeOfRank = nodeOfRank;

    /// <summary>Number of ranks placed.</summary>
    public int Ranks => _nodeOfRank.Length;

    /// <summary>The node of <paramref name="rank"/>, or null when out of range.</summary>
    public string? NodeOf(int rank) => rank >= 0 && rank < _nodeOfRank.Length ? _nodeOfRank[rank] : null;

    /// <summary>Ranks in consecutive blocks: node i runs <paramref name="tasks"/>[i] of them.</summary>
    public static RankPlacement Block(IReadOnlyList<string> nodes, IReadOnlyList<int> tasks)
    {
        var placed = new List<string>();
        for (int n = 0; n < nodes.Count; n++)
            for (int t = 0; t < tasks[n]; t++) placed.Add(nodes[n]);
        return new RankPlacement([.. placed]);
    }

    /// <summary>Ranks dealt one per node in turn, skipping nodes that are full (Slurm's cyclic distribution).</summary>
    public static RankPlacement Cyclic(IReadOnlyList<string> nodes, IReadOnlyList<int> tasks)
    {
        var left = tasks.ToArray();
        var placed = new List<string>();
        for (bool any = true; any;)
        {
            any = false;
            for (int n = 0; n < nodes.Count; n++)
                if (left[n] > 0)
                {
                    placed.Add(nodes[n]);
                    left[n]--;
                    any = true;
                }
        }
        return new RankPlacement([.. placed]);
    }

    /// <summary><paramref name="nodes"/> nodes of <paramref name="perNode"/> ranks each, named by <paramref name="name"/>.</summary>
    public static RankPlacement Uniform(int nodes, int perNode, Func<int, string> name) =>
        Block(Enumerable.Range(0, nodes).Select(name).ToArray(), Enumerable.Repeat(perNode, nodes).ToArray());
}
