using NativeParallel.Comm;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel;

/// <summary>
/// Megatron's conjugate operators around a tensor-parallel region (the column-parallel layer, attention or the
/// MLP's middle, and the row-parallel layer after it), for one forward pass:
/// <list type="bullet">
/// <item>plain tensor parallelism: every rank holds every token; entering is the identity and leaving all-reduces
/// the partial sums (Megatron's f and g);</item>
/// <item>with Megatron's sequence parallelism: the residual stream holds this rank's token slice; entering
/// all-gathers the slices (every token) and leaving reduce-scatters the partial sums back to slices.</item>
/// </list>
/// A single device is the size-1 case (or no group at all): both are the identity. The vocabulary-parallel embedding leaves the region
/// the same way (its partial rows summed), and the LM head enters it.
/// </summary>
internal readonly struct TensorParallelRegion(ProcessGroup? tp, bool tokenSliced)
{
    /// <summary>True when the residual stream holds a token slice (Megatron SP) and the region every token.</summary>
    public bool TokenSliced { get; } = tokenSliced && tp is { Size: > 1 };

    /// <summary>
    /// The region's input from <paramref name="local"/> (the residual stream's rows): <paramref name="local"/> itself,
    /// or every rank's rows gathered into <paramref name="gathered"/>.
    /// </summary>
    public Tensor Enter(Tensor local, Tensor? gathered)
    {
        if (!TokenSliced) return local;
        tp!.AllGather(local, gathered!);
        return gathered!;
    }

    /// <summary>
    /// Sums the ranks' <paramref name="partial"/> outputs into <paramref name="local"/> (the residual stream's
    /// rows): in place (<paramref name="partial"/> is <paramref name="local"/>) by all-reduce, or by reduce-scatter.
    /// </summary>
    public void Leave(Tensor partial, Tensor local)
    {
        if (TokenSliced) tp!.ReduceScatter(partial, local);
        else if (tp is { Size: > 1 }) tp.AllReduce(local);
    }

    /// <summary>
    /// Sums the ranks' <paramref name="partial"/> outputs to the residual stream's rows and returns them: in place by
    /// all-reduce (<paramref name="partial"/> itself), or reduce-scattered into <paramref name="slice"/>.
    /// </summary>
    public Tensor Sum(Tensor partial, Tensor slice)
    {
        var local = TokenSliced ? slice : partial;
        Leave(partial, local);
        return local;
    }
}
