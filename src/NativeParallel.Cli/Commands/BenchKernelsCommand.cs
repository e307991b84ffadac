namespace NativeParallel.Cli.Commands;

internal static class BenchKernelsCommand
{
    public static int Run(CommandLine line)
    {
        if (Entry.HelpRequested(line)) return 0;
        throw new UsageException("bench kernels: not yet implemented");
    }
}
