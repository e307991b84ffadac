namespace NativeParallel.Training;

/// <summary>Megatron's cuts of a row-major (rows, columns) weight: a block of rows (column-parallel layers) or of columns (row-parallel layers).</summary>
internal static class Shards
{
    /// <summary>Rows [start, start + count) of a matrix with <paramref name="columns"/> columns.</summary>
    public static float[] Rows(float[] matrix, int columns, int start, int count) =>
        matrix.AsSpan(start * columns, count * columns).ToArray();

    /// <summary>Columns [start, start + count) of a (rows, columns) matrix, as a contiguous (rows, count) matrix.</summary>
    public static float[] Columns(float[] matrix, int rows, int columns, int start, int count)
    {
        var shard = new float[rows * count];
        for (int r = 0; r < rows; r++) matrix.AsSpan(r * columns + start, count).CopyTo(shard.AsSpan(r * count, count));
        return shard;
    }
}
