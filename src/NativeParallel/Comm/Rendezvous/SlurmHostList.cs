using System.Text;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Slurm's compressed host lists (SLURM_NODELIST and friends): comma-separated host expressions, each literal
/// text and bracket groups of numbers and ranges, e.g. <c>gpu-a[01-03,07],gpu-b12</c> or <c>r[1-2]n[08-10]</c>.
/// A range keeps the width of its lower bound (<c>[08-10]</c> gives 08, 09, 10); several groups in one expression
/// expand as their product, the leftmost varying slowest, which is Slurm's order. Our own parser: the ranks need
/// the first host before any Slurm tool (scontrol) can be assumed present on a compute node.
/// </summary>
public static class SlurmHostList
{
    /// <summary>The most hosts one list may expand to: a typo like <c>n[1-999999999]</c> fails instead of eating memory.</summary>
    public const int MaxHosts = 1 << 20;

    /// <summary>Every host of <paramref name="list"/>, in Slurm's order.</summary>
    /// <exception cref="FormatException">One line naming the fault, its position, and the expected form.</exception>
    public static IReadOnlyList<string> Expand(string list)
    {
        var hosts = new List<string>();
        foreach (var (expression, start) in SplitTopLevel(list))
        {
            var groups = ParseExpression(list, expression, start);
            long count = 1;
            foreach (var g in groups) count *= g.Count;
            if (hosts.Count + count > MaxHosts) throw Fault(list, start, $"expands to more than {MaxHosts} hosts");
            AppendProduct(groups, 0, new StringBuilder(), hosts);
        }
        return hosts;
    }

    /// <summary>The first host of <paramref name="list"/>: where srun puts task 0. The whole list is checked.</summary>
    public static string First(string list) => Expand(list)[0];

    // Commas inside brackets separate numbers of one group; only those outside separate hosts.
    private static List<(string Expression, int Start)> SplitTopLevel(string list)
    {
        if (string.IsNullOrWhiteSpace(list)) throw Fault(list ?? "", 0, "is empty");
        var parts = new List<(string, int)>();
        int depth = 0, start = 0;
        for (int i = 0; i <= list.Length; i++)
        {
            char c = i < list.Length ? list[i] : ',';
            if (c == '[')
            {
                if (depth > 0) throw Fault(list, i, "has a '[' inside brackets");
                depth++;
            }
            else if (c == ']')
            {
                if (depth == 0) throw Fault(list, i, "has a ']' with no '['");
                depth--;
            }
            else if (c == ',' && depth == 0)
            {
                if (i == start) throw Fault(list, i, "has an empty host name");
                parts.Add((list[start..i], start));
                start = i + 1;
            }
            else if (char.IsWhiteSpace(c) || char.IsControl(c)) throw Fault(list, i, "has a space or control character");
        }
        if (depth != 0) throw Fault(list, list.Length, "has a '[' that is never closed");
        return parts;
    }

    // An expression as a list of alternatives per position: literal text is a group of one.
    private static List<List<string>> ParseExpression(string list, string expression, int offset)
    {
        var groups = new List<List<string>>();
        int i = 0;
        while (i < expression.Length)
        {
            int open = expression.IndexOf('[', i);
            if (open < 0)
            {
                groups.Add([expression[i..]]);
                break;
            }
            if (open > i) groups.Add([expression[i..open]]);
            int close = expression.IndexOf(']', open);
            groups.Add(ParseRanges(list, expression[(open + 1)..close], offset + open + 1));
            i = close + 1;
        }
        return groups;
    }

    private static List<string> ParseRanges(string list, string body, int offset)
    {
        if (body.Length == 0) throw Fault(list, offset, "has empty brackets");
        var values = new List<string>();
        int at = offset;
        foreach (string item in body.Split(','))
        {
            if (item.Length == 0) throw Fault(list, at, "has an empty item in brackets");
            int dash = item.IndexOf('-');
            string low = dash < 0 ? item : item[..dash], high = dash < 0 ? item : item[(dash + 1)..];
            if (!IsNumber(low) || !IsNumber(high)) throw Fault(list, at, $"has '{item}' in brackets, expected a number or LOW-HIGH");
            if (low.Length > 18 || high.Length > 18) throw Fault(list, at, $"has a number too long in '{item}'");
            long lo = long.Parse(low), hi = long.Parse(high);
            if (lo > hi) throw Fault(list, at, $"has the range '{item}' running backwards");
            if (values.Count + (hi - lo + 1) > MaxHosts) throw Fault(list, at, $"expands to more than {MaxHosts} hosts");
            // The lower bound's width is the padding: [08-10] gives 08, 09, 10 and [8-10] gives 8, 9, 10.
            for (long v = lo; v <= hi; v++) values.Add(v.ToString().PadLeft(low.Length, '0'));
            at += item.Length + 1;
        }
        return values;
    }

    private static bool IsNumber(string s)
    {
        if (s.Length == 0) return false;
        foreach (char c in s) if (c is < '0' or > '9') return false;
        return true;
    }

    private static void AppendProduct(List<List<string>> groups, int index, StringBuilder prefix, List<string> hosts)
    {
        if (index == groups.Count)
        {
            hosts.Add(prefix.ToString());
            return;
        }
        int length = prefix.Length;
        foreach (string part in groups[index])
        {
            prefix.Append(part);
            AppendProduct(groups, index + 1, prefix, hosts);
            prefix.Length = length;
        }
    }

    private static FormatException Fault(string list, int position, string what) =>
        new($"Slurm host list '{list}' {what} (at character {position + 1}); expected a form like gpu-a[01-03,07],gpu-b12");
}
