using NativeParallel.Comm.Rendezvous;

namespace NativeParallel.Cli.Commands;

/// <summary><c>nativeparallel launch -n N [--transport shm|tcp] -- COMMAND ARGS...</c>: N local ranks, output prefixed by rank.</summary>
internal static class LaunchCommand
{
    public static int Run(string[] args)
    {
        int separator = Array.IndexOf(args, "--");
        var options = new CommandLine(separator >= 0 ? args[..separator] : args, "help");
        if (Entry.HelpRequested(options)) return 0;
        int ranks = options.Int32("n", 0);
        string? transport = options.Option("transport");
        options.RejectUnknown();
        if (separator < 0 || separator == args.Length - 1) throw new UsageException("launch needs a command after --, e.g. launch -n 2 -- nativeparallel bench collectives");
        if (ranks < 1 || ranks > LocalLauncher.MaxRanks) throw new UsageException($"launch needs -n N with 1 <= N <= {LocalLauncher.MaxRanks}; got {ranks}");
        if (transport is not null and not ("shm" or "tcp")) throw new UsageException($"--transport must be shm or tcp; got '{transport}'");
        var environment = new Dictionary<string, string>();
        if (transport is not null) environment["NATIVEPARALLEL_TRANSPORT"] = transport;
        var gate = new object();
        return LocalLauncher.Run(ranks, args[(separator + 1)..], environment, (rank, line, error) =>
        {
            lock (gate) (error ? Console.Error : Console.Out).WriteLine($"[rank {rank}] {line}");
        });
    }
}
