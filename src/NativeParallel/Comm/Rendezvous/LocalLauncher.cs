using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// Starts N ranks of a command on this host with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a fresh random NATIVEPARALLEL_JOB_SECRET (unless one is set
/// already), so only these ranks get into the job's store and connections; forwards their output line by line, and returns the first
/// failing exit code. When one rank fails, the others get a grace period to notice (they fail their
/// collectives on the dead peer) and are then killed: no orphan keeps running.
/// </summary>
public static class LocalLauncher
{
    /// <summary>The most ranks one host starts (a bound that catches a mistyped count before it forks thousands of processes).</summary>
    public const int MaxRanks = 256;

    /// <summary>Runs <paramref name="command"/> as <paramref name="ranks"/> processes; <paramref name="output"/> gets (rank, line, isError).</summary>
    public static int Run(int ranks, IReadOnlyList<string> command, IReadOnlyDictionary<string, string>? environment,
        Action<int, string, bool> output, TimeSpan? grace = null)
    {
        if (ranks < 1) throw new ArgumentOutOfRangeException(nameof(ranks), "at least one rank");
        if (command.Count == 0) throw new ArgumentException("no command to launch");
        int port = FreePort();
        // One token for the whole job, fresh each launch: another job on this host cannot know it.
        string secret = environment?.GetValueOrDefault(JobSecret.Variable) ?? Diagnostics.Tunables.Raw(JobSecret.Variable) ?? JobSecret.NewToken();
        var processes = new Process[ranks];
        for (int r = 0; r < ranks; r++)
        {
            var info = new ProcessStartInfo(command[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in command.Skip(1)) info.ArgumentList.Add(arg);
            info.Environment["RANK"] = r.ToString();
            info.Environment["WORLD_SIZE"] = ranks.ToString();
            info.Environment["LOCAL_RANK"] = r.ToString();
            info.Environment["LOCAL_WORLD_SIZE"] = ranks.ToString();
            info.Environment["MASTER_ADDR"] = "127.0.0.1";
            info.Environment["MASTER_PORT"] = port.ToString();
            info.Environment[JobSecret.Variable] = secret;
            if (environment is not null) foreach (var (k, v) in environment) info.Environment[k] = v;
            int rank = r;
            var p = new Process { StartInfo = info, EnableRaisingEvents = true };
            p.OutputDataReceived += (_, e) => { if (e.Data is not null) output(rank, e.Data, false); };
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) output(rank, e.Data, true); };
            try
            {
                p.Start();
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                foreach (var started in processes.Take(r)) Kill(started);
                throw new InvalidOperationException($"launch: cannot start '{command[0]}': {e.Message}", e);
            }
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            processes[r] = p;
        }
        int? firstFailure = null;
        DateTime? killAt = null;
        var limit = grace ?? TimeSpan.FromSeconds(30);
        while (processes.Any(p => !p.HasExited))
        {
            foreach (var p in processes)
                if (p.HasExited && p.ExitCode != 0 && firstFailure is null)
                {
                    firstFailure = p.ExitCode;
                    killAt = DateTime.UtcNow + limit;
                }
            if (killAt is { } deadline && DateTime.UtcNow > deadline)
            {
                foreach (var p in processes.Where(p => !p.HasExited))
                {
                    output(Array.IndexOf(processes, p), $"launch: killed after rank failure (still running {limit.TotalSeconds:F0} s later)", true);
                    Kill(p);
                }
                break;
            }
            Thread.Sleep(20);
        }
        foreach (var p in processes) p.WaitForExit();
        return firstFailure ?? processes.Select(p => p.ExitCode).FirstOrDefault(c => c != 0);
    }

    private static void Kill(Process p)
    {
        try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
