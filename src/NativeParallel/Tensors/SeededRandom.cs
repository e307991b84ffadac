using System.Runtime.CompilerServices;

namespace NativeParallel.Tensors;

/// <summary>
/// Counter-based random numbers: element i of a stream with seed s is a pure function of (s, i), so a tensor
/// initialised with the same seed holds the same values on every device, every rank and every run, and any
/// slice (a shard) can be generated alone.
/// </summary>
public static class SeededRandom
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong seed, ulong index)
    {
        // SplitMix64's finaliser over a (seed, index) pair: passes BigCrush as a stream, cheap, stateless.
        ulong z = seed * 0x9E3779B97F4A7C15ul + index * 0xD1B54A32D192ED03ul + 0x632BE59BD9B4E019ul;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ul;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBul;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 24 random bits, for element <paramref name="index"/> of stream <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Unit(ulong seed, long index) => (Mix(seed, (ulong)index) >> 40) * (1.0f / (1 << 24));

    /// <summary>Fills <paramref name="values"/> with uniform numbers in [lo, hi); element i uses counter offset + i.</summary>
    public static void Uniform(ulong seed, Span<float> values, float lo = -1f, float hi = 1f, long offset = 0)
    {
        float width = hi - lo;
        for (int i = 0; i < values.Length; i++) values[i] = lo + width * Unit(seed, offset + i);
    }

    /// <summary>Fills <paramref name="values"/> with normal numbers (Box–Muller over two counters per element).</summary>
    public static void Normal(ulong seed, Span<float> values, float mean = 0f, float std = 1f, long offset = 0)
    {
        for (int i = 0; i < values.Length; i++)
        {
            long c = 2 * (offset + i);
            double u1 = 1.0 - Unit(seed, c); // (0, 1]: log is finite
            double u2 = Unit(seed, c + 1);
            values[i] = mean + std * (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2));
        }
    }

    /// <summary>Fills <paramref name="values"/> with integers in [0, maxExclusive).</summary>
    public static void Integers(ulong seed, Span<int> values, int maxExclusive, long offset = 0)
    {
        if (maxExclusive <= 0) throw new ArgumentOutOfRangeException(nameof(maxExclusive), "must be positive");
        for (int i = 0; i < values.Length; i++) values[i] = (int)(Mix(seed, (ulong)(offset + i)) % (ulong)maxExclusive);
    }
}
