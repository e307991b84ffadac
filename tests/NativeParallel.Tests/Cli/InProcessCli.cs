using NativeParallel.Cli;

namespace NativeParallel.Tests.Cli;

/// <summary>The command line run in this process with its output captured (stdout and stderr together).</summary>
internal static class InProcessCli
{
    public static (int Code, string Output) Run(params string[] args)
    {
        var (previousOut, previousError) = (Console.Out, Console.Error);
        var writer = new StringWriter();
        Console.SetOut(writer);
        Console.SetError(writer);
        try
        {
            return (Entry.Run(args), writer.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
        }
    }
}
