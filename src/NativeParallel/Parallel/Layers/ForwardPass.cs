using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// One forward pass of one request on one rank: where its tokens sit and the scratch every layer shares.
/// The residual stream holds <see cref="Local"/> tokens from <see cref="Offset"/>; the tensor-parallel region
/// (projections, attention, the MLP's middle, the LM head) works on <see cref="RegionTokens"/> tokens from
/// <see cref="RegionOffset"/>: the same tokens, except under Megatron's sequence parallelism, where the region holds
/// every token and the residual stream this TP rank's slice. Under plain sequence parallelism a prefill's tokens are
/// split over the SP group (<see cref="TokenSplit"/>) and attention gathers every rank's keys and values.
/// </summary>
internal sealed class ForwardPass : IDisposable
{
    private readonly List<Tensor> _owned = [];

    public ForwardPass(IDevice device, ParallelLayout p, int start, int total)
    {
        var c = p.Config;
        Device = device;
        Layout = p;
        Start = start;
        Total = total;
        // Token split: only prefill (several tokens) is divided; a single decode token runs on every SP rank.
        bool split = p.Sp.Size > 1 && total > 1;
        if (split && total % p.Sp.Size != 0)
            throw new ArgumentException($"sequence parallelism: {total} prompt tokens must divide by sp ({p.Sp.Size}); pad the prompt");
        bool megatron = p.MegatronSequenceParallel && total > 1;
        if (megatron && total % p.Tp.Size != 0)
            throw new ArgumentException($"sequence parallelism: {total} prompt tokens must divide by tp ({p.Tp.Size}); pad the prompt");
        TokenSplit = split && !megatron;
        Region = new TensorParallelRegion(p.Tp, megatron);
        Local = megatron ? total / p.Tp.Size : TokenSplit ? total / p.Sp.Size : total;
        Offset = megatron ? p.Tp.Rank * Local : TokenSplit ? p.Sp.Rank * Local : 0;
        RegionTokens = megatron ? total : Local;
        RegionOffset = megatron ? 0 : Offset;

        var dt = c.DType;
        int h = c.Hidden, d = c.HeadDim, qd = p.QueryHeads * d, kvd = p.KvHeads * d;
        Positions = Own(Tensor.FromInts(device, Enumerable.Range(start + RegionOffset, RegionTokens).ToArray(), RegionTokens));
        Lengths = Own(Tensor.FromInts(device, [start + total], 1));
        Normed = Own(Tensor.Empty(device, dt, Local, h));
        Projected = Own(Tensor.Empty(device, dt, Local, h));
        // Region-wide partial sums and gathered inputs exist only when the region is wider than the residual stream.
        Gathered = Region.TokenSliced ? Own(Tensor.Empty(device, dt, RegionTokens, h)) : null;
        Partial = Region.TokenSliced ? Own(Tensor.Empty(device, dt, RegionTokens, h)) : Projected;
        Query = Own(Tensor.Empty(device, dt, RegionTokens, qd));
        NewKeys = Own(Tensor.Empty(device, dt, RegionTokens, kvd));
        NewValues = Own(Tensor.Empty(device, dt, RegionTokens, kvd));
        Attention = Own(Tensor.Empty(device, dt, RegionTokens, qd));
        if (c.Experts == 0)
        {
            Gate = Own(Tensor.Empty(device, dt, RegionTokens, p.FfnShard));
            Up = Own(Tensor.Empty(device, dt, RegionTokens, p.FfnShard));
        }
    }

    public IDevice Device { get; }
    public ParallelLayout Layout { get; }
    public LlamaConfig Config => Layout.Config;
    /// <summary>Tokens in the request's cache before this pass.</summary>
    public int Start { get; }
    /// <summary>The pass's new tokens (all ranks).</summary>
    public int Total { get; }
    public bool TokenSplit { get; }
    public TensorParallelRegion Region { get; }
    public int Local { get; }
    public int Offset { get; }
    public int RegionTokens { get; }
    public int RegionOffset { get; }
    /// <summary>Positions of the region's tokens (i32).</summary>
    public Tensor Positions { get; }
    /// <summary>The request's length after this pass, for decode attention (i32, one element).</summary>
    public Tensor Lengths { get; }

    // Scratch shared by the layers, each overwritten before it is read.
    public Tensor Normed { get; }
    public Tensor Projected { get; }
    public Tensor? Gathered { get; }
    public Tensor Partial { get; }
    public Tensor Query { get; }
    public Tensor NewKeys { get; }
    public Tensor NewValues { get; }
    public Tensor Attention { get; }
    public Tensor? Gate { get; }
    public Tensor? Up { get; }

    /// <summary>The region's input from the residual stream's rows <paramref name="local"/>.</summary>
    public Tensor Enter(Tensor local) => Region.Enter(local, Gathered);

    /// <summary>Sums the ranks' partial outputs (in <see cref="Partial"/>) into <see cref="Projected"/>.</summary>
    public Tensor LeavePartial()
    {
        Region.Leave(Partial, Projected);
        return Projected;
    }

    private Tensor Own(Tensor t)
    {
        _owned.Add(t);
        return t;
    }

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
    }
}
