namespace NativeParallel.Devices;

/// <summary>
/// The stream each thread issues work to, per device: every kernel launch and every copy given no stream goes to
/// the calling thread's current stream of the tensor's device, which is the device's default stream until a
/// <see cref="UseStream"/> scope says otherwise (PyTorch's <c>torch.cuda.stream(s)</c>, NCCL's stream argument).
/// </summary>
/// <remarks>
/// Why an ambient stream rather than a stream parameter on every op: the ops are called from models, trainers and
/// collectives several layers down, and a scope set once around a phase (a backward pass, a bucket's all-reduce)
/// reaches all of them without threading a parameter through each signature. Async collectives capture the
/// caller's streams when they are issued and run under them on the group's worker (<see cref="Capture"/>), so a
/// collective is ordered on the stream that was current where it was called, as an NCCL call is on its stream.
/// </remarks>
public static class CurrentStreams
{
    // Few devices per thread: a short list beats a dictionary and allocates nothing on lookup.
    [ThreadStatic] private static List<(IDevice Device, IDeviceStream Stream)>? t_selected;

    /// <summary>The stream work on <paramref name="device"/> goes to from this thread when none is named.</summary>
    public static IDeviceStream CurrentStream(this IDevice device)
    {
        var selected = t_selected;
        if (selected is not null)
            for (int i = selected.Count - 1; i >= 0; i--)
                if (ReferenceEquals(selected[i].Device, device)) return selected[i].Stream;
        return device.DefaultStream;
    }

    /// <summary>Makes <paramref name="stream"/> this thread's current stream of its device until the scope ends (scopes nest).</summary>
    public static Scope UseStream(this IDevice device, IDeviceStream stream)
    {
        if (!ReferenceEquals(stream.Device, device))
            throw new ArgumentException($"the stream belongs to {stream.Device.Name}, not {device.Name}", nameof(stream));
        var selected = t_selected ??= new List<(IDevice, IDeviceStream)>(2);
        selected.Add((device, stream));
        return new Scope(selected.Count);
    }

    /// <summary>This thread's stream selections, to run queued work under them on another thread.</summary>
    public static Snapshot Capture() => new(t_selected is { Count: > 0 } s ? s.ToArray() : null);

    /// <summary>Runs the rest of a scope on this thread under <paramref name="snapshot"/>'s selections (restored when the scope ends).</summary>
    public static Scope Restore(Snapshot snapshot)
    {
        var selected = t_selected ??= new List<(IDevice, IDeviceStream)>(2);
        int depth = selected.Count;
        if (snapshot.Selections is { } entries) selected.AddRange(entries);
        return new Scope(depth + 1, popTo: depth);
    }

    /// <summary>The stream selections of one thread at one moment.</summary>
    public readonly struct Snapshot
    {
        internal Snapshot((IDevice, IDeviceStream)[]? selections) => Selections = selections;
        internal (IDevice Device, IDeviceStream Stream)[]? Selections { get; }

        /// <summary>The stream that was current for <paramref name="device"/> at that moment.</summary>
        public IDeviceStream StreamOf(IDevice device)
        {
            if (Selections is { } entries)
                for (int i = entries.Length - 1; i >= 0; i--)
                    if (ReferenceEquals(entries[i].Device, device)) return entries[i].Stream;
            return device.DefaultStream;
        }
    }

    /// <summary>Ends a <see cref="UseStream"/> or <see cref="Restore"/> scope: the selections before it are current again.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly int _depth, _popTo;

        internal Scope(int depth, int popTo = -1)
        {
            _depth = depth;
            _popTo = popTo < 0 ? depth - 1 : popTo;
        }

        /// <summary>Restores the selections that were current when the scope began.</summary>
        public void Dispose()
        {
            var selected = t_selected;
            if (selected is null || _depth == 0) return;
            if (selected.Count > _popTo) selected.RemoveRange(_popTo, selected.Count - _popTo);
        }
    }
}
