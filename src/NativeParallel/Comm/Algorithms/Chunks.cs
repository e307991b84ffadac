namespace NativeParallel.Comm.Algorithms;

/// <summary>How a buffer of <c>count</c> elements is cut into one chunk per rank (sizes differ by at most one).</summary>
internal readonly record struct Chunks(long Count, int Parts, int ElementSize)
{
    public long Start(int chunk) => Count * chunk / Parts;

    public long Length(int chunk) => Start(chunk + 1) - Start(chunk);

    public Span<byte> Of(Span<byte> buffer, int chunk) =>
        buffer.Slice(checked((int)(Start(chunk) * ElementSize)), checked((int)(Length(chunk) * ElementSize)));

    public ReadOnlySpan<byte> Of(ReadOnlySpan<byte> buffer, int chunk) =>
        buffer.Slice(checked((int)(Start(chunk) * ElementSize)), checked((int)(Length(chunk) * ElementSize)));

    public static int Mod(int value, int n) => ((value % n) + n) % n;
}
