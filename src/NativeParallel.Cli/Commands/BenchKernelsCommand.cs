using System.Globalization;
using System.Text;
using NativeParallel.Benchmarks;
using NativeParallel.Cli.Plots;
using NativeParallel.Devices;

namespace NativeParallel.Cli.Commands;

/// <summary><c>nativeparallel bench kernels</c>: timed kernels beside the device copy bandwidth and cuBLAS.</summary>
internal static class BenchKernelsCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        string? deviceName = line.Option("device");
        int warmup = line.Int32("warmup", 3);
        int repeats = line.Int32("repeats", 20);
        string? json = line.Option("json");
        string? markdown = line.Option("markdown");
        string? tracePath = line.Option("trace");
        string? plotPath = PlotFile.Check(line.Option("plot"));
        string? op = line.Option("op");
        string version = line.Option("version") ?? "default";
        line.RejectUnknown();
        if (repeats < 1 || warmup < 0) throw new UsageException("--repeats must be at least 1 and --warmup at least 0");
        if (op is not null && !KernelBenchmarks.Ops.Contains(op))
            throw new UsageException($"--op {op}: no such kernel benchmark; there are {string.Join(", ", KernelBenchmarks.Ops)}");
        if (version is not ("default" or "all")) throw new UsageException($"--version {version}: expected default or all");

        using var trace = TraceFile.Start(tracePath);
        using var device = DeviceRegistry.Open(deviceName);
        if (device.Kind == DeviceKind.Emu)
            throw new UsageException("bench kernels: the emulated device checks kernels, it does not time them (fibers are thousands of times slower than a GPU); use --device cuda or cpu");
        Console.WriteLine($"bench kernels on {device.Name}: {device.Description}; median of {repeats} runs after {warmup} warm-up, L2 flushed before each");
        Console.WriteLine($"{"kernel",-38} {"shape",-34} {"median ms",10} {"achieved",16} {"baseline",24} {"ratio",7}  check");
        var results = KernelBenchmarks.Run(device, warmup, repeats, r => Console.WriteLine(Row(r)), op, allVersions: version == "all");

        JsonReport.Write(json, "bench kernels", line, new { device = device.Name, description = device.Description, warmup, repeats, results });
        if (plotPath is not null) KernelsPlot.Save(plotPath, device.Name, results);
        if (markdown is not null)
        {
            var sb = new StringBuilder();
            sb.AppendLine($"# Kernel benchmark on {device.Name}");
            sb.AppendLine();
            sb.AppendLine($"{device.Description}. Median of {repeats} event-timed runs after {warmup} warm-up runs, L2 flushed before each run. " +
                          $"Date {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC. Command: `nativeparallel bench kernels --device {device.Name}`.");
            sb.AppendLine();
            sb.AppendLine("| kernel | shape | median ms | achieved | baseline | ratio | check |");
            sb.AppendLine("|---|---|---:|---:|---|---:|---|");
            foreach (var r in results)
                sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Name} | {r.Shape} | {r.MedianMs:F3} | {r.Achieved:G3} {r.Unit} | {r.Baseline}{(r.BaselineValue is { } b ? $" ({b:G3} {r.Unit})" : "")} | {(r.Ratio is { } x ? $"{x:P0}" : "-")} | {r.Check} |"));
            File.WriteAllText(markdown, sb.ToString());
            Console.WriteLine($"wrote {markdown}");
        }
        return 0;
    }

    private static string Row(KernelBenchmarkResult r) =>
        $"{r.Name,-38} {r.Shape,-34} {r.MedianMs,10:F3} {$"{r.Achieved:G3} {r.Unit}",16} {r.Baseline,24} {(r.Ratio is { } x ? $"{x:P0}" : "-"),7}  {r.Check}";
}
