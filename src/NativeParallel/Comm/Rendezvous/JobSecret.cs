using System.Security.Cryptography;
using System.Text;

namespace NativeParallel.Comm.Rendezvous;

/// <summary>
/// The key a job's connections prove they know (<see cref="JobHandshake"/>): rank 0's store and every tcp
/// connection between ranks admit only a peer that holds it. It is NATIVEPARALLEL_JOB_SECRET when set
/// (<c>nativeparallel launch</c> sets a fresh random one for its ranks; torchrun, mpirun and Slurm users pass
/// their own to every rank). Unset, the key is derived from what every rank of the job already shares (launcher,
/// world size, store address and port, the launcher's job id where it gives one): that keeps out other jobs,
/// stray connections and garbage, but not a process that knows those coordinates, so rank 0 warns once.
/// </summary>
public sealed class JobSecret
{
    /// <summary>The environment variable that carries the secret.</summary>
    public const string Variable = "NATIVEPARALLEL_JOB_SECRET";

    private JobSecret(byte[] key, bool derived, string source)
    {
        Key = key;
        Derived = derived;
        Source = source;
    }

    /// <summary>The HMAC key (SHA-256 of the secret text, so any length of token gives a full-size key).</summary>
    internal byte[] Key { get; }

    /// <summary>True when no secret was set and the key comes from the job's shared coordinates.</summary>
    public bool Derived { get; }

    /// <summary>Where the key came from, for messages (never the secret itself).</summary>
    public string Source { get; }

    /// <summary>A key from an explicit secret text.</summary>
    public static JobSecret FromText(string secret) =>
        new(SHA256.HashData(Encoding.UTF8.GetBytes("nativeparallel job secret|" + secret)), derived: false, Variable);

    /// <summary>A fresh random token, what <c>launch</c> gives its ranks: 32 bytes, hex.</summary>
    public static string NewToken() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32)).ToLowerInvariant();

    /// <summary>The job's key: the secret <paramref name="env"/> carries, else NATIVEPARALLEL_JOB_SECRET when set, else derived from <paramref name="env"/>.</summary>
    public static JobSecret For(LaunchEnvironment env, Func<string, string?>? read = null)
    {
        read ??= Environment.GetEnvironmentVariable;
        if (env.Secret is { } carried) return new(SHA256.HashData(Encoding.UTF8.GetBytes("nativeparallel job secret|" + carried)), derived: false, "the job's id");
        if (LaunchEnvironment.Text(read, Variable) is { } secret) return FromText(secret);
        // Only values every rank of one job sees alike: the launcher's job id, never a per-rank or per-host value.
        string jobId = LaunchEnvironment.Text(read, "TORCHELASTIC_RUN_ID")
                       ?? (LaunchEnvironment.Text(read, "SLURM_JOB_ID") is { } slurm ? $"{slurm}.{LaunchEnvironment.Text(read, "SLURM_STEP_ID")}" : null)
                       ?? LaunchEnvironment.Text(read, "PMIX_NAMESPACE")
                       ?? "";
        string shared = $"nativeparallel derived job key|{env.Launcher}|{env.WorldSize}|{env.MasterAddress}|{env.MasterPort}|{jobId}";
        return new JobSecret(SHA256.HashData(Encoding.UTF8.GetBytes(shared)), derived: true,
            $"derived from the job's launcher, size, store address and port ({Variable} is not set)");
    }

    /// <summary>The one-line warning rank 0 prints when the key is derived.</summary>
    public static string DerivedWarning(LaunchEnvironment env) =>
        $"{Variable} is not set: rank 0's store at port {env.MasterPort} and the tcp connections admit any process that knows this job's " +
        $"launcher, size, store address and port; set {Variable} to the same random token on every rank to keep other processes out " +
        "(e.g. export it before torchrun or srun, or mpirun -x " + Variable + ")";
}
