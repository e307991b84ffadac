using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// One trained tensor on the device, as views of the trainer's flat buffers (all in the same parameter order, so a
/// contiguous range of any of them is the same range of parameters): its f32 master value, the working copy forward
/// and backward read (the master itself for an f32 model; a bf16 copy, rewritten by each AdamW step, for a bf16
/// model), its gradient in the working dtype (accumulated by backward, zeroed each step) and the two f32 AdamW
/// moments (absent when ZeRO-1 shards them over data-parallel ranks). <see cref="Decay"/> is true for 2-D tensors
/// (embeddings and linear weights), which take weight decay; norms do not.
/// </summary>
public sealed class TrainParameter
{
    internal TrainParameter(string name, long offset, Tensor value, Tensor working, Tensor grad, Tensor? m, Tensor? v, ShardPlacement placement)
    {
        Placement = placement;
        Name = name;
        Offset = offset;
        Value = value;
        Working = working;
        Grad = grad;
        M = m;
        V = v;
        Decay = value.Rank == 2;
    }

    /// <summary>The Hugging Face name (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>).</summary>
    public string Name { get; }

    /// <summary>Where the tensor starts in the trainer's flat buffers (elements).</summary>
    public long Offset { get; }

    /// <summary>The master value (f32).</summary>
    public Tensor Value { get; }

    /// <summary>What forward and backward read: <see cref="Value"/> itself, or its bf16 copy for a bf16 model.</summary>
    public Tensor Working { get; }

    /// <summary>True when <see cref="Working"/> is a separate lower-precision copy that each update rewrites.</summary>
    public bool HasWorkingCopy => !ReferenceEquals(Working, Value);

    /// <summary>∂loss/∂value in the working dtype, accumulated by backward.</summary>
    public Tensor Grad { get; }

    /// <summary>AdamW's first moment (null when ZeRO-1 shards the moments).</summary>
    public Tensor? M { get; }

    /// <summary>AdamW's second moment (null when ZeRO-1 shards the moments).</summary>
    public Tensor? V { get; }

    /// <summary>Whether weight decay applies (2-D tensors only, as is usual for Llama training).</summary>
    public bool Decay { get; }

    /// <summary>Element count.</summary>
    public long Count => Value.Count;

    /// <summary>Where this tensor's elements sit in the whole model's tensor of the same name (a tensor-parallel rank holds a block of rows or columns).</summary>
    public ShardPlacement Placement { get; }

    /// <summary>True when tensor parallelism splits this tensor over the ranks of its group (each holds a different block); false when every rank holds all of it.</summary>
    public bool IsTensorParallelShard => Placement.IsSplit;

    /// <summary>
    /// True for an expert's weight under expert parallelism: only this rank of its expert-parallel group holds it,
    /// so its gradient is final as backward leaves it (every rank's tokens reached it by all-to-all) and is never
    /// summed with the replicas'.
    /// </summary>
    public bool IsExpertShard { get; init; }
}

/// <summary>
/// A block of a row-major (rows × columns) tensor: rows [RowStart, RowStart + n/Columns) and columns
/// [ColumnStart, ColumnStart + Columns). A 1-D tensor is one row.
/// </summary>
public readonly record struct ShardPlacement(int FullRows, int FullColumns, int RowStart, int ColumnStart, int Columns, bool IsSplit)
{
    /// <summary>The whole tensor of <paramref name="rows"/> × <paramref name="columns"/>.</summary>
    public static ShardPlacement Whole(int rows, int columns) => new(rows, columns, 0, 0, columns, IsSplit: false);

    /// <summary>Rows [start, start + count) of a tensor of <paramref name="fullRows"/> rows (a column-parallel weight).</summary>
    public static ShardPlacement RowBlock(int fullRows, int columns, int start, int count) => new(fullRows, columns, start, 0, columns, count != fullRows);

    /// <summary>Columns [start, start + count) of a tensor of <paramref name="fullColumns"/> columns (a row-parallel weight).</summary>
    public static ShardPlacement ColumnBlock(int rows, int fullColumns, int start, int count) => new(rows, fullColumns, 0, start, count, count != fullColumns);

    /// <summary>Elements of the whole tensor.</summary>
    public long FullCount => (long)FullRows * FullColumns;

    /// <summary>The whole tensor's index of this block's element <paramref name="local"/> (row-major in both).</summary>
    public long FullIndex(long local) => (RowStart + local / Columns) * FullColumns + ColumnStart + local % Columns;
}
