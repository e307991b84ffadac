namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Slurm's tasks-per-node lists (SLURM_TASKS_PER_NODE, SLURM_STEP_TASKS_PER_NODE): comma-separated counts, each
/// optionally repeated, e.g. <c>2(x3),1</c> is four nodes running 2, 2, 2 and 1 tasks, in node-list order.
/// </summary>
public static class SlurmTasksPerNode
{
    /// <summary>The task count of every node, in order.</summary>
    /// <exception cref="FormatException">One line naming the faulty item and the expected form.</exception>
    public static IReadOnlyList<int> Expand(string list)
    {
        if (string.IsNullOrWhiteSpace(list)) throw Fault(list ?? "", "is empty");
        var counts = new List<int>();
        foreach (string item in list.Split(','))
        {
            string text = item, repeat = "1";
            int open = item.IndexOf('(');
            if (open >= 0)
            {
                if (!item.EndsWith(')') || open + 2 >= item.Length - 1 || item[open + 1] != 'x')
                    throw Fault(list, $"has '{item}', expected COUNT or COUNT(xREPEAT)");
                text = item[..open];
                repeat = item[(open + 2)..^1];
            }
            if (!int.TryParse(text, System.Globalization.NumberStyles.None, null, out int count) || count < 1)
                throw Fault(list, $"has '{item}', whose task count is not a positive number");
            if (!int.TryParse(repeat, System.Globalization.NumberStyles.None, null, out int times) || times < 1)
                throw Fault(list, $"has '{item}', whose repeat is not a positive number");
            if (counts.Count + (long)times > SlurmHostList.MaxHosts) throw Fault(list, $"names more than {SlurmHostList.MaxHosts} nodes");
            for (int i = 0; i < times; i++) counts.Add(count);
        }
        return counts;
    }

    private static FormatException Fault(string list, string what) =>
        new($"Slurm tasks-per-node list '{list}' {what}; expected a form like 2(x3),1");
}
