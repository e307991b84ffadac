using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Parallel.Layers;

/// <summary>
/// What a trainer's layers share across one step's forward and backward: the batch's shape (B rows of T tokens,
/// each row its own causal sequence from position 0), this rank's share of the heads and the MLP width, the
/// tensor-parallel region (Megatron's f and g, or with sequence parallelism the all-gather and reduce-scatter around
/// each region, the residual stream then holding <see cref="Rows"/> = B·T/tp token rows), and backward's scratch:
/// the gradients of activations, reused layer to layer, each overwritten before it is read.
/// </summary>
internal sealed class TrainingPass
{
    /// <param name="device">Where the buffers live.</param>
    /// <param name="config">The model.</param>
    /// <param name="tensorParallel">The tensor-parallel group, null for the whole model on one rank.</param>
    /// <param name="sequenceParallel">Megatron's sequence parallelism over that group (B·T must divide by its size).</param>
    /// <param name="batch">B.</param>
    /// <param name="sequence">T.</param>
    /// <param name="dtype">The training dtype (activations and their gradients).</param>
    /// <param name="allocate">Allocates one buffer (the trainer owns and counts them).</param>
    /// <param name="expertRanks">The expert-parallel group's size (1: every expert on this rank).</param>
    public TrainingPass(IDevice device, LlamaConfig config, ProcessGroup? tensorParallel, bool sequenceParallel, int batch, int sequence, DType dtype,
        Func<DType, int[], Tensor> allocate, int expertRanks = 1)
    {
        int tp = tensorParallel?.Size ?? 1;
        Device = device;
        Config = config;
        DType = dtype;
        Region = new TensorParallelRegion(tensorParallel, sequenceParallel);
        Allocate = allocate;
        Batch = batch;
        Sequence = sequence;
        Tokens = checked(batch * sequence);
        Rows = Region.TokenSliced ? Tokens / tp : Tokens;
        QueryHeads = config.Heads / tp;
        KvHeads = config.KvHeads / tp;
        FfnShard = config.Ffn / tp;

        int n = Tokens, rows = Rows, h = config.Hidden, qd = QueryHeads * config.HeadDim, kvd = KvHeads * config.HeadDim, f = FfnShard;
        Positions = allocate(DType.I32, [n]);
        var positions = new int[n];
        for (int i = 0; i < n; i++) positions[i] = i % sequence;
        Positions.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(positions.AsSpan()));
        Tensor A(params int[] shape) => allocate(dtype, shape);
        Projected = A(n, h);
        Dx = A(rows, h);
        DTmp = A(rows, h);
        Gathered = Region.TokenSliced ? A(n, h) : A(0);
        Scattered = Region.TokenSliced ? A(rows, h) : A(0);
        DNormed = A(n, h);
        DNormed2 = A(n, h);
        DAttention = A(n, qd);
        DQ = A(n, qd);
        DK = A(n, kvd);
        DV = A(n, kvd);
        DAct = A(n, f);
        DGate = A(n, f);
        DUp = A(n, f);
        Moe = config.Experts > 0 ? new MoeScratch(this, expertRanks) : null;
    }

    public IDevice Device { get; }
    public LlamaConfig Config { get; }
    /// <summary>Of the activations and their gradients.</summary>
    public DType DType { get; }
    public TensorParallelRegion Region { get; }
    /// <summary>Allocates a buffer the trainer owns (activations kept for backward, counted as such).</summary>
    public Func<DType, int[], Tensor> Allocate { get; }
    public int Batch { get; }
    public int Sequence { get; }
    /// <summary>B·T, the tokens the tensor-parallel region works on.</summary>
    public int Tokens { get; }
    /// <summary>Token rows of the residual stream on this rank: B·T, or B·T/tp under sequence parallelism.</summary>
    public int Rows { get; }
    public int QueryHeads { get; }
    public int KvHeads { get; }
    public int FfnShard { get; }
    /// <summary>Each token's position in its row (i32, B·T).</summary>
    public Tensor Positions { get; }

    /// <summary>A row-parallel block's partial output (B·T, hidden).</summary>
    public Tensor Projected { get; }
    /// <summary>∂loss/∂(the residual stream) as backward goes (rows, hidden); a stage's input gradient at the end.</summary>
    public Tensor Dx { get; }
    /// <summary>A norm's input gradient before it joins <see cref="Dx"/> (rows, hidden).</summary>
    public Tensor DTmp { get; }
    public Tensor Gathered { get; }
    public Tensor Scattered { get; }
    /// <summary>∂/∂(a column-parallel block's input), summed over its projections (B·T, hidden), and a second term.</summary>
    public Tensor DNormed { get; }
    public Tensor DNormed2 { get; }
    public Tensor DAttention { get; }
    public Tensor DQ { get; }
    public Tensor DK { get; }
    public Tensor DV { get; }
    public Tensor DAct { get; }
    public Tensor DGate { get; }
    public Tensor DUp { get; }
    /// <summary>The MoE layers' scratch; null for a dense model.</summary>
    public MoeScratch? Moe { get; }

    /// <summary>The region's input from residual rows <paramref name="local"/>: itself, or every rank's rows gathered (sequence parallelism).</summary>
    public Tensor Enter(Tensor local) => Region.Enter(local, Gathered);

    /// <summary>
    /// The ranks' partial sums <paramref name="partial"/> to this rank's residual rows: all-reduced in place, or
    /// reduce-scattered into <paramref name="slice"/> (by default <see cref="Scattered"/>); the tensor itself on one rank.
    /// </summary>
    public Tensor Leave(Tensor partial, Tensor? slice = null) => Region.Sum(partial, slice ?? Scattered);
}
