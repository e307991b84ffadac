using System.Globalization;
using NativeParallel.Cli.Plots;
using NativeParallel.Comm;
using NativeParallel.Comm.Rendezvous;
using NativeParallel.Devices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels;
using NativeParallel.Tensors;

namespace NativeParallel.Cli.Commands;

/// <summary>
/// <c>nativeparallel bench collectives</c>: nccl-tests' flags and table. Run inside a launched job (launch,
/// torchrun, mpirun) every process is a rank and rank 0 prints; run alone with --ranks N it starts N local
/// ranks itself (processes, or threads with --transport threads). With --soak N it runs N random collectives
/// instead of the sweep (<see cref="CollectiveSoak"/>), each checked exactly, and prints one summary line.
/// </summary>
internal static class BenchCollectivesCommand
{
    private static readonly string[] Ops = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "all_to_all", "sendrecv"];

    public static int Run(string[] args)
    {
        var line = new CommandLine(args, "help", "quiet");
        if (Entry.HelpRequested(line)) return 0;
        string op = line.Option("op", "all_reduce")!;
        string? maxOption = line.Option("e");
        long minBytes = ParseSize(line.Option("b", "8")!), maxBytes = ParseSize(maxOption ?? "64M");
        double factor = line.Double("f", 2);
        int iterations = line.Int32("n", 20), warmup = line.Int32("w", 5);
        bool check = line.Int("c", 1) != 0;
        var dtype = DTypes.Parse(line.Option("d", "float")!);
        var redop = Enum.TryParse<ReduceOp>(line.Option("o", "sum"), ignoreCase: true, out var parsed) ? parsed
            : throw new UsageException("-o must be sum, prod, max, min or avg");
        int root = line.Int32("r", 0);
        int ranks = line.Int32("ranks", 1);
        string? transport = line.Option("transport");
        string device = line.Option("device", "cpu")!;
        string? json = line.Option("json");
        bool soakGiven = line.Option("soak") is not null;
        long soak = line.Int("soak", 0);
        string seedText = line.Option("seed", "1")!;
        string? tracePath = line.Option("trace");
        string? plotPath = PlotFile.Check(line.Option("plot"));
        string? baselinePath = line.Option("baseline");
        bool quiet = line.Flag("quiet");
        line.RejectUnknown();
        if (baselinePath is not null && plotPath is null) throw new UsageException("--baseline FILE is drawn on the plot: give --plot FILE.png or FILE.svg too");
        if (soakGiven && plotPath is not null) throw new UsageException("--plot draws the size sweep; the soak (--soak N) has no curve to plot");
        // Read before any rank starts, so a bad baseline costs no benchmark run.
        var baseline = baselinePath is null ? null : CollectiveBaseline.Read(baselinePath);
        if (ranks < 1 || ranks > LocalLauncher.MaxRanks) throw new UsageException($"--ranks must be from 1 to {LocalLauncher.MaxRanks} local ranks; got {ranks}");
        if (root < 0 || root >= ranks && LaunchEnvironment.Detect() is null) throw new UsageException($"-r (root) must be a rank from 0 to {ranks - 1}; got {root}");
        if ((soakGiven && soak < 1) || soak > int.MaxValue) throw new UsageException($"--soak must be a number of collectives from 1 to {int.MaxValue}; got {soak}");
        if (!ulong.TryParse(seedText, out ulong seed)) throw new UsageException($"--seed must be a non-negative integer; got '{seedText}'");
        if (!Ops.Contains(op)) throw new UsageException($"--op must be one of {string.Join(", ", Ops)}");
        if (minBytes < 0 || maxBytes < minBytes || factor < 1 || iterations < 1 || warmup < 0) throw new UsageException("need 0 <= -b <= -e, -f >= 1, -n >= 1, -w >= 0");
        // -f 1 steps one byte at a time: bounded, so -b 0 -e 64M cannot mean 64 million sizes.
        if (factor < 1.01 && maxBytes - minBytes > 4096) throw new UsageException($"-f {factor} steps about a byte at a time; from -b {minBytes} to -e {maxBytes} give -f 2 (or -e at most 4 KB above -b)");
        if (transport is not null and not ("shm" or "tcp" or "threads")) throw new UsageException("--transport must be shm, tcp or threads");
        var options = new CollectiveBenchmark.Options(op, minBytes, maxBytes, factor, iterations, warmup, check, dtype, redop, root);
        using var buffers = device == "cpu" ? null : DeviceRegistry.Open(device);
        options = options with { Device = buffers };
        // A soak's sizes go up to 8 MB unless -e caps them.
        var soakOptions = new CollectiveSoak.Options((int)soak, seed, maxOption is null ? 8L << 20 : maxBytes);
        if (soak > 0 && buffers is not null) throw new UsageException("--soak runs on host buffers only (--device cpu)");
        int Work(ProcessGroup group, bool print, string? jsonPath)
        {
            // Inside a launched job the world's size is known only here.
            if (root >= group.Size) throw new UsageException($"-r (root) must be a rank from 0 to {group.Size - 1}; got {root}");
            return soak > 0 ? SoakCommand.Soak(group, soakOptions, print, jsonPath, line, quiet) : Bench(group, options, jsonPath, print, line, plotPath, baseline);
        }

        if (LaunchEnvironment.Detect() is not null)
        {
            using var trace = TraceFile.Start(tracePath);
            using var group = ProcessGroup.FromEnvironment("bench", transport == "threads" ? null : transport);
            return Work(group, group.Rank == 0, json);
        }
        if (ranks > 1 && transport != "threads")
        {
            // Start the ranks as processes of this same command; rank 0's lines are the report.
            string self = Environment.ProcessPath!;
            var command = new List<string> { self };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet") command.Add(typeof(Entry).Assembly.Location);
            command.AddRange(["bench", "collectives"]);
            command.AddRange(args.Where((a, i) => a != "--ranks" && (i == 0 || args[i - 1] != "--ranks")));
            var environment = new Dictionary<string, string>();
            if (transport is not null) environment["NATIVEPARALLEL_TRANSPORT"] = transport;
            // One core per rank, as mpirun binds its ranks, when there are cores enough (NATIVEPARALLEL_BIND overrides).
            if (ranks <= Environment.ProcessorCount && Tunables.Raw("NATIVEPARALLEL_BIND") is null) environment["NATIVEPARALLEL_BIND"] = "core";
            var gate = new object();
            return LocalLauncher.Run(ranks, command, environment, (rank, text, error) =>
            {
                if (rank == 0 || error) lock (gate) (error ? Console.Error : Console.Out).WriteLine(rank == 0 ? text : $"[rank {rank}] {text}");
            });
        }
        // Local process ranks get --trace with the rest of the command line and write a file each; thread ranks share one.
        using var threadTrace = TraceFile.Start(tracePath);
        var groups = ProcessGroup.CreateThreadGroup(Math.Max(ranks, 1), "bench");
        var codes = new int[groups.Length];
        var failures = new Exception?[groups.Length];
        var threads = groups.Select((g, r) => new Thread(() =>
        {
            using var traced = Tracer.BindRank(r);
            // A rank's failure is rethrown on the calling thread after every rank has ended, where the CLI turns it
            // into one line; thrown on the rank's own thread it would end the process with a stack trace.
            try { codes[r] = Work(g, r == 0, r == 0 ? json : null); }
            catch (Exception e) { failures[r] = e; }
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        foreach (var g in groups) g.Dispose();
        if (failures.FirstOrDefault(f => f is not null) is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        return codes.Max();
    }

    private static int Bench(ProcessGroup group, CollectiveBenchmark.Options o, string? json, bool print, CommandLine line, string? plot, CollectiveBaseline? baseline)
    {
        if (print)
        {
            Console.WriteLine($"# nativeparallel bench collectives: {o.Op}, {group.Size} ranks over {group.TransportName}, buffers on {o.Device?.Name ?? "cpu"}, minBytes {o.MinBytes} maxBytes {o.MaxBytes} " +
                              $"step: {o.Factor}(factor) warmup iters: {o.Warmup} iters: {o.Iterations} validation: {(o.Check ? 1 : 0)}");
            Console.WriteLine("#");
            Console.WriteLine("#                                                              out-of-place                       in-place          ");
            Console.WriteLine("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong");
            Console.WriteLine("#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       ");
        }
        var rows = CollectiveBenchmark.Run(group, o, row =>
        {
            if (!print) return;
            string inPlace = row.InPlaceUs is { } us
                ? string.Create(CultureInfo.InvariantCulture, $"{us,9:F2} {row.InPlaceAlgBw,7:F2} {row.InPlaceBusBw,7:F2} {row.InPlaceWrong,6}")
                : $"{"N/A",9} {"N/A",7} {"N/A",7} {"N/A",6}";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{row.Bytes,12} {row.Count,13} {row.Type,9} {row.RedOp,7} {row.Root,7} {row.OutOfPlaceUs,9:F2} {row.OutOfPlaceAlgBw,7:F2} {row.OutOfPlaceBusBw,7:F2} {row.OutOfPlaceWrong,6} {inPlace}"));
        });
        long wrong = rows.Sum(r => r.OutOfPlaceWrong + (r.InPlaceWrong ?? 0));
        var busbws = rows.SelectMany(r => r.InPlaceBusBw is { } b ? new[] { r.OutOfPlaceBusBw, b } : new[] { r.OutOfPlaceBusBw }).ToArray();
        if (print)
        {
            Console.WriteLine($"# Out of bounds values : {wrong} {(wrong == 0 ? "OK" : "FAILED")}");
            // Which path device buffers took (rank 0's counts): device-direct on peers' buffers, or through host memory.
            if (o.Device is { } device && device is not CpuDevice)
                Console.WriteLine($"# Device path          : {group.DeviceDirectCalls} collectives device-direct, {group.StagedBytes} bytes staged through host memory" +
                                  // Processes on one GPU: IPC handles are exported and opened once per buffer, not per call.
                                  (group.IpcHandleCalls is { } ipc ? $"; CUDA IPC handles {ipc.Exports} exported, {ipc.Opens} opened" : ""));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"# Avg bus bandwidth    : {(busbws.Length > 0 ? busbws.Average() : 0):F5}"));
            Console.WriteLine("#");
            JsonReport.Write(json, "bench collectives", line, new { op = o.Op, ranks = group.Size, transport = group.TransportName, dtype = o.DType.Name(), rows, wrong });
            if (plot is not null)
                CollectivesPlot.Save(plot, $"{o.Op}, {group.Size} ranks over {group.TransportName}, {o.DType.Name()}, buffers on {o.Device?.Name ?? "cpu"}", rows, baseline);
        }
        return wrong == 0 ? 0 : 1;
    }

    /// <summary>Bytes from "8", "64K", "16M", "1G".</summary>
    public static long ParseSize(string text)
    {
        text = text.Trim();
        long unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        string digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, out long n) && n >= 0 ? n * unit : throw new UsageException($"bad size '{text}': expected e.g. 8, 64K, 16M, 1G");
    }
}
