using System.Text.RegularExpressions;

namespace NativeParallel.Kernels;

/// <summary>What ptxas reported for one kernel entry point: registers, spills, stack, shared and constant memory.</summary>
public sealed record KernelResourceUsage(
    string Function, string Arch, int Registers, int SpillStoreBytes, int SpillLoadBytes, int StackFrameBytes,
    int SharedMemoryBytes, int ConstantMemoryBytes)
{
    /// <summary>True when ptxas spilled registers to local memory (a failure in <c>kernels check</c>).</summary>
    public bool Spills => SpillStoreBytes > 0 || SpillLoadBytes > 0;

    private static readonly Regex Entry = new(@"Compiling entry function '(?<name>[^']+)' for '(?<arch>[^']+)'", RegexOptions.Compiled);
    private static readonly Regex Frame = new(@"(?<stack>\d+) bytes stack frame, (?<store>\d+) bytes spill stores, (?<load>\d+) bytes spill loads", RegexOptions.Compiled);
    private static readonly Regex Used = new(@"Used (?<regs>\d+) registers(?<rest>.*)", RegexOptions.Compiled);
    private static readonly Regex Smem = new(@"(?<n>\d+) bytes smem", RegexOptions.Compiled);
    private static readonly Regex Cmem = new(@"(?<n>\d+) bytes cmem\[0\]", RegexOptions.Compiled);

    /// <summary>Parses the <c>--ptxas-options=-v</c> section of an NVRTC log; one record per entry function.</summary>
    public static IReadOnlyList<KernelResourceUsage> ParsePtxasLog(string log)
    {
        var result = new List<KernelResourceUsage>();
        string? name = null, arch = null;
        int stack = 0, store = 0, load = 0;
        foreach (string line in log.Split('\n'))
        {
            var entry = Entry.Match(line);
            if (entry.Success)
            {
                (name, arch, stack, store, load) = (entry.Groups["name"].Value, entry.Groups["arch"].Value, 0, 0, 0);
                continue;
            }
            if (name is null) continue;
            var frame = Frame.Match(line);
            if (frame.Success)
            {
                stack = int.Parse(frame.Groups["stack"].Value);
                store = int.Parse(frame.Groups["store"].Value);
                load = int.Parse(frame.Groups["load"].Value);
                continue;
            }
            var used = Used.Match(line);
            if (used.Success)
            {
                string rest = used.Groups["rest"].Value;
                var smem = Smem.Match(rest);
                var cmem = Cmem.Match(rest);
                result.Add(new KernelResourceUsage(name, arch!, int.Parse(used.Groups["regs"].Value), store, load, stack,
                    smem.Success ? int.Parse(smem.Groups["n"].Value) : 0, cmem.Success ? int.Parse(cmem.Groups["n"].Value) : 0));
                name = null;
            }
        }
        return result;
    }
}
