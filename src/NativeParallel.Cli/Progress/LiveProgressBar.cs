using System.Text;
using Spectre.Console;

namespace NativeParallel.Cli.Progress;

/// <summary>
/// A Spectre.Console progress bar at the bottom of an interactive terminal while a command keeps writing lines.
/// Spectre's live display owns the cursor, so for its lifetime Console.Out and Console.Error are routed through
/// the same Spectre console a line at a time, which prints each above the bar; both are restored at the end.
/// Spectre's Progress runs its callback on a thread of its own here, which waits until the work is done.
/// </summary>
internal sealed class LiveProgressBar : IDisposable
{
    private readonly TextWriter _out, _error;
    private readonly LineForwarder _forwarder;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _started = new(), _finished = new();
    private ProgressTask? _task;

    public LiveProgressBar(string description, long total)
    {
        (_out, _error) = (Console.Out, Console.Error);
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(_out) });
        _forwarder = new LineForwarder(console);
        _thread = new Thread(() =>
        {
            try
            {
                console.Progress().AutoClear(true)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                    .Start(context =>
                    {
                        _task = context.AddTask(Markup.Escape(description), maxValue: Math.Max(1, total));
                        _started.Set();
                        _finished.Wait();
                    });
            }
            catch (Exception)
            {
                // The bar is a convenience: a terminal Spectre cannot draw on must not end the command (an exception
                // on this thread would end the process), which then runs without a bar.
            }
            finally
            {
                _started.Set();
            }
        }) { IsBackground = true, Name = "progress" };
        _thread.Start();
        _started.Wait();
        Console.SetOut(_forwarder);
        Console.SetError(_forwarder);
    }

    public void Update(string description, long done)
    {
        if (_task is not { } task) return;
        task.Description = Markup.Escape(description);
        task.Value = done;
    }

    public void Dispose()
    {
        _finished.Set();
        _thread.Join();
        Console.SetOut(_out);
        Console.SetError(_error);
        // A line begun under the bar and not ended yet (streamed text) goes on where it will be finished.
        _out.Write(_forwarder.TakePartialLine());
    }

    /// <summary>Collects written text and hands complete lines to the Spectre console as literal text (no markup).</summary>
    private sealed class LineForwarder(IAnsiConsole console) : TextWriter
    {
        private readonly StringBuilder _line = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            lock (_line)
            {
                if (value == '\r') return;
                if (value != '\n')
                {
                    _line.Append(value);
                    return;
                }
                // Broken here, one column short of the terminal's width: a line Spectre wraps itself, or one that fills
                // the last column, leaves the bar's old drawing behind when it is redrawn.
                int width = Math.Max(20, console.Profile.Width - 1);
                string line = _line.ToString();
                _line.Clear();
                for (int start = 0; start == 0 || start < line.Length; start += width)
                    console.Write(new Spectre.Console.Text(line.Substring(start, Math.Min(width, line.Length - start)) + "\n"));
            }
        }

        public override void Write(string? value)
        {
            foreach (char c in value ?? "") Write(c);
        }

        /// <summary>The text written since the last newline, taken out.</summary>
        public string TakePartialLine()
        {
            lock (_line)
            {
                string partial = _line.ToString();
                _line.Clear();
                return partial;
            }
        }
    }
}
