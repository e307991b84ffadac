using System.Diagnostics;
using System.Globalization;
using NativeParallel.Diagnostics;
using Spectre.Console;

namespace NativeParallel.Cli.Progress;

/// <summary>How a command shows its progress.</summary>
internal enum ProgressMode
{
    /// <summary>--quiet: nothing (results and errors still print).</summary>
    Off,
    /// <summary>Output redirected to a pipe or file: a plain line on stderr as items finish, at most one per NATIVEPARALLEL_PROGRESS_S seconds, no ANSI codes.</summary>
    Plain,
    /// <summary>An interactive terminal: a Spectre.Console bar under the command's output.</summary>
    Live,
}

/// <summary>
/// The progress of one long piece of work (kernels check's compiles and cases, run's checks and strategy table, train's
/// steps or layouts, the soak's collectives): a count of done items out of a total. Where it shows is decided here,
/// once: a live bar on an interactive terminal, plain lines on stderr when output is redirected, nothing with --quiet.
/// The command keeps printing its own lines as before; under a live bar they appear above it.
/// </summary>
internal sealed class WorkProgress : IDisposable
{
    private readonly object _gate = new();
    private readonly string _task, _unit;
    private readonly long _total;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TextWriter? _plain;
    private readonly double _plainInterval;
    private readonly LiveProgressBar? _live;
    private long _done;
    private double _lastPlainSeconds;
    private bool _disposed;

    private WorkProgress(ProgressMode mode, string task, long total, string unit, TextWriter error)
    {
        (_task, _total, _unit, Mode) = (task, Math.Max(0, total), unit, mode);
        if (mode == ProgressMode.Plain) (_plain, _plainInterval) = (error, PlainIntervalSeconds);
        if (mode == ProgressMode.Live) _live = new LiveProgressBar(Describe(null), _total);
    }

    /// <summary>How this progress shows.</summary>
    public ProgressMode Mode { get; }

    /// <summary>Starts reporting <paramref name="total"/> <paramref name="unit"/> of <paramref name="task"/> in the mode this process's output calls for.</summary>
    public static WorkProgress Start(string task, long total, string unit, bool quiet) =>
        new(quiet ? ProgressMode.Off : Detect(), task, total, unit, Console.Error);

    /// <summary>Starts reporting in a given mode (tests; plain lines go to <paramref name="error"/>).</summary>
    internal static WorkProgress Start(ProgressMode mode, string task, long total, string unit, TextWriter error) => new(mode, task, total, unit, error);

    /// <summary>
    /// Live only when both stdout and stderr are a terminal that takes ANSI codes (not TERM=dumb): any redirection,
    /// a pipe to a harness, a file, a test's captured output, gets plain lines.
    /// </summary>
    public static ProgressMode Detect()
    {
        if (Console.IsOutputRedirected || Console.IsErrorRedirected) return ProgressMode.Plain;
        if (Environment.GetEnvironmentVariable("TERM") is "dumb") return ProgressMode.Plain;
        return AnsiConsole.Profile.Capabilities is { Ansi: true, Interactive: true } ? ProgressMode.Live : ProgressMode.Plain;
    }

    /// <summary>NATIVEPARALLEL_PROGRESS_S: seconds between plain progress lines (default 10; 0 writes one per item).</summary>
    public static double PlainIntervalSeconds =>
        double.TryParse(Tunables.Raw("NATIVEPARALLEL_PROGRESS_S"), NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s >= 0 ? s : 10;

    /// <summary>One more item done (<paramref name="by"/> more); <paramref name="now"/> names what was just done or comes next.</summary>
    public void Advance(string? now = null, long by = 1)
    {
        lock (_gate)
        {
            if (_disposed) return;
            _done = Math.Min(_total, _done + by);
            _live?.Update(Describe(now), _done);
            if (_plain is null) return;
            double seconds = _clock.Elapsed.TotalSeconds;
            if (seconds - _lastPlainSeconds < _plainInterval) return;
            _lastPlainSeconds = seconds;
            _plain.WriteLine(PlainLine(now, seconds));
        }
    }

    /// <summary>Ends the display (a live bar is cleared; the command's own lines stay).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _live?.Dispose();
    }

    private string Describe(string? now) => $"{_task}: {_done}/{_total} {_unit}{(now is null ? "" : $" · {now}")}";

    private string PlainLine(string? now, double seconds)
    {
        var line = new System.Text.StringBuilder(string.Create(CultureInfo.InvariantCulture,
            $"progress {_task}: {_done}/{_total} {_unit} ({(_total == 0 ? 1 : (double)_done / _total):P0}), {seconds:F1} s"));
        if (_done > 0 && _done < _total)
            line.Append(string.Create(CultureInfo.InvariantCulture, $", about {seconds / _done * (_total - _done):F0} s left"));
        if (now is not null) line.Append($": {now}");
        return line.ToString();
    }
}
