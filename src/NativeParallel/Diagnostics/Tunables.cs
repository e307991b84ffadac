namespace NativeParallel.Diagnostics;

/// <summary>
/// Every NATIVEPARALLEL_* environment variable, read in this one place (NCCL's NCCL_PARAM idea), typed and
/// documented. Values are read when first asked for.
/// </summary>
public static class Tunables
{
    /// <summary>The documented variables: name and meaning (printed by <c>nativeparallel --help</c> and <c>info</c>).</summary>
    public static readonly IReadOnlyList<(string Name, string Meaning)> All =
    [
        ("NATIVEPARALLEL_DEBUG", "log level: WARN (default), INFO, TRACE"),
        ("NATIVEPARALLEL_CACHE_DIR", "compiled-kernel cache folder (default $XDG_CACHE_HOME/nativeparallel/kernels or ~/.cache/nativeparallel/kernels); 'off' disables the cache"),
        ("NATIVEPARALLEL_CUDA", "path (file or folder) of the CUDA driver library, libcuda.so.1 / nvcuda.dll"),
        ("NATIVEPARALLEL_NVRTC", "path (file or folder) of NVRTC, libnvrtc.so.* / nvrtc64_*.dll"),
        ("NATIVEPARALLEL_CUBLAS", "path (file or folder) of cuBLAS, libcublas.so.* / cublas64_*.dll"),
        ("NATIVEPARALLEL_KERNELS_DIR", "a kernels/ folder whose .cu/.cuh files replace the embedded ones (edit and check a kernel without rebuilding)"),
        ("NATIVEPARALLEL_KERNEL_VERSION", "device kernel versions other than the defaults, op=version,...: matmul=v2|v3|v4 (bf16), matmul_bwd=v1|v2|v3 (bf16); bench kernels --version all times them side by side"),
        ("NATIVEPARALLEL_DECODE_BLOCKS_PER_SM", "one-warp blocks of the split attention decode resident per SM (default 12, the sm_90 build's): the keys are split so the grid fills every SM once"),
        ("NATIVEPARALLEL_CXX", "host C++ compiler of the emulated device (default g++, then clang++)"),
        ("NATIVEPARALLEL_TRANSPORT", "collectives between processes: shm (one host) or tcp for every pair; default chosen per pair: shm within a host, tcp between hosts"),
        ("NATIVEPARALLEL_HOST_ID", "this rank's host identity: ranks with equal ones share memory (default: hostname and boot id; set it where namespaces or containers share a kernel but should act as hosts)"),
        ("NATIVEPARALLEL_HOSTS_FILE", "a hosts file (/etc/hosts format) consulted first for MASTER_ADDR and Slurm node names, before the system resolver"),
        ("NATIVEPARALLEL_TIMEOUT_S", "seconds a collective, or the rendezvous, waits on its peers before failing every rank (default 300)"),
        ("NATIVEPARALLEL_RENDEZVOUS_PROGRESS_S", "seconds between a waiting rank's rendezvous progress lines on stderr: the store, who joined, who is missing (default 10)"),
        ("NATIVEPARALLEL_JOB_SECRET", "the job's secret: the store and tcp connections admit only ranks that prove it (launch sets a random one; torchrun, mpirun -x, srun: pass the same token to every rank; unset, a key derived from the job's launcher, size, address and port, with a warning)"),
        ("NATIVEPARALLEL_HANDSHAKE_TIMEOUT_S", "seconds a new store or tcp connection has to prove the job's secret before it is dropped (default 10)"),
        ("NATIVEPARALLEL_BIND", "core: each launched rank binds to core LOCAL_RANK mod cores, as mpirun does (bench collectives --ranks N sets it when N <= cores); none (default)"),
        ("NATIVEPARALLEL_PROGRESS_S", "least seconds between the plain progress lines (stderr) of kernels check, run, train and the soak when output is redirected (default 10; 0: one per item); a terminal gets a live bar, --quiet neither"),
        ("NATIVEPARALLEL_SHM_BUFFER", "bytes of each shared-memory ring between two ranks (default 4 MiB)"),
        ("NATIVEPARALLEL_SOCKETS", "tcp connections per peer, striped in 64 KiB slices (default 1; more for real networks)"),
        ("NATIVEPARALLEL_SOCKET_IFNAME", "network interface for the tcp transport (default: the one the route to the store host takes)"),
        ("NATIVEPARALLEL_ALGO", "all_reduce algorithm: ring or oneshot (default: oneshot up to NATIVEPARALLEL_ONESHOT_BYTES, else ring)"),
        ("NATIVEPARALLEL_ONESHOT_BYTES", "largest all_reduce sent one-shot, every rank to every rank in one hop (default 65536)"),
        ("NATIVEPARALLEL_DETERMINISTIC", "accepted for NCCL users; every algorithm already reduces in a fixed order, so results are bitwise identical on every rank and run"),
        ("NATIVEPARALLEL_FAULT", "fault injection for process ranks: exit:RANK:SEQUENCE makes that rank exit as it starts that collective"),
        ("NATIVEPARALLEL_DEVICE", "default device for run and the benchmarks: auto (CUDA when present, else cpu), cpu, emu, cuda or cuda:N"),
        ("NATIVEPARALLEL_REQUIRE", "comma list of capabilities that must be present (nvrtc, emu, mpi, fortunes, netns, cuda): tests fail instead of skipping"),
    ];

    /// <summary>Raw value of a variable, or null when unset or empty.</summary>
    public static string? Raw(string name)
    {
        string? value = Environment.GetEnvironmentVariable(name);
        return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
    }

    /// <summary>NATIVEPARALLEL_DEBUG.</summary>
    public static LogLevel Debug => Raw("NATIVEPARALLEL_DEBUG")?.ToUpperInvariant() switch
    {
        "INFO" => LogLevel.Info,
        "TRACE" => LogLevel.Trace,
        _ => LogLevel.Warn,
    };

    /// <summary>The kernel cache folder, or null when NATIVEPARALLEL_CACHE_DIR=off.</summary>
    public static string? KernelCacheDir
    {
        get
        {
            string? configured = Raw("NATIVEPARALLEL_CACHE_DIR");
            if (string.Equals(configured, "off", StringComparison.OrdinalIgnoreCase)) return null;
            if (configured is not null) return Path.GetFullPath(configured);
            string root = Raw("XDG_CACHE_HOME")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "nativeparallel", "kernels");
        }
    }

    /// <summary>NATIVEPARALLEL_KERNELS_DIR as a full path, or null.</summary>
    public static string? KernelsDir
    {
        get
        {
            string? dir = Raw("NATIVEPARALLEL_KERNELS_DIR");
            if (dir is null) return null;
            dir = Path.GetFullPath(dir);
            return Directory.Exists(dir) ? dir : throw new DirectoryNotFoundException($"NATIVEPARALLEL_KERNELS_DIR={dir} does not exist");
        }
    }

    /// <summary>NATIVEPARALLEL_CXX, or null for the default search.</summary>
    public static string? HostCompiler => Raw("NATIVEPARALLEL_CXX");

    /// <summary>NATIVEPARALLEL_DEVICE: cuda, cpu or auto.</summary>
    public static string DefaultDevice => Raw("NATIVEPARALLEL_DEVICE")?.ToLowerInvariant() ?? "auto";

    /// <summary>Capabilities listed in NATIVEPARALLEL_REQUIRE (lower case).</summary>
    public static IReadOnlySet<string> Required =>
        (Raw("NATIVEPARALLEL_REQUIRE") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => s.ToLowerInvariant()).ToHashSet();
}

/// <summary>Log levels of NATIVEPARALLEL_DEBUG.</summary>
public enum LogLevel
{
    /// <summary>Warnings only.</summary>
    Warn,
    /// <summary>One line per notable action (kernel compiles, cache hits, devices opened).</summary>
    Info,
    /// <summary>Everything.</summary>
    Trace,
}

/// <summary>Writes diagnostics to standard error, prefixed like NCCL's: <c>NativeParallel INFO ...</c>.</summary>
public static class Log
{
    // Read once: hot paths (every collective) ask whether to log, and must not pay for it when not.
    private static readonly LogLevel s_level = Tunables.Debug;

    /// <summary>True when INFO messages are written; test it before building an expensive message.</summary>
    public static bool InfoEnabled => s_level >= LogLevel.Info;

    /// <summary>Logs at INFO.</summary>
    public static void Info(string message)
    {
        if (InfoEnabled) Console.Error.WriteLine($"NativeParallel INFO {message}");
    }

    /// <summary>Logs a warning (always shown).</summary>
    public static void Warn(string message) => Console.Error.WriteLine($"NativeParallel WARN {message}");
}
