namespace NativeParallel.Comm;

/// <summary>
/// One rank's order of calls on one group: every call, synchronous or async, runs after every call issued before
/// it has finished, never beside one. Async calls are queued and run by one persistent worker thread (started by
/// the first async call, ended by <see cref="Dispose"/>). A synchronous call runs on its caller's thread: at once
/// when nothing is queued or running, else when the worker hands it the turn.
/// </summary>
/// <remarks>
/// Why a synchronous call runs inline rather than being queued and waited for: the common case (nothing queued)
/// then costs one uncontended lock and no thread switch, which small messages cannot afford; and work that
/// belongs to the caller's thread (a device context made current there, thread-local state) stays there.
/// Exactly one holder of the turn exists at any time (the worker running an async call, or a caller running a
/// synchronous one), so the group's engine state is only ever used by one thread at once.
/// </remarks>
internal sealed class OrderedQueue(string owner) : IDisposable
{
    // A queued call: async work (Work and Done set) or a synchronous caller waiting for its turn (Turn set).
    private sealed class Item
    {
        public Action? Work;
        public TaskCompletionSource? Done;
        public ManualResetEventSlim? Turn;
    }

    [ThreadStatic] private static OrderedQueue? t_holding;
    [ThreadStatic] private static bool t_worker;

    /// <summary>Whether the calling thread is a queue's worker, i.e. runs a call that was issued async (traces mark such calls).</summary>
    public static bool OnWorker => t_worker;

    private readonly object _gate = new();
    private readonly Queue<Item> _items = new();
    private bool _busy;       // someone holds the turn
    private bool _disposed;
    private Thread? _worker;

    /// <summary>Whether the calling thread holds this queue's turn (a call nested inside a queued one runs at once).</summary>
    public bool HeldHere => ReferenceEquals(t_holding, this);

    /// <summary>Runs <paramref name="work"/> on this thread once every earlier call has finished.</summary>
    public void Run(Action work) => Run(work, static w => w());

    /// <summary>
    /// Runs <paramref name="work"/>(<paramref name="state"/>) on this thread once every earlier call has finished:
    /// with a static lambda and a struct state, a call that finds the queue empty allocates nothing.
    /// </summary>
    public void Run<TState>(TState state, Action<TState> work)
    {
        if (HeldHere)
        {
            work(state);
            return;
        }
        Item? waiting = null;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, owner);
            if (!_busy && _items.Count == 0) _busy = true;
            else
            {
                waiting = new Item { Turn = new ManualResetEventSlim(false) };
                _items.Enqueue(waiting);
                StartWorker();
                Monitor.PulseAll(_gate);
            }
        }
        if (waiting is not null)
        {
            // Every call ahead of this one is bounded by the group's timeout, so this wait is too.
            waiting.Turn!.Wait();
            waiting.Turn.Dispose();
        }
        var outer = t_holding; // a call of another group's order may be running around this one
        try
        {
            t_holding = this;
            work(state);
        }
        finally
        {
            t_holding = outer;
            Release();
        }
    }

    /// <summary>Queues <paramref name="work"/> behind every earlier call; the task ends as it does (its exception included).</summary>
    public Task Enqueue(Action work)
    {
        // Continuations run elsewhere: a caller's continuation must never run on (and stall) the worker.
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, owner);
            _items.Enqueue(new Item { Work = work, Done = done });
            StartWorker();
            Monitor.PulseAll(_gate);
        }
        return done.Task;
    }

    private void StartWorker()
    {
        if (_worker is not null) return;
        // A background thread: a group the program forgot to dispose never keeps the process alive.
        _worker = new Thread(Work) { IsBackground = true, Name = $"{owner} queue" };
        _worker.Start();
    }

    private void Release()
    {
        lock (_gate)
        {
            _busy = false;
            Monitor.PulseAll(_gate);
        }
    }

    private void Work()
    {
        t_worker = true;
        while (true)
        {
            Item item;
            lock (_gate)
            {
                while (_busy || (_items.Count == 0 && !_disposed)) Monitor.Wait(_gate);
                if (_items.Count == 0) return; // disposed and drained
                item = _items.Dequeue();
                _busy = true;
            }
            if (item.Turn is not null)
            {
                // A synchronous caller's turn: it runs on its own thread and releases the turn when done.
                item.Turn.Set();
                continue;
            }
            try
            {
                t_holding = this;
                item.Work!();
                item.Done!.SetResult();
            }
            catch (Exception e)
            {
                item.Done!.SetException(e);
            }
            finally
            {
                t_holding = null;
                Release();
            }
        }
    }

    /// <summary>
    /// Lets every queued call run (each is bounded by the group's timeout, and after a failure the rest fail at
    /// once), then ends the worker. Later calls throw <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        Thread? worker;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            worker = _worker;
            Monitor.PulseAll(_gate);
        }
        if (worker is not null && worker != Thread.CurrentThread) worker.Join();
        // A synchronous call still running on another thread finishes before the transport goes.
        lock (_gate) while (_busy && !HeldHere) Monitor.Wait(_gate);
    }
}
