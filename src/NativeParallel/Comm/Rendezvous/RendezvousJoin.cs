using System.Diagnostics;
using System.Text;
using NativeParallel.Diagnostics;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// How the ranks of a launched job find each other: rank 0 hosts the store, every rank reaches it, publishes its
/// host and counts itself in, then waits until all have. Nothing waits in silence: every
/// NATIVEPARALLEL_RENDEZVOUS_PROGRESS_S (10 s) a waiting rank writes to stderr what it waits for (the store's
/// address and where it came from, how many of N joined, which ranks are missing and where they should run);
/// NATIVEPARALLEL_DEBUG=INFO logs each join on rank 0. At the timeout it fails naming the missing ranks.
/// </summary>
internal static class RendezvousJoin
{
    /// <summary>A finished rendezvous: the store connection, this job's key prefix and each rank's host identity (<see cref="HostIdentity"/>).</summary>
    internal sealed record Joined(TcpStore Store, string Job, string[] Hosts);

    /// <summary>Joins the job of <paramref name="env"/> within <paramref name="timeout"/>, reporting to <paramref name="progress"/>.</summary>
    public static Joined Join(LaunchEnvironment env, TimeSpan timeout, TimeSpan interval, TextWriter progress)
    {
        var clock = Stopwatch.StartNew();
        int n = env.WorldSize;
        string who = $"rank {env.Rank} of {n}";
        string at = $"{env.MasterAddress}:{env.MasterPort} (address from {env.AddressSource}, port from {env.PortSource})";
        string Clock() => $"{clock.Elapsed.TotalSeconds:F0} s of {timeout.TotalSeconds:F0} s";
        var nextReport = interval;

        string lastError = "no answer yet";
        var secret = JobSecret.For(env);
        if (secret.Derived && env.Rank == 0) Log.Warn(JobSecret.DerivedWarning(env));
        TcpStore store;
        try
        {
            store = TcpStore.Connect(env.MasterAddress, env.MasterPort, host: env.Rank == 0, timeout, secret, e =>
            {
                lastError = e.Message;
                if (clock.Elapsed < nextReport) return;
                progress.WriteLine($"NativeParallel rendezvous: {who} waits for rank 0's store at {at}: {lastError}; {Clock()}");
                nextReport = clock.Elapsed + interval;
            });
        }
        catch (TimeoutException e) when (env.Rank == 0)
        {
            throw new TimeoutException($"rendezvous: rank 0 of {n} hosts the store on port {env.MasterPort} but could not reach it at {at} within " +
                                       $"{timeout.TotalSeconds:F0} s ({lastError}); the store address must be rank 0's own host (set MASTER_ADDR)", e);
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            throw new System.Security.Authentication.AuthenticationException($"rendezvous: {who}: {e.Message}", e);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"rendezvous: {who} could not reach rank 0's store at {at} within {timeout.TotalSeconds:F0} s ({lastError}): " +
                                       $"rank 0{Where(env, 0)} is missing; start it, or give every rank the same MASTER_ADDR and MASTER_PORT", e);
        }

        try
        {
            TimeSpan Left() => timeout - clock.Elapsed;
            if (env.Rank == 0) store.Set("job", Guid.NewGuid().ToString("N")[..12]);
            if (!store.TryGet("job", Left(), out string? job))
                throw new TimeoutException($"rendezvous: {who} reached the store at {at} but rank 0 never published the job within {timeout.TotalSeconds:F0} s; is another program listening there?");
            // The identity decides shared memory or TCP per pair of ranks; the name is what people read.
            string host = HostIdentity.DisplayName;
            store.Set($"{job}/host/{env.Rank}", HostIdentity.Current);
            long order = store.Add($"{job}/joined", 1);
            store.Set($"{job}/join/{order}", $"rank {env.Rank} from {host}");
            Log.Info($"rendezvous: {who} joined the store at {at} from {host} ({order} of {n} so far)");

            // Rank 0 with INFO steps through the joins one by one to log each; the others wait for the last only.
            bool logEach = env.Rank == 0 && Log.InfoEnabled;
            for (long next = logEach ? 1 : n; next <= n;)
            {
                if (Left() <= TimeSpan.Zero)
                {
                    int[] missing = store.Missing($"{job}/host/", n);
                    throw new TimeoutException($"rendezvous at {at}: {who} waited {timeout.TotalSeconds:F0} s (NATIVEPARALLEL_TIMEOUT_S) and {n - missing.Length} of {n} ranks joined; " +
                                               $"{DescribeMissing(missing, env)}; check that they started and see the same MASTER_ADDR and MASTER_PORT");
                }
                var wait = TimeSpan.FromTicks(Math.Max(0, Math.Min(Left().Ticks, (nextReport - clock.Elapsed).Ticks)));
                if (store.TryGet($"{job}/join/{next}", wait, out string? joined))
                {
                    if (logEach) Log.Info($"rendezvous: {joined} joined ({next} of {n})");
                    next++;
                    continue;
                }
                if (clock.Elapsed < nextReport) continue;
                int[] absent = store.Missing($"{job}/host/", n);
                progress.WriteLine($"NativeParallel rendezvous: {who} waits at the store {at}: {n - absent.Length} of {n} ranks joined, {DescribeMissing(absent, env)}; {Clock()}");
                nextReport = clock.Elapsed + interval;
            }
            var hosts = new string[n];
            for (int r = 0; r < n; r++) hosts[r] = store.Get($"{job}/host/{r}", timeout);
            return new Joined(store, job, hosts);
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>"missing ranks 2-3 (expected on gpu-b12), 7 (expected on gpu-c01)", at most 8 groups then a count.</summary>
    internal static string DescribeMissing(IReadOnlyList<int> missing, LaunchEnvironment env)
    {
        if (missing.Count == 0) return "none missing";
        var text = new StringBuilder(missing.Count == 1 ? "missing rank " : "missing ranks ");
        int groups = 0, i = 0;
        while (i < missing.Count)
        {
            // A group: consecutive ranks on one node, e.g. 2-3 on gpu-b12.
            int j = i;
            string? node = env.Placement?.NodeOf(missing[i]);
            while (j + 1 < missing.Count && missing[j + 1] == missing[j] + 1 && env.Placement?.NodeOf(missing[j + 1]) == node) j++;
            if (groups == 8)
            {
                text.Append($", and {missing.Count - i} more");
                break;
            }
            if (groups > 0) text.Append(", ");
            text.Append(j == i ? $"{missing[i]}" : $"{missing[i]}-{missing[j]}");
            if (node is not null) text.Append($" (expected on {node})");
            groups++;
            i = j + 1;
        }
        return text.ToString();
    }

    private static string Where(LaunchEnvironment env, int rank) => env.Placement?.NodeOf(rank) is { } node ? $" (expected on {node})" : "";
}
