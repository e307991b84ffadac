using System.Diagnostics;
using System.Text;
using NativeParallel.Diagnostics;

namespace NativeParallel.Tests.Comm.Network;

/// <summary>
/// Two "hosts" for tests: two network namespaces joined by a veth pair, 10.213.0.1 in the first and 10.213.0.2
/// in the second (addresses that exist only inside them), each with its loopback up. Names carry this process's
/// id and a counter, so runs never collide; namespaces of test runs that died are removed at the next start.
/// Dispose kills whatever still runs inside and deletes both namespaces (the veth pair goes with them), whatever
/// the test did. Needs root and `ip netns add`: otherwise the test skips with the reason, unless
/// NATIVEPARALLEL_REQUIRE lists netns (CI), in which case it fails.
/// </summary>
internal sealed class TwoHostNetwork : IDisposable
{
    private const string Prefix = "npt";
    private static int _created;
    private readonly string[] _namespaces;
    private readonly string[] _interfaces;
    private bool _disposed;

    /// <summary>Each host's address on the link.</summary>
    public static readonly string[] Addresses = ["10.213.0.1", "10.213.0.2"];

    private TwoHostNetwork(string[] namespaces, string[] interfaces)
    {
        _namespaces = namespaces;
        _interfaces = interfaces;
    }

    /// <summary>The namespace of host <paramref name="host"/> (0 or 1).</summary>
    public string Namespace(int host) => _namespaces[host];

    /// <summary>Makes both hosts and the link, or skips (fails under NATIVEPARALLEL_REQUIRE=netns) when this machine cannot.</summary>
    public static TwoHostNetwork Create()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root")
            Missing($"network namespaces need root on Linux (running as {Environment.UserName} on {Environment.OSVersion})");
        RemoveLeftovers();
        int n = Interlocked.Increment(ref _created);
        string stem = $"{Prefix}{Environment.ProcessId}-{n}";
        // Interface names are at most 15 characters.
        string link = $"npv{Environment.ProcessId % 100000}x{n % 100}";
        var network = new TwoHostNetwork([$"{stem}a", $"{stem}b"], [$"{link}a", $"{link}b"]);
        var (code, output) = Ip("netns", "add", network._namespaces[0]);
        if (code != 0) Missing($"`ip netns add` failed ({output.Trim()})");
        try
        {
            network.Must("netns", "add", network._namespaces[1]);
            network.Must("link", "add", network._interfaces[0], "type", "veth", "peer", "name", network._interfaces[1]);
            for (int h = 0; h < 2; h++)
            {
                network.Must("link", "set", network._interfaces[h], "netns", network._namespaces[h]);
                network.Must("-n", network._namespaces[h], "addr", "add", $"{Addresses[h]}/24", "dev", network._interfaces[h]);
                network.Must("-n", network._namespaces[h], "link", "set", network._interfaces[h], "up");
                network.Must("-n", network._namespaces[h], "link", "set", "lo", "up");
            }
            return network;
        }
        catch
        {
            network.Dispose();
            throw;
        }
    }

    /// <summary>Limits what each host sends on the link to <paramref name="rate"/> (tc's token bucket, e.g. "100mbit").</summary>
    public void RateLimit(string rate)
    {
        // The bucket holds 64 KB (more than one jiffy of traffic at these rates); packets wait up to 200 ms for tokens.
        for (int h = 0; h < 2; h++)
            Must("netns", "exec", _namespaces[h], "tc", "qdisc", "add", "dev", _interfaces[h], "root", "tbf", "rate", rate, "burst", "64kb", "latency", "200ms");
    }

    /// <summary>Takes host <paramref name="host"/>'s end of the link down: packets stop, no connection is reset.</summary>
    public void TakeLinkDown(int host) => Must("-n", _namespaces[host], "link", "set", _interfaces[host], "down");

    /// <summary>Starts <c>nativeparallel ARGS</c> inside host <paramref name="host"/> with exactly the launcher variables given.</summary>
    public RankProcess Start(int host, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // ip netns exec replaces itself with the command: the process is the rank itself.
        foreach (string a in new[] { "netns", "exec", _namespaces[host], "dotnet", CliPath }.Concat(args)) info.ArgumentList.Add(a);
        foreach (string name in info.Environment.Keys.ToArray())
            if (IsLauncherVariable(name)) info.Environment.Remove(name);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        return new RankProcess(Process.Start(info)!);
    }

    /// <summary>Bytes host <paramref name="host"/> has sent on its end of the link (the kernel's counter).</summary>
    public long TransmittedBytes(int host)
    {
        var (code, output) = Ip("netns", "exec", _namespaces[host], "cat", $"/sys/class/net/{_interfaces[host]}/statistics/tx_bytes");
        return code == 0 && long.TryParse(output.Trim(), out long bytes) ? bytes : throw new InvalidOperationException($"tx_bytes of {_interfaces[host]}: {output}");
    }

    /// <summary>Process ids still running inside host <paramref name="host"/>.</summary>
    public int[] Pids(int host)
    {
        var (_, output) = Ip("netns", "pids", _namespaces[host]);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (string ns in _namespaces)
        {
            // Whatever a failed test left running in there: our own ranks.
            var (_, pids) = Ip("netns", "pids", ns);
            foreach (string pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                try { Process.GetProcessById(int.Parse(pid)).Kill(entireProcessTree: true); } catch (Exception e) when (e is ArgumentException or InvalidOperationException) { }
            Ip("netns", "del", ns);
        }
    }

    /// <summary>A rank started in a namespace: its output gathered as it comes.</summary>
    internal sealed class RankProcess : IDisposable
    {
        private readonly StringBuilder _output = new();
        private readonly Task _pump;

        public RankProcess(Process process)
        {
            Process = process;
            // Both streams drained at once, line by line, so a rank never blocks on a full pipe and its last words are kept.
            _pump = Task.WhenAll(Pump(process.StandardOutput), Pump(process.StandardError));
        }

        public Process Process { get; }

        /// <summary>Stdout and stderr so far, interleaved as they arrived.</summary>
        public string Output
        {
            get { lock (_output) return _output.ToString(); }
        }

        private Task Pump(StreamReader reader) => Task.Run(async () =>
        {
            while (await reader.ReadLineAsync() is { } line)
                lock (_output) _output.AppendLine(line);
        });

        /// <summary>Waits for the exit; false when it still runs after <paramref name="limit"/>.</summary>
        public bool WaitForExit(TimeSpan limit)
        {
            if (!Process.WaitForExit(limit)) return false;
            _pump.Wait(TimeSpan.FromSeconds(10));
            return true;
        }

        /// <summary>Waits until a line containing <paramref name="text"/> appears; false when the process ended or the time ran out first.</summary>
        public bool WaitForLine(string text, TimeSpan limit)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < limit)
            {
                if (Output.Contains(text)) return true;
                if (Process.HasExited) return WaitForExit(TimeSpan.FromSeconds(10)) && Output.Contains(text);
                Thread.Sleep(50);
            }
            return false;
        }

        public void Dispose()
        {
            try { if (!Process.HasExited) Process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            Process.Dispose();
        }
    }

    /// <summary>What is left of <paramref name="limit"/> since <paramref name="clock"/> started (never negative).</summary>
    public static TimeSpan Left(TimeSpan limit, Stopwatch clock) => limit > clock.Elapsed ? limit - clock.Elapsed : TimeSpan.Zero;

    private static string CliPath => Path.Combine(AppContext.BaseDirectory, "NativeParallel.Cli.dll");

    // The test host's own launcher variables (a CI job under Slurm or torchrun) must not leak into the simulated jobs.
    private static bool IsLauncherVariable(string name) =>
        name.StartsWith("SLURM_", StringComparison.Ordinal) || name.StartsWith("OMPI_", StringComparison.Ordinal) ||
        name is "RANK" or "WORLD_SIZE" or "LOCAL_RANK" or "LOCAL_WORLD_SIZE" or "GROUP_WORLD_SIZE" or "MASTER_ADDR" or "MASTER_PORT"
            or "TORCHELASTIC_USE_AGENT_STORE" or "NATIVEPARALLEL_TRANSPORT" or "NATIVEPARALLEL_HOST_ID" or "NATIVEPARALLEL_HOSTS_FILE"
            or "NATIVEPARALLEL_SOCKET_IFNAME" or "NATIVEPARALLEL_DEBUG" or "NATIVEPARALLEL_FAULT";

    // Namespaces named by a test process that no longer runs (killed mid-test): nothing else will remove them.
    private static void RemoveLeftovers()
    {
        var (code, output) = Ip("netns", "list");
        if (code != 0) return;
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string name = line.Split(' ')[0];
            var match = System.Text.RegularExpressions.Regex.Match(name, $@"^{Prefix}(\d+)-\d+[ab]$");
            if (match.Success && !Directory.Exists($"/proc/{match.Groups[1].Value}")) Ip("netns", "del", name);
        }
    }

    private void Must(params string[] args)
    {
        var (code, output) = Ip(args);
        if (code != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({code}): {output.Trim()}");
    }

    private static (int Code, string Output) Ip(params string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        try
        {
            using var process = Process.Start(info)!;
            var error = process.StandardError.ReadToEndAsync();
            string output = process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
            {
                process.Kill();
                return (-1, $"ip {string.Join(' ', args)} did not finish in 30 s");
            }
            return (process.ExitCode, output + error.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"cannot run ip: {e.Message} (Debian: apt-get install iproute2)");
        }
    }

    private static void Missing(string reason)
    {
        if (Tunables.Required.Contains("netns"))
            Assert.Fail($"NATIVEPARALLEL_REQUIRE lists 'netns' but network namespaces cannot be made here: {reason}");
        Assert.Skip(reason);
    }
}
